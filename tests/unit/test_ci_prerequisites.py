"""tests/conftest.py's prerequisite helpers: a missing ../shared, dev dependency or a mirror answering with
an HTTP error skips on a developer's machine and fails under CI=true; no route to the mirror always skips."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require_mirror, require_module, require_shared, skip_or_fail

REPO = Path(__file__).resolve().parents[2]
SKIPPED = pytest.skip.Exception
FAILED = pytest.fail.Exception


@pytest.fixture(params=["true", "1", "TRUE"])
def ci(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", request.param)


@pytest.fixture(params=[None, "", "false", "0"])
def local(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", request.param)


class _Mirror(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200 if self.path == "/debian/dists/bookworm/InRelease" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def mirror() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound and released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_skip_or_fail_skips_locally(local: None) -> None:
    with pytest.raises(SKIPPED, match=r"^data absent$"):
        skip_or_fail("data absent")


def test_skip_or_fail_fails_under_ci(ci: None) -> None:
    with pytest.raises(FAILED, match=r"^data absent \(CI=true: a missing prerequisite fails the run"):
        skip_or_fail("data absent")


def test_require_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shared/upstream/kubespray").mkdir(parents=True)
    release = tmp_path / "shared/upstream/kubespray/kubespray-v2.31.0.tar.gz"
    release.write_bytes(b"tar")
    assert require_shared("upstream", "kubespray", release.name, root=tmp_path / "shared") == release
    assert require_shared(root=tmp_path / "shared") == tmp_path / "shared"
    cases = [
        ((tmp_path / "absent",), f"../shared absent ({tmp_path / 'absent'})"),
        ((tmp_path / "shared", "upstream", "kubespray", "kubespray-v9.tar.gz"), "kubespray-v9.tar.gz absent"),
    ]
    for (root, *parts), message in cases:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(SKIPPED, match=re.escape(message)):
            require_shared(*parts, root=root)
        monkeypatch.setenv("CI", "true")
        with pytest.raises(FAILED, match=re.escape(message)):
            require_shared(*parts, root=root)


def test_require_mirror_fails_under_ci_on_an_http_error(mirror: str, ci: None) -> None:
    require_mirror(f"{mirror}/debian/dists/bookworm/InRelease")
    with pytest.raises(FAILED, match="404 Not Found") as err:
        require_mirror(f"{mirror}/debain/dists/bookworm/InRelease")  # a wrong URI
    assert "/debain/dists/bookworm/InRelease" in str(err.value)


def test_require_mirror_skips_an_http_error_locally(mirror: str, local: None) -> None:
    with pytest.raises(SKIPPED, match="404 Not Found"):
        require_mirror(f"{mirror}/debain/dists/bookworm/InRelease")


def test_no_route_to_the_mirror_skips_even_under_ci(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("true", ""):
        monkeypatch.setenv("CI", value)
        with pytest.raises(SKIPPED, match=r"^no route to the configured Debian mirror"):
            require_mirror(f"http://127.0.0.1:{closed_port}/debian/dists/bookworm/InRelease")


def test_require_module(ci: None) -> None:
    assert require_module("json").dumps([]) == "[]"
    with pytest.raises(FAILED, match="kubeplay_no_such_module cannot be imported"):
        require_module("kubeplay_no_such_module")


def test_a_ci_run_with_shared_absent_fails_and_a_local_run_skips(tmp_path: Path) -> None:
    """What `make test` reports: the run's exit code and its summary line (a test and a whole module)."""
    (tmp_path / "test_needs_shared.py").write_text(
        "from pathlib import Path\n"
        "from tests.conftest import require_shared\n"
        "def test_release():\n"
        f"    require_shared('upstream', root=Path({str(tmp_path / 'no-shared')!r}))\n"
    )
    (tmp_path / "test_needs_module.py").write_text(
        "from tests.conftest import require_module\n"
        "require_module('kubeplay_no_such_module')\n"
        "def test_with_it():\n"
        "    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)

    def pytest_run(ci: bool, *files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
            cwd=tmp_path,
            env={**env, "CI": "true"} if ci else env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    local = pytest_run(False, "test_needs_shared.py", "test_needs_module.py")
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout
    test = pytest_run(True, "test_needs_shared.py")
    assert test.returncode == 1 and "1 failed" in test.stdout and "../shared absent" in test.stdout, test.stdout
    module = pytest_run(True, "test_needs_module.py")  # at import: a collection error
    assert module.returncode == 2 and "1 error" in module.stdout, module.stdout
    assert "kubeplay_no_such_module cannot be imported" in module.stdout
