"""`kubeplay push` into a real distribution registry on loopback (TLS, token auth as Harbor does):
every image arrives byte-exact, shared blobs are mounted, a second push uploads nothing."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.push import Pusher, Target, load_credentials, plan_push, push_bundle
from kubeplay.bootstrap.registry import manifest_children, tagged_images
from kubeplay.errors import BadInput, FetchError
from kubeplay.fetch.auth import ChallengeAuth
from kubeplay.fetch.clients import ClientPool, Session
from kubeplay.fetch.mirrors import Credentials, Tls
from kubeplay.fetch.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import make_bundle

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(), reason="needs docker-registry (Debian package)"),
]


@pytest.fixture
def registry(tmp_path: Path):  # type: ignore[no-untyped-def]
    from kubeplay.lab.upstream.simulator import UpstreamSimulator

    with UpstreamSimulator(tmp_path / "upstream", registry_auth="token") as sim:
        yield sim


def pulled_digests(sim: object, repo: str, tag: str, storage: Path) -> bool:
    """Pull a manifest by tag and all its blobs with the sim's credentials; True if all digests match."""
    auth = ChallengeAuth(Credentials(sim.username, sim.password))  # type: ignore[attr-defined]
    verify = ssl.create_default_context(cafile=str(sim.ca_cert))  # type: ignore[attr-defined]
    with httpx.Client(verify=verify, auth=auth, timeout=20, trust_env=False) as c:
        base = sim.registry_url  # type: ignore[attr-defined]
        r = c.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code != 200:
            return False
        digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
        for blob in manifest_children(storage, digest)[2]:
            b = c.get(f"{base}/v2/{repo}/blobs/{blob}")
            if b.status_code != 200 or "sha256:" + hashlib.sha256(b.content).hexdigest() != blob:
                return False
    return True


def test_push_all_images_with_prefix_then_resume_uploads_nothing(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=3, layers_per_image=3)
    host = registry.registry_url.removeprefix("https://")
    creds = Credentials(registry.username, registry.password)
    storage = bundle / "registry"
    target = Target.parse(f"{host}/site-project")

    # An interrupted push: only the first image got through.
    with ClientPool(connections=2) as pool:
        Pusher(storage, target, pool.session(Tls(ca=registry.ca_cert), creds), jobs=2).run(
            plan_push(storage, target)[:1]
        )

    report = push_bundle(bundle, target, registry.ca_cert, creds, jobs=3)
    assert report.images == 3
    # Each image is a config and 3 layers, the first layer shared. app0's 4 blobs were there already;
    # the shared layer is mounted into app1 and app2; their configs and other layers are uploaded.
    assert report.blobs_present == 4
    assert report.blobs_mounted == 2
    assert report.blobs_uploaded == 6
    for img in tagged_images(storage):
        repo = target.repository(img.repository)
        assert repo.startswith("site-project/registry.example/")
        assert pulled_digests(registry, repo, img.tag, storage)

    again = push_bundle(bundle, target, registry.ca_cert, creds, jobs=3)
    assert (again.blobs_uploaded, again.blobs_mounted, again.bytes_uploaded, again.manifests_put) == (0, 0, 0, 0)
    assert again.blobs_present == 12 and again.manifests_present == 3


