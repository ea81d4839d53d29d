"""functions/main.py as functions-framework loads it: what the framework's own router answers
before any function runs (and that it answers in the JSON envelope), and that the deploy archive
imports without gpupipe installed (so functions/main.py needs no `sys.path` edits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from functions import wiring
from ops import package_functions
from tests.unit.functions.conftest import make_app

# (target, method, path as sent, what the framework's router does with it, status, Allow)
ROUTER_CASES = [
    # Every other path and method of an HTTP function reaches it: `api` answers them itself.
    ("api", "GET", "/v2/things", "run", 404, None),
    ("api", "PATCH", "/v1/jobs", "run", 405, "GET, POST"),
    ("api", "POST", "/static/x", "run", 404, None),
    # The framework's own views and its router's refusals never reach `api`.
    ("api", "GET", "/favicon.ico", "error", 404, None),
    ("api", "GET", "/robots.txt", "error", 404, None),
    ("api", "GET", "/static/x", "static", 404, None),
    ("api", "GET", "/v1/jobs/%0Aabc", NotFound, 404, None),
    ("api", "POST", "/static/%0Ax", MethodNotAllowed, 405, "GET, HEAD, OPTIONS"),
    # Event functions are routed for POST only.
    ("on_upload", "GET", "/", MethodNotAllowed, 405, "POST"),
    ("on_dead_letter", "PUT", "/any/path", MethodNotAllowed, 405, "POST"),
]


def _framework_route(app: Any, method: str, path: str) -> object:
    """The endpoint functions-framework's router picks, or the exception class it raises."""
    decoded = path.replace("%0A", "\n")
    try:
        endpoint, _ = app.url_map.bind("").match(decoded, method)
    except (NotFound, MethodNotAllowed) as exc:
        return type(exc)
    return endpoint


@pytest.mark.parametrize(("target", "method", "path", "routed", "status", "allow"), ROUTER_CASES)
def test_requests_the_framework_answers_itself_get_the_json_envelope_too(
    services: wiring.Services, target: str, method: str, path: str, routed: object, status: int, allow: str | None
) -> None:
    app = make_app(target)
    assert _framework_route(app, method, path) == routed
    response = app.test_client().open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == ("not_found" if status == 404 else "method_not_allowed")
    assert response.headers.get("Allow") == allow


# The child removes gpupipe's editable-install finder, so only the archive can provide the packages.
_LOAD_ARCHIVE = """
import importlib.util, json, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
assert importlib.util.find_spec("core") is None, "gpupipe is importable without the archive"
import functions_framework
app = functions_framework.create_app(target=sys.argv[2], source=sys.argv[1])
import core, functions.main
response = app.test_client().get("/favicon.ico")
print(json.dumps({"core": core.__file__, "functions_main": functions.main.__file__,
                  "status": response.status_code, "body": response.get_json()}))
"""


def test_the_deploy_archive_loads_without_gpupipe_installed(tmp_path: Path) -> None:
    """Cloud Functions loads the archive's root main.py, which imports functions.main from the
    archive root (functions-framework puts the source's folder on sys.path)."""
    package_functions.build(tmp_path / "functions.zip")
    root = tmp_path / "source"
    with zipfile.ZipFile(tmp_path / "functions.zip") as archive:
        archive.extractall(root)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for target in package_functions.TARGETS:
        result = subprocess.run(
            [sys.executable, "-c", _LOAD_ARCHIVE, str(root / "main.py"), target],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        loaded = json.loads(result.stdout.splitlines()[-1])
        assert Path(loaded["core"]).is_relative_to(root) and Path(loaded["functions_main"]).is_relative_to(root)
        # The framework answers /favicon.ico itself (404) for an HTTP function; an event function is POST only.
        expected = (404, "not_found") if target in ("api", "dispatch") else (405, "method_not_allowed")
        assert (loaded["status"], loaded["body"]["error"]["code"]) == expected, target
