"""Suite-wide settings, and the one place that decides whether a missing prerequisite skips or fails.

A test whose data or service is absent calls `skip_or_fail(reason)` (or `require_shared`, `require_mirror`,
`require_module`): on a developer's machine it skips saying why; under CI=true it fails, because in CI a
missing ../shared, a Debian mirror answering with an error or an uninstalled dev dependency is a broken
setup that would otherwise turn a whole suite green by skipping it. Only "no route to the mirror" skips
everywhere: that is the machine's network, not the code or the setup.

Import the helpers with `from tests.conftest import skip_or_fail` (pytest loads this file as `tests.conftest`).
"""

from __future__ import annotations

import functools
import http.server
import importlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import httpx
import pytest

# Builds in tests skip the PyPI wheel download unless a test asks for wheels (test_build_kubespray,
# test_pack_install_sh); the wheel path has its own integration tests.
os.environ.setdefault("KUBEPLAY_WHEELS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
CI_VALUES = ("1", "true", "yes")
# What tests download or build once and reuse across runs: OS packages, Debian root tarballs, wheels.
TEST_CACHE = Path(os.environ.get("KUBEPLAY_TEST_CACHE", "/var/tmp/kubeplay-test-cache"))
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def in_ci() -> bool:
    """True when CI is set to 1/true/yes (what .ci/run exports, as GitHub and GitLab runners do)."""
    return os.environ.get("CI", "").strip().lower() in CI_VALUES


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the running test (or module, at import) with `reason`; under CI=true fail it instead (raises)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails the run instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def run_kubeplay(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m kubeplay ARGS…` as a user runs it (this environment plus `env`), output captured, not checked."""
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def require_shared(*parts: str, root: Path = SHARED) -> Path:
    """`root/<parts…>` (default ../shared beside the repository), or skip_or_fail naming what is absent."""
    if not root.is_dir():
        skip_or_fail(f"../shared absent ({root}): conformance data not available")
    path = root.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"{path} absent")
    return path


def require_mirror(url: str, what: str = "the configured Debian mirror") -> None:
    """Return when a HEAD of `url` succeeds. No route to it (DNS, refused, connect timeout) skips, even
    under CI; any other failure (an HTTP error status such as a 404 from a wrong URI, TLS, a read
    timeout) goes to skip_or_fail."""
    try:
        httpx.head(url, timeout=15, follow_redirects=True).raise_for_status()
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        pytest.skip(f"no route to {what} ({url}): {exc}")
    except httpx.HTTPError as exc:
        skip_or_fail(f"{what} failed for {url}: {exc}")


def require_module(name: str) -> ModuleType:
    """The imported module `name` (a dev dependency such as ansible-core), or skip_or_fail naming it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"{name} cannot be imported ({exc}): install the dev dependencies (make setup)")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository (real kubespray releases), or skip_or_fail saying it is absent."""
    return require_shared()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on loopback (a free port, no request log); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def debian_root_tarball(
    mirror: Callable[[], str], suite: str, variant: str, include: str = "", label: str = ""
) -> Path:
    """An amd64 Debian `suite` root (mmdebstrap --variant, --include) as a tarball in TEST_CACHE, made once:
    `<suite>-<variant>[-<label>]-amd64.tar`. `mirror()` is asked only when the tarball has to be made."""
    tarball = TEST_CACHE / f"{suite}-{variant}{f'-{label}' if label else ''}-amd64.tar"
    if not tarball.is_file():
        TEST_CACHE.mkdir(parents=True, exist_ok=True)
        part = tarball.with_name(tarball.name + ".part.tar")
        src = f"deb [signed-by={DEBIAN_KEYRING}] {mirror()} {suite} main"
        options = [f"--variant={variant}", *([f"--include={include}"] if include else []), "--architectures=amd64"]
        subprocess.run(["mmdebstrap", "--quiet", *options, suite, str(part), src], check=True, timeout=1200)
        part.replace(tarball)
    return tarball


def installed_debs(root: Path) -> dict[str, str]:
    """What dpkg has installed in the Debian root `root`: package name -> version."""
    status = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = (line.split("\t") for line in status.splitlines())
    return {name: version for abbrev, name, version in rows if abbrev.startswith("ii")}