class BreakOnce(httpx.BaseTransport):
    """The real transport, with one fault each for the first request matching each rule:
    ("before", method, path part): the connection breaks before the request is sent (EBADF on write);
    ("after", method, path part): the registry gets and handles the request, but the answer is lost."""

    def __init__(self, inner: httpx.BaseTransport, rules: list[tuple[str, str, str]]) -> None:
        self.inner = inner
        self.rules = list(rules)
        self.fired: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def _take(self, request: httpx.Request, when: str, status: int = 0) -> bool:
        with self.lock:
            for rule in self.rules:
                if rule[0] == when and request.method == rule[1] and rule[2] in request.url.path and status < 300:
                    self.rules.remove(rule)
                    self.fired.append(rule)
                    return True
        return False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._take(request, "before"):
            raise httpx.WriteError("[Errno 9] Bad file descriptor", request=request)
        response = self.inner.handle_request(request)
        if self._take(request, "after", response.status_code):  # only once the registry has accepted it
            response.read()
            response.close()
            raise httpx.ReadError("Connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_push_survives_connections_breaking_mid_request(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=2, layers_per_image=2)
    storage = bundle / "registry"
    target = Target.parse(registry.registry_url.removeprefix("https://") + "/site-project")
    faults = BreakOnce(
        httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(registry.ca_cert))),
        [
            ("before", "POST", "/blobs/uploads/"),  # starting an upload: nothing reached the registry
            ("after", "PUT", "/blobs/uploads/"),  # finishing one: the blob is stored, the 201 is lost
            ("after", "PUT", "/manifests/"),  # a manifest is stored, its answer lost
            ("before", "HEAD", "/manifests/"),
        ],
    )
    auth = ChallengeAuth(Credentials(registry.username, registry.password))
    with httpx.Client(transport=faults, timeout=30) as client:
        pusher = Pusher(storage, target, Session(client, auth), jobs=2, policy=RetryPolicy(base=0.01, deadline=60))
        report = pusher.run(plan_push(storage, target))
    assert not faults.rules, f"faults not hit: {faults.rules}"
    assert report.images == 2
    for img in tagged_images(storage):
        assert pulled_digests(registry, target.repository(img.repository), img.tag, storage)
    # The blob whose answer was lost counts as present on the retry: nothing was sent twice.
    blobs = sum(len(set(p.blobs)) for p in plan_push(storage, target))
    assert report.blobs_uploaded + report.blobs_mounted + report.blobs_present == blobs
    assert report.blobs_present == 1


def test_push_gives_up_on_a_registry_that_keeps_breaking(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=1, layers_per_image=1)
    storage = bundle / "registry"
    target = Target.parse(registry.registry_url.removeprefix("https://"))
    faults = BreakOnce(
        httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(registry.ca_cert))),
        [("before", "POST", "/blobs/uploads/")] * 10,
    )
    auth = ChallengeAuth(Credentials(registry.username, registry.password))
    with httpx.Client(transport=faults, timeout=30) as client:
        pusher = Pusher(storage, target, Session(client, auth), jobs=1, policy=RetryPolicy(attempts=3, base=0.01))
        with pytest.raises(FetchError) as info:
            pusher.run(plan_push(storage, target))
    assert len(faults.fired) == 3, faults.fired  # bounded: three tries, then the error names the request
    assert "POST" in str(info.value) and "Bad file descriptor" in str(info.value)
    assert registry.password not in str(info.value)


def test_wrong_password_and_wrong_ca_are_clear_errors(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=1)
    host = registry.registry_url.removeprefix("https://")
    with pytest.raises(FetchError) as info:
        push_bundle(bundle, Target.parse(host), registry.ca_cert, Credentials(registry.username, "wrong"), jobs=1)
    assert "refused the configured credentials" in str(info.value) and "wrong" not in str(info.value)
    with pytest.raises(FetchError) as info:
        push_bundle(bundle, Target.parse(host), None, Credentials(registry.username, registry.password), jobs=1)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    f = tmp_path / "creds"
    f.write_text("username: admin\npassword: 'p@ss: word'\n")
    f.chmod(0o644)
    with pytest.raises(BadInput) as info:
        load_credentials({}, f)
    assert "readable by others (mode 644)" in str(info.value)
    f.chmod(0o600)
    creds = load_credentials({}, f)
    assert creds is not None and (creds.username, creds.password) == ("admin", "p@ss: word")
    env = load_credentials({"KUBEPLAY_PUSH_USERNAME": "u", "KUBEPLAY_PUSH_PASSWORD": "p"}, None)
    assert env is not None and env.username == "u"


def test_cli_push(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=2)
    host = registry.registry_url.removeprefix("https://")
    env = {
        "KUBEPLAY_PUSH_USERNAME": registry.username,
        "KUBEPLAY_PUSH_PASSWORD": registry.password,
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kubeplay", "push", str(bundle), "--registry", host, "--ca", str(registry.ca_cert)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pushed 2 image(s)" in proc.stderr
    assert registry.password not in proc.stderr + proc.stdout
