"""The emulator suite's exceptions. Each message is one line a person can act on;
`python -m emulators` prints it without a traceback."""

from __future__ import annotations


class SuiteError(Exception):
    """Base of every error the suite raises on purpose."""


class AlreadyRunning(SuiteError):
    """`up` found a suite from this state directory still running."""


class NotRunning(SuiteError):
    """`down`, `status` or `reset` found no suite in this state directory."""


class MissingProgram(SuiteError):
    """An emulator, Java or fake-gcs-server is not installed; the message says how to install it."""


class PortInUse(SuiteError):
    """A port the suite was told to use is taken by another process."""


class StartupFailed(SuiteError):
    """A process exited or did not answer in time; `log_tail` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class StopFailed(SuiteError):
    """Some suite processes were still running after SIGKILL."""
