"""The helpers Cloud Build calls: the functions' source archive, terraform output lookups and the
smoke test (against a real HTTP server on 127.0.0.1 that speaks the API contract)."""

from __future__ import annotations

import ast
import http.server
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import deploy_outputs, package_functions, smoke_test
from tests.infra.conftest import REPO


# ----------------------------------------------------------------- package_functions
def test_archive_has_a_root_main_exposing_every_target(tmp_path: Path) -> None:
    names = package_functions.build(tmp_path / "f.zip")
    with zipfile.ZipFile(tmp_path / "f.zip") as archive:
        main = archive.read("main.py").decode()
        requirements = archive.read("requirements.txt").decode().splitlines()
    tree = ast.parse(main)
    (imported,) = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert imported.module == "functions.main"
    assert {alias.name for alias in imported.names} == {"api", "on_upload", "on_dead_letter", "dispatch"}
    assert {"functions/main.py", "functions/dispatch.py", "core/settings.py", "core/ports.py"} <= set(names)
    assert not any(n.startswith(("tests/", ".venv/", "gpu_worker/")) or "__pycache__" in n for n in names)
    assert "functions-framework==3.10.2" in requirements and "google-cloud-run==0.16.2" in requirements
    assert not any(r.startswith("torch") for r in requirements)


def test_archive_is_reproducible(tmp_path: Path) -> None:
    package_functions.build(tmp_path / "a.zip")
    package_functions.build(tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_archive_changes_with_the_source(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for item in ("pyproject.toml", "core", "adapters", "functions"):
        source = REPO / item
        target = repo / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    package_functions.build(tmp_path / "a.zip", repo)
    changed = repo / "core" / "collection_names.py"
    changed.write_text(changed.read_text() + "\n# changed\n")
    package_functions.build(tmp_path / "b.zip", repo)
    assert (tmp_path / "a.zip").read_bytes() != (tmp_path / "b.zip").read_bytes()


def test_the_targets_exist_in_functions_main() -> None:
    tree = ast.parse((REPO / "functions" / "main.py").read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(package_functions.TARGETS) <= defined


# ----------------------------------------------------------------- deploy_outputs
OUTPUTS = {
    "api_url": {"sensitive": False, "type": "string", "value": "https://example.test/api"},
    "gke_cluster": {"sensitive": False, "type": ["object", {}], "value": {"name": "gpupipe-prod-workers"}},
    "k8s_values": {"sensitive": False, "type": "dynamic", "value": None},
}


def test_outputs_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    assert deploy_outputs.main([str(path), "api_url"]) == 0
    assert deploy_outputs.main([str(path), "gke_cluster.name"]) == 0
    assert deploy_outputs.main([str(path), "k8s_values"]) == 0
    assert capsys.readouterr().out.splitlines() == ["https://example.test/api", "gpupipe-prod-workers", "null"]
    assert deploy_outputs.main([str(path), "api_uri"]) == 1
    assert deploy_outputs.main([str(path), "gke_cluster.zone"]) == 1
    assert "no 'zone'" in capsys.readouterr().err


# ----------------------------------------------------------------- smoke_test
class FakeApi(http.server.BaseHTTPRequestHandler):
    """The parts of the v1 contract the smoke test uses; the job finishes after `polls` GETs."""

    key = "gp_smoketest0001_" + "s" * 32
    final_status = "succeeded"
    polls = 2
    busy_submits = 0
    submitted: list[dict[str, Any]] = []
    seen_polls = 0

    def _send(self, status: int, body: Any = None, content_type: str = "application/json", **headers: str) -> None:
        data = json.dumps(body).encode() if content_type == "application/json" else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            self._send(401, {"error": {"code": "unauthenticated", "message": "bad key", "details": []}})
            return False
        return True

    def _job(self) -> dict[str, Any]:
        cls = type(self)
        status = "queued" if cls.seen_polls < cls.polls else cls.final_status
        port = self.headers["Host"].rsplit(":", 1)[1]
        done = status == "succeeded"
        return {
            "id": "job_1",
            "status": status,
            "outputs": [{"index": 0, "uri": "gs://o/u/jobs/job_1/0.png", "url": f"http://127.0.0.1:{port}/img/0.png"}]
            if done
            else [],
            "error": {"code": "model_error", "message": "boom"} if status == "failed" else None,
        }

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            return self._send(200, {"status": "ok"})
        if self.path == "/img/0.png":
            return self._send(200, b"\x89PNG fake", "image/png")
        if self.path == "/v1/jobs/job_1" and self._authorized():
            type(self).seen_polls += 1
            return self._send(200, self._job())
        return None

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/jobs" or not self._authorized():
            return None
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls.submitted.append({"body": body, "idempotency_key": self.headers.get("Idempotency-Key")})
        if cls.busy_submits > 0:
            cls.busy_submits -= 1
            return self._send(
                429, {"error": {"code": "resource_exhausted", "message": "slow down"}}, **{"Retry-After": "0"}
            )
        return self._send(202, self._job())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    FakeApi.final_status, FakeApi.polls, FakeApi.busy_submits = "succeeded", 2, 0
    FakeApi.submitted, FakeApi.seen_polls = [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_smoke_test_passes_when_the_job_succeeds(api: str) -> None:
    FakeApi.busy_submits = 1  # a 429 first: retried after Retry-After
    result = smoke_test.run(api, FakeApi.key, timeout=30, poll_seconds=0.01, run_id="build-7")
    assert result.job_id == "job_1" and result.output_url.endswith("/img/0.png")
    assert FakeApi.seen_polls == 2
    assert len(FakeApi.submitted) == 2
    assert FakeApi.submitted[-1]["idempotency_key"] == "smoke-build-7"
    assert FakeApi.submitted[-1]["body"]["metadata"] == {"smoke_run": "build-7"}


def test_smoke_test_fails_with_the_jobs_error(api: str) -> None:
    FakeApi.final_status = "failed"
    with pytest.raises(smoke_test.SmokeFailure, match="job job_1 failed: model_error: boom"):
        smoke_test.run(api, FakeApi.key, timeout=30, poll_seconds=0.01)


def test_smoke_test_fails_on_a_bad_key(api: str) -> None:
    with pytest.raises(smoke_test.SmokeFailure, match="401 unauthenticated"):
        smoke_test.run(api, "gp_wrong", timeout=30, poll_seconds=0.01)


def test_smoke_test_gives_up_at_its_deadline(api: str) -> None:
    FakeApi.polls = 10**9
    with pytest.raises(smoke_test.SmokeFailure, match="deadline of 0s passed"):
        smoke_test.run(api, FakeApi.key, timeout=0.3, poll_seconds=0.05)


def test_smoke_test_cli_exit_codes(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert smoke_test.main(["--api-url", api, "--api-key", FakeApi.key, "--poll", "0.01", "--timeout", "30"]) == 0
    assert "smoke test passed" in capsys.readouterr().out
    assert smoke_test.main(["--api-url", api, "--api-key", "nope", "--timeout", "30"]) == 1
    assert "smoke test FAILED" in capsys.readouterr().err
