"""`kubeplay push` into a real distribution registry on loopback (TLS, token auth as Harbor does):
every image arrives byte-exact, shared blobs are mounted, a second push uploads nothing."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.push import Pusher, Target, load_credentials, plan_push, push_bundle
from kubeplay.bootstrap.registry import manifest_children, tagged_images
from kubeplay.errors import BadInput, FetchError
from kubeplay.fetch.auth import ChallengeAuth
from kubeplay.fetch.clients import ClientPool
from kubeplay.fetch.mirrors import Credentials, Tls

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
