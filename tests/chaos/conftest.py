"""The chaos tier prints its figures at the end of the session (they go into the README)."""

from __future__ import annotations

import pytest

RESULTS = pytest.StashKey[list[dict[str, object]]]()


@pytest.fixture
def record_chaos(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    rows = pytestconfig.stash.setdefault(RESULTS, [])
    return rows.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for row in config.stash.get(RESULTS, []):
        terminalreporter.write_line("chaos: " + ", ".join(f"{k}={v}" for k, v in row.items() if v not in ("", None)))
