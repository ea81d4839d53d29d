"""The ports on the real google-cloud-* clients.

The same classes serve real GCP and the local emulators: the constructors take the emulator
host (from `Settings`) or None, and nothing here reads the environment. Clients are built
on first use, never at import time.
"""
