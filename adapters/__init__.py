"""Ports (abstract interfaces) and their implementations: `gcp` (real clients, emulators
included) and `memory` (in-process fakes for unit tests). Code outside this package imports
`core.ports` only, never `google.cloud.*`."""
