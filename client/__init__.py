"""The gpupipe Python SDK and the `gpupipe` command line."""
