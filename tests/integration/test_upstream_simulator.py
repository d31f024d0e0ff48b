"""The upstream simulator behaves like the real upstreams a build talks to (registry auth, files, faults)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from tests.conftest import require_shared

from kubeplay.bundle.manifest import read_manifest
from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.model import Checksum, FileArtifact, ImageArtifact, Plan
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec, Mirror, load_bundle_spec
from kubeplay.errors import KubeplayError
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.kubespray import CHECKSUMS_PATH, SyntheticDownload, checksum_entries
from kubeplay.lab.upstream.process import require_binary
from kubeplay.lab.upstream.push import parse_challenge
from kubeplay.lab.upstream.release import serve_release

pytestmark = pytest.mark.integration

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# A cut body surfaces as an incomplete message (FIN) or, on some stacks, a read error (RST).
TRUNCATED = (httpx.RemoteProtocolError, httpx.ReadError)


def client(sim: UpstreamSimulator) -> httpx.Client:
    return httpx.Client(verify=sim.ssl_context(), timeout=30.0)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=False)


def registry_ref(sim: UpstreamSimulator, repository_and_tag: str) -> str:
    return f"docker://{sim.registry_url.removeprefix('https://')}/{repository_and_tag}"


# -- registry: token auth ----------------------------------------------------------------------------


def test_token_flow_with_plain_http(upstream: UpstreamSimulator) -> None:
    info = upstream.push_image("registry.k8s.io/pause:3.10", ["amd64", "arm64"])
    url = f"{upstream.registry_url}/v2/registry.k8s.io/pause/manifests/3.10"
    with client(upstream) as http:
        first = http.get(url, headers={"Accept": MANIFEST_ACCEPT})
        assert first.status_code == 401
        scheme, challenge = parse_challenge(first.headers["WWW-Authenticate"])
        assert scheme == "bearer"
        assert challenge["realm"] == upstream.token_url
        assert challenge["service"] == "kubeplay-lab-registry"
        assert challenge["scope"] == "repository:registry.k8s.io/pause:pull"

        wrong = http.get(challenge["realm"], params=challenge, auth=(upstream.username, "not-the-password"))
        assert wrong.status_code == 401
        anonymous = http.get(challenge["realm"], params=challenge)
        assert anonymous.status_code == 401

        granted = http.get(challenge["realm"], params=challenge, auth=(upstream.username, upstream.password))
        assert granted.status_code == 200
        token = granted.json()["token"]
        assert granted.json()["access_token"] == token
        assert granted.json()["expires_in"] > 0

        ok = http.get(url, headers={"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.headers["Docker-Content-Digest"] == info.digest
        assert "sha256:" + hashlib.sha256(ok.content).hexdigest() == info.digest
        listed = {m["platform"]["architecture"] for m in ok.json()["manifests"]}
        assert listed == {"amd64", "arm64"}

        # A token is scoped: it does not open another repository.
        upstream.push_image("quay.io/calico/node:v3.29.1", ["amd64"])
        other = http.get(
            f"{upstream.registry_url}/v2/quay.io/calico/node/manifests/v3.29.1",
            headers={"Accept": MANIFEST_ACCEPT, "Authorization": f"Bearer {token}"},
        )
        assert other.status_code == 401


def test_token_service_oauth_post_form(upstream: UpstreamSimulator) -> None:
    with client(upstream) as http:
        response = http.post(
            upstream.token_url,
            data={
                "grant_type": "password",
                "username": upstream.username,
                "password": upstream.password,
                "service": "kubeplay-lab-registry",
                "scope": "repository:registry.k8s.io/pause:pull",
            },
        )
    assert response.status_code == 200
    assert response.json()["access_token"].count(".") == 2


def test_anonymous_pull_when_enabled(make_upstream: Callable[..., UpstreamSimulator]) -> None:
    sim = make_upstream(registry_auth="token", anonymous_pull=True)
    sim.push_image("docker.io/library/busybox:1.36", ["amd64"])
    inspected = skopeo(
        "inspect",
        "--raw",
        "--cert-dir",
        str(sim.cert_dir),
        "--no-creds",
        registry_ref(sim, "docker.io/library/busybox:1.36"),
    )
    assert inspected.returncode == 0, inspected.stderr
    pushed = skopeo(
        "copy",
        "--dest-cert-dir",
        str(sim.cert_dir),
        "--dest-no-creds",
        registry_ref(sim, "docker.io/library/busybox:1.36"),
        registry_ref(sim, "docker.io/library/busybox:copy"),
        "--src-cert-dir",
        str(sim.cert_dir),
        "--src-no-creds",
    )
    assert pushed.returncode != 0  # anonymous tokens grant pull only


# -- registry: basic auth ----------------------------------------------------------------------------


def test_basic_auth(make_upstream: Callable[..., UpstreamSimulator]) -> None:
    sim = make_upstream(registry_auth="basic")
    info = sim.push_image("ghcr.io/example/tool:v1", ["amd64"])
    url = f"{sim.registry_url}/v2/ghcr.io/example/tool/manifests/v1"
    with client(sim) as http:
        none = http.get(url, headers={"Accept": MANIFEST_ACCEPT})
        assert none.status_code == 401
        assert none.headers["WWW-Authenticate"].startswith("Basic ")
        assert http.get(url, headers={"Accept": MANIFEST_ACCEPT}, auth=(sim.username, "wrong")).status_code == 401
        ok = http.get(url, headers={"Accept": MANIFEST_ACCEPT}, auth=(sim.username, sim.password))
    assert ok.status_code == 200
    assert ok.headers["Docker-Content-Digest"] == info.digest
    assert ok.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"


def test_no_auth_registry_serves_anonymously(make_upstream: Callable[..., UpstreamSimulator]) -> None:
    sim = make_upstream(registry_auth="none")
    info = sim.push_image("mcr.microsoft.com/oss/tool:1.0", ["amd64", "arm64"], index_format="docker")
    with client(sim) as http:
        ok = http.get(
            f"{sim.registry_url}/v2/mcr.microsoft.com/oss/tool/manifests/1.0", headers={"Accept": MANIFEST_ACCEPT}
        )
    assert ok.status_code == 200
    assert ok.headers["Docker-Content-Digest"] == info.digest
    assert ok.json()["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert "credentials" not in sim.mirrors()["mcr.microsoft.com"]


# -- images ------------------------------------------------------------------------------------------


def test_multi_arch_image_with_skopeo(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    info = upstream.push_image("quay.io/calico/cni:v3.29.1", ["amd64", "arm64"], variant_arm64=True)
    creds = f"{upstream.username}:{upstream.password}"
    ref = registry_ref(upstream, "quay.io/calico/cni:v3.29.1")

    raw = skopeo("inspect", "--raw", "--cert-dir", str(upstream.cert_dir), "--creds", creds, ref)
    assert raw.returncode == 0, raw.stderr
    assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == info.digest
    platforms = {
        (m["platform"]["architecture"], m["platform"].get("variant")): m["digest"]
        for m in json.loads(raw.stdout)["manifests"]
    }
    assert platforms == {
        ("amd64", None): info.manifests["linux/amd64"],
        ("arm64", "v8"): info.manifests["linux/arm64/v8"],
    }

    out = tmp_path / "arm64"
    copied = skopeo(
        "--override-arch",
        "arm64",
        "--override-variant",
        "v8",
        "copy",
        "--src-cert-dir",
        str(upstream.cert_dir),
        "--src-creds",
        creds,
        ref,
        f"dir:{out}",
    )
    assert copied.returncode == 0, copied.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    assert (config["architecture"], config["os"], config.get("variant")) == ("arm64", "linux", "v8")
    for layer in manifest["layers"]:
        data = (out / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
            assert tar.getnames()  # a real, non-empty tar


def test_images_share_base_layers_across_images_and_arches(upstream: UpstreamSimulator) -> None:
    a = upstream.push_image("registry.k8s.io/kube-proxy:v1.31.0", ["amd64", "arm64"])
    b = upstream.push_image("registry.k8s.io/kube-scheduler:v1.31.0", ["amd64", "arm64"])
    single = upstream.push_image("docker.io/library/nginx:1.27", ["amd64"])
    shared = set(a.blobs) & set(b.blobs)
    assert len(shared) == 3  # the common layer, and one per-arch base layer for each of two arches
    assert set(single.blobs) & shared  # the common layer is shared by a single-arch image too
    assert single.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert list(single.manifests) == ["linux/amd64"]
    # Pushing the same image again gives the same digests (deterministic content).
    assert upstream.push_image("registry.k8s.io/kube-proxy:v1.31.0", ["amd64", "arm64"]).digest == a.digest


# -- files -------------------------------------------------------------------------------------------


def test_file_serving_with_range(upstream: UpstreamSimulator) -> None:
    data = os.urandom(300_000)
    url = "https://dl.k8s.io/release/v1.31.0/bin/linux/amd64/kubeadm-range-test"
    sha = upstream.add_file(url, data)
    assert sha == hashlib.sha256(data).hexdigest()
    mirror = upstream.mirrors()["dl.k8s.io"]
    via_mirror = str(mirror["url"]) + "/release/v1.31.0/bin/linux/amd64/kubeadm-range-test"
    assert via_mirror == upstream.file_url(url)
    with client(upstream) as http:
        full = http.get(via_mirror)
        part = http.get(via_mirror, headers={"Range": "bytes=1000-1999"})
        tail = http.get(via_mirror, headers={"Range": "bytes=299000-"})
        head = http.head(via_mirror)
        missing = http.get(upstream.file_url("https://dl.k8s.io/nope"))
    assert full.status_code == 200 and full.content == data
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/300000"
    assert tail.status_code == 206 and tail.content == data[299000:]
    assert int(head.headers["Content-Length"]) == len(data)
    assert missing.status_code == 404


# -- faults ------------------------------------------------------------------------------------------


@pytest.fixture
def payload(upstream: UpstreamSimulator, request: pytest.FixtureRequest) -> tuple[str, bytes]:
    data = os.urandom(200_000)
    url = f"https://github.com/example/faults/releases/download/v1/{request.node.name}.bin"
    upstream.add_file(url, data)
    return url, data


def test_fault_503_then_success(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    target = upstream.fault_url("fail/2", url)
    with client(upstream) as http:
        codes = [http.get(target).status_code for _ in range(2)]
        last = http.get(target)
    assert codes == [503, 503]
    assert last.status_code == 200 and last.content == data


def test_fault_cut_mid_body_then_resume_with_range(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    target = upstream.fault_url("cut/50000", url)
    received = bytearray()
    with client(upstream) as http:
        with pytest.raises(TRUNCATED), http.stream("GET", target) as response:
            assert response.status_code == 200
            assert int(response.headers["Content-Length"]) == len(data)
            for chunk in response.iter_bytes():
                received.extend(chunk)
        assert len(received) == 50000
        rest = http.get(target, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert bytes(received) + rest.content == data
    seen = [r for r in upstream.fault_requests() if r["path"] == "/" + target.split("/", 3)[3]]
    assert [(r["status"], r["sent"], r["range"]) for r in seen] == [(200, 50000, None), (206, 150000, "bytes=50000-")]


def test_fault_cut_every_response_needs_resume(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    target = upstream.fault_url("cut-every/80000", url)
    received = bytearray()
    with client(upstream) as http:
        for _ in range(5):
            headers = {"Range": f"bytes={len(received)}-"} if received else {}
            try:
                with http.stream("GET", target, headers=headers) as response:
                    for chunk in response.iter_bytes():
                        received.extend(chunk)
            except TRUNCATED:
                continue
            break
    assert bytes(received) == data  # 80000 + 80000 + 40000


def test_fault_slow_server_paces_the_body(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    target = upstream.fault_url("slow/400000", url)  # 200 kB at 400 kB/s: about half a second
    with client(upstream) as http:
        began = time.monotonic()
        response = http.get(target)
        elapsed = time.monotonic() - began
    assert response.content == data
    assert elapsed >= 0.4  # the documented pacing is a floor the server enforces, not a performance claim


def test_fault_wrong_bytes(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    target = upstream.fault_url("corrupt", url)
    with client(upstream) as http:
        full = http.get(target)
        part = http.get(target, headers={"Range": "bytes=100000-"})
    assert full.status_code == 200 and len(full.content) == len(data)
    assert hashlib.sha256(full.content).digest() != hashlib.sha256(data).digest()
    assert part.status_code == 206 and len(part.content) == 100000 and part.content != data[100000:]


def test_fault_fixed_status(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, _ = payload
    with client(upstream) as http:
        assert http.get(upstream.fault_url("status/404", url)).status_code == 404
        assert http.get(upstream.fault_url("status/500", url)).status_code == 500
        assert http.get(f"{upstream.faults_url}/bogus/{url}").status_code == 404


def test_fault_mirror_base_url_works_per_file(upstream: UpstreamSimulator, payload: tuple[str, bytes]) -> None:
    url, data = payload
    base = f"{upstream.faults_url}/fail/1/github.com"  # usable as a bundle.yaml mirror url
    target = base + url.removeprefix("https://github.com")
    with client(upstream) as http:
        assert http.get(target).status_code == 503
        assert http.get(target).content == data


# -- kubespray ---------------------------------------------------------------------------------------


def fake_kubespray_tree(root: Path) -> Path:
    tree = root / "kubespray-2.99.0"
    checksums = tree / CHECKSUMS_PATH
    checksums.parent.mkdir(parents=True)
    checksums.write_text(
        "---\n"
        "kubelet_checksums:\n  arm64:\n    1.31.1: sha256:" + "a" * 64 + "\n    1.31.0: sha256:" + "b" * 64 + "\n"
        "  amd64:\n    1.31.1: sha256:" + "c" * 64 + "\n    1.31.0: sha256:" + "d" * 64 + "\n"
        "kubeadm_checksums:\n  arm64:\n    1.31.1: sha256:" + "e" * 64 + "\n"
        "  amd64:\n    1.31.1: sha256:" + "f" * 64 + "\n"
        "cni_binary_checksums:\n  amd64:\n    1.6.0: sha256:" + "1" * 64 + "\n"
        "  arm64:\n    1.6.0: sha256:" + "2" * 64 + "\n"
    )
    (tree / "README.md").write_text("kubespray\n")
    (tree / "docs").mkdir()
    (tree / "docs" / "link.md").symlink_to("../README.md")
    return tree


def check_archive_matches_served_files(sim: UpstreamSimulator, archive_path: Path, files: dict[str, str]) -> None:
    with tarfile.open(archive_path) as tar:
        top = {n.split("/", 1)[0] for n in tar.getnames()}
        member = tar.extractfile(f"{next(iter(top))}/{CHECKSUMS_PATH}")
        assert member is not None
        entries = checksum_entries(member.read().decode())
    assert len(top) == 1
    served: dict[str, str] = {}
    with client(sim) as http:
        for url in files:
            response = http.get(sim.file_url(url))
            assert response.status_code == 200, url
            served[url] = hashlib.sha256(response.content).hexdigest()
    assert served == files
    table_values = {v.removeprefix("sha256:") for v in entries.values()}
    assert set(files.values()) <= table_values


FAKE_DOWNLOADS = [
    SyntheticDownload(
        url=f"https://dl.k8s.io/release/v1.31.1/bin/linux/{arch}/{name}",
        table=f"{name}_checksums",
        arch=arch,
        version="1.31.1",
    )
    for name in ("kubelet", "kubeadm")
    for arch in ("amd64", "arm64")
] + [
    SyntheticDownload(
        url=f"https://github.com/containernetworking/plugins/releases/download/v1.6.0/cni-plugins-linux-{arch}-v1.6.0.tgz",
        table="cni_binary_checksums",
        arch=arch,
        version="1.6.0",
    )
    for arch in ("amd64", "arm64")
]


def test_kubespray_archive_checksums_match_served_files(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    tree = fake_kubespray_tree(tmp_path)
    archive = upstream.add_kubespray(tree, FAKE_DOWNLOADS)
    assert archive.top_dir == "kubespray-2.99.0"
    assert archive.sha256 == hashlib.sha256(archive.path.read_bytes()).hexdigest()
    expected_urls = {d.url for d in FAKE_DOWNLOADS}
    assert set(archive.files) == expected_urls
    check_archive_matches_served_files(upstream, archive.path, archive.files)
    with tarfile.open(archive.path) as tar:
        entries = checksum_entries(tar.extractfile(f"kubespray-2.99.0/{CHECKSUMS_PATH}").read().decode())  # type: ignore[union-attr]
        assert tar.getmember("kubespray-2.99.0/docs/link.md").issym()
    url = "https://dl.k8s.io/release/v1.31.1/bin/linux/arm64/kubelet"
    assert entries[("kubelet_checksums", "arm64", "1.31.1")] == "sha256:" + archive.files[url]
    assert entries[("kubelet_checksums", "arm64", "1.31.0")] == "sha256:" + "b" * 64  # untouched
    # The .tgz is a real gzip'd tar, and the archive is served at GitHub's tag URL.
    with client(upstream) as http:
        cni = http.get(upstream.file_url(sorted(u for u in expected_urls if u.endswith(".tgz"))[0])).content
        with tarfile.open(fileobj=io.BytesIO(cni)) as tar:
            assert "./bridge" in tar.getnames()
        served_archive = http.get(upstream.file_url(archive.url)).content
    assert hashlib.sha256(served_archive).hexdigest() == archive.sha256
    # Deterministic: the same inputs give the same archive bytes.
    again = upstream.add_kubespray(tree, FAKE_DOWNLOADS)
    assert again.sha256 == archive.sha256


# -- mirrors, credentials, lifecycle ----------------------------------------------------------------


def test_mirrors_and_credentials_file(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    mirrors = upstream.mirrors()
    for host in ("github.com", "dl.k8s.io", "storage.googleapis.com", "get.helm.sh", "raw.githubusercontent.com"):
        assert mirrors[host] == {"url": f"{upstream.files_url}/{host}", "ca": str(upstream.ca_cert)}
    for host in ("registry.k8s.io", "quay.io", "docker.io", "ghcr.io", "gcr.io", "mcr.microsoft.com"):
        assert mirrors[host] == {
            "url": f"{upstream.registry_url}/{host}",
            "ca": str(upstream.ca_cert),
            "credentials": "simulator",
        }
    path = upstream.credentials_file(tmp_path / "creds.yaml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == {
        "simulator": {"username": upstream.username, "password": upstream.password}
    }
    assert upstream.password not in repr(upstream)


def port_open(url: str) -> bool:
    host, port = url.removeprefix("https://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_processes_are_gone_after_exit(tmp_path: Path) -> None:
    with UpstreamSimulator(tmp_path / "sim", registry_auth="token") as sim:
        pids = sim.pids
        urls = [sim.registry_url, sim.files_url, sim.faults_url, sim.token_url.removesuffix("/token")]
        assert len(pids) == 4
        assert all(port_open(u) for u in urls)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still exists"
    assert not any(port_open(u) for u in urls)
    # Everything it wrote stays under its workdir.
    assert (tmp_path / "sim" / "registry" / "config.yml").is_file()
    assert (tmp_path / "sim" / "files" / "nginx.conf").is_file()


# -- registry faults ---------------------------------------------------------------------------------


def bearer_for(http: httpx.Client, sim: UpstreamSimulator, url: str) -> dict[str, str]:
    challenge_response = http.get(url, headers={"Accept": MANIFEST_ACCEPT})
    assert challenge_response.status_code == 401
    _, challenge = parse_challenge(challenge_response.headers["WWW-Authenticate"])
    token = http.get(challenge["realm"], params=challenge, auth=(sim.username, sim.password)).json()["token"]
    return {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT}


def test_registry_fault_cut_blob_then_resume(upstream: UpstreamSimulator) -> None:
    info = upstream.push_image("quay.io/faults/cut:v1", ["amd64"], layer_kib=256)
    layer = max(info.blobs, key=lambda d: info.sizes[d])
    base = upstream.registry_fault_mirror("cut/10000", "quay.io")
    assert base == f"{upstream.faults_url}/fault/cut/10000/quay.io"
    url = f"{upstream.faults_url}/v2/fault/cut/10000/quay.io/faults/cut/blobs/{layer}"
    received = bytearray()
    with client(upstream) as http:
        headers = bearer_for(http, upstream, url)  # the 401 does not use up the cut
        with pytest.raises(TRUNCATED), http.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received.extend(chunk)
        assert len(received) == 10000
        rest = http.get(url, headers={**headers, "Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert "sha256:" + hashlib.sha256(bytes(received) + rest.content).hexdigest() == layer


def test_registry_fault_503_and_wrong_bytes(upstream: UpstreamSimulator) -> None:
    info = upstream.push_image("ghcr.io/faults/bad:v1", ["amd64", "arm64"])
    fail_url = f"{upstream.faults_url}/v2/fault/fail/2/ghcr.io/faults/bad/manifests/v1"
    bad_url = f"{upstream.faults_url}/v2/fault/corrupt/0/ghcr.io/faults/bad/manifests/{info.digest}"
    with client(upstream) as http:
        headers = bearer_for(http, upstream, f"{upstream.registry_url}/v2/ghcr.io/faults/bad/manifests/v1")
        codes = [http.get(fail_url, headers=headers).status_code for _ in range(3)]
        corrupted = http.get(bad_url, headers=headers)
    assert codes == [503, 503, 200]
    assert corrupted.status_code == 200
    assert corrupted.headers["Docker-Content-Digest"] == info.digest
    assert "sha256:" + hashlib.sha256(corrupted.content).hexdigest() != info.digest


def test_skopeo_through_the_registry_fault_proxy(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    info = upstream.push_image("registry.k8s.io/faults/slow:v1", ["amd64", "arm64"])
    mirror = upstream.registry_fault_mirror("slow/50000000", "registry.k8s.io").removeprefix("https://")
    copied = skopeo(
        "copy",
        "--all",
        "--src-cert-dir",
        str(upstream.cert_dir),
        "--src-creds",
        f"{upstream.username}:{upstream.password}",
        f"docker://{mirror}/faults/slow:v1",
        f"dir:{tmp_path / 'all'}",
    )
    assert copied.returncode == 0, copied.stderr
    index = (tmp_path / "all" / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(index).hexdigest() == info.digest


def test_kubespray_from_plan_files(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    tree = fake_kubespray_tree(tmp_path)
    kubelet = FileArtifact(
        name="kubelet",
        arch="arm64",
        version="1.31.0",
        url="https://dl.k8s.io/release/v1.31.0/bin/linux/arm64/kubelet",
        checksum=Checksum(algorithm="sha256", hex="b" * 64),
        path="files/dl.k8s.io/release/v1.31.0/bin/linux/arm64/kubelet",
        variable="kubelet_download_url",
    )
    unchecked = FileArtifact(
        name="extra",
        arch="noarch",
        url="https://raw.githubusercontent.com/example/repo/v1/manifest.yaml",
        path="files/raw.githubusercontent.com/example/repo/v1/manifest.yaml",
        variable="extra_url",
    )
    archive = upstream.add_kubespray(tree, plan_files=[kubelet, unchecked])
    check_archive_matches_served_files(upstream, archive.path, {kubelet.url: archive.files[kubelet.url]})
    with tarfile.open(archive.path) as tar:
        member = tar.extractfile(f"kubespray-2.99.0/{CHECKSUMS_PATH}")
        assert member is not None
        entries = checksum_entries(member.read().decode())
    assert entries[("kubelet_checksums", "arm64", "1.31.0")] == "sha256:" + archive.files[kubelet.url]
    assert entries[("kubelet_checksums", "arm64", "1.31.1")] == "sha256:" + "a" * 64
    assert unchecked.url in archive.files  # served even without a checksum table entry
    assert yaml.safe_load(upstream_get(upstream, unchecked.url))["kind"] == "List"


def upstream_get(sim: UpstreamSimulator, url: str) -> bytes:
    with client(sim) as http:
        response = http.get(sim.file_url(url))
    response.raise_for_status()
    return response.content


def test_mirrors_validate_as_bundle_mirrors(upstream: UpstreamSimulator) -> None:
    for host, entry in upstream.mirrors().items():
        mirror = Mirror.model_validate(entry)
        assert mirror.ca == upstream.ca_cert, host


def test_missing_server_binary_names_the_package() -> None:
    with pytest.raises(KubeplayError) as info:
        require_binary("/nonexistent/docker-registry", "docker-registry")
    assert "/nonexistent/docker-registry" in info.value.message
    assert info.value.hint == "install the Debian package: apt-get install docker-registry"


ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from kubeplay.catalog.model import Checksum, FileArtifact, ImageArtifact, Plan
from kubeplay.config.bundle import Mirror
from kubeplay.errors import KubeplayError
from kubeplay.lab.upstream import UpstreamSimulator
sim = UpstreamSimulator(Path(sys.argv[1])).start()
print(" ".join(map(str, sim.pids)), flush=True)
time.sleep(120)
"""


def test_servers_die_with_a_killed_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path / "sim")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 4 and all(Path(f"/proc/{p}").exists() for p in pids)
    finally:
        owner.kill()
        owner.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_push_plan_images(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    tagged = ImageArtifact(
        name="coredns",
        upstream="registry.k8s.io/coredns/coredns:v1.11.3",
        registry="registry.k8s.io",
        repository="coredns/coredns",
        tag="v1.11.3",
        bundle_repository="library/registry.k8s.io/coredns/coredns",
        variable="coredns_image_repo",
    )
    pinned = ImageArtifact(
        name="pinned",
        upstream="quay.io/example/pinned@sha256:" + "0" * 64,
        registry="quay.io",
        repository="example/pinned",
        digest="sha256:" + "0" * 64,
        bundle_repository="library/quay.io/example/pinned",
        variable="pinned_image_repo",
    )
    pushed, skipped = upstream.push_plan_images([tagged, pinned], ["amd64", "arm64"])
    assert skipped == [pinned.upstream]
    info = pushed["registry.k8s.io/coredns/coredns:v1.11.3"]
    assert set(info.manifests) == {"linux/amd64", "linux/arm64/v8"}
    out = skopeo(
        "copy",
        "--src-cert-dir",
        str(upstream.cert_dir),
        "--src-creds",
        f"{upstream.username}:{upstream.password}",
        registry_ref(upstream, "registry.k8s.io/coredns/coredns:v1.11.3"),
        f"dir:{tmp_path / 'coredns'}",
    )
    assert out.returncode == 0, out.stderr


def test_simulated_release_replans_to_the_served_files(
    make_upstream: Callable[..., UpstreamSimulator], tmp_path: Path
) -> None:
    """serve_release (the demo's and the hand-run mode's path): the simulated release plans the served files."""
    source = require_shared("upstream", "kubespray", "kubespray-v2.31.0.tar.gz")
    sim = make_upstream()

    def plan_of(path: Path, sha256: str | None, cache: str) -> Plan:
        spec = BundleSpec.model_validate(
            {"kubespray": {"version": "v2.31.0", "source": str(path), "sha256": sha256}, "arches": ["amd64", "arm64"]}
        )
        return make_plan(spec, load_tree(path, cache_dir=tmp_path / cache))

    original = plan_of(source, None, "a")
    release = serve_release(sim, source, arches=["amd64", "arm64"], cache_dir=tmp_path / "a", layer_kib=4)
    archive = release.archive
    assert archive.top_dir == "kubespray-2.31.0"
    assert release.plan == original
    assert not release.pinned and set(release.images) == {i.upstream for i in original.images}
    for info in release.images.values():
        assert set(info.manifests) == {"linux/amd64", "linux/arm64/v8"}, info.reference
    check_archive_matches_served_files(sim, archive.path, archive.files)

    simulated = plan_of(archive.path, archive.sha256, "b")
    assert [f.url for f in simulated.files] == [f.url for f in original.files]
    for f in simulated.files:
        assert f.checksum is not None and f.checksum.hex == archive.files[f.url], f.url
        assert f.checksum.hex == hashlib.sha256(upstream_get(sim, f.url)).hexdigest(), f.url


# -- the simulator by hand: python -m kubeplay.lab.upstream ------------------------------------------

HAND_RUN_READY = 180.0  # seconds: the real release is extracted, planned and served before "stop:"


@dataclass
class HandRun:
    """A running `python -m kubeplay.lab.upstream`: its process, what it printed, what it said to run."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def printed(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def commands(self) -> list[str]:
        lines = self.printed().splitlines()
        start = lines.index("build from it, in another terminal:") + 1
        return [line.strip() for line in lines[start:] if line.startswith("    ")]

    def server_pids(self) -> list[int]:
        stop = next(line for line in self.printed().splitlines() if line.startswith("stop:"))
        return [int(p) for p in stop.split("pids", 1)[1].strip(" )").split()]


def start_hand_run(workdir: Path, *args: str, env: dict[str, str]) -> HandRun:
    workdir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = workdir / "stdout.txt", workdir / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubeplay.lab.upstream", str(workdir / "upstream"), *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    run = HandRun(proc, stdout, stderr)
    deadline = time.monotonic() + HAND_RUN_READY
    while not any(line.startswith("stop:") for line in run.printed().splitlines()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=30)
            pytest.fail(f"the simulator did not get ready (exit {proc.returncode}):\n{run.printed()}")
        time.sleep(0.2)
    return run


def stop_hand_run(run: HandRun, signum: int) -> None:
    """Send `signum` and wait: it exits 0 and no server it started is left."""
    pids = run.server_pids()
    assert len(pids) == 4 and all(Path(f"/proc/{p}").exists() for p in pids)
    run.proc.send_signal(signum)
    assert run.proc.wait(timeout=30) == 0, run.printed()
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "servers left behind"
    assert f"simulator stopped: pids {' '.join(map(str, pids))}" in run.printed()


def build_from_hand_run(run: HandRun, workdir: Path, env: dict[str, str]) -> tuple[dict[str, object], Path]:
    """Load what it printed as bundle.yaml, run the build and verify commands it printed, exactly."""
    printed_spec = yaml.safe_load(run.stdout.read_text())
    spec_path = workdir / "upstream" / "bundle.yaml"
    assert yaml.safe_load(spec_path.read_text()) == printed_spec
    load_bundle_spec(spec_path)  # a complete bundle.yaml, as `kubeplay build` reads it
    build, verify = run.commands()
    built = subprocess.run(shlex.split(build), capture_output=True, text=True, timeout=900, env=env, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "failed" not in built.stderr
    checked = subprocess.run(shlex.split(verify), capture_output=True, text=True, timeout=300, env=env, check=False)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "all digests match" in checked.stderr
    return printed_spec, Path(shlex.split(build)[shlex.split(build).index("-o") + 1])


def hand_run_env(tmp_path: Path) -> dict[str, str]:
    cache = tmp_path / "cache"
    return {**os.environ, "XDG_CACHE_HOME": str(cache), "KUBEPLAY_CACHE_DIR": str(cache)}


def planned(source: Path, arches: list[str], cache: Path) -> Plan:
    """The plan `kubeplay build` makes for the original tree (upstream's checksums), as an oracle."""
    spec = BundleSpec.model_validate({"kubespray": {"version": "v0", "source": str(source)}, "arches": arches})
    return make_plan(spec, load_tree(source, cache_dir=cache))


def check_bundle_holds_the_plan(bundle: Path, plan: Plan, arches: list[str]) -> None:
    manifest = read_manifest(bundle)
    assert sorted(f.url for f in manifest.files) == sorted(f.url for f in plan.files)
    assert sorted(i.upstream for i in manifest.images) == sorted(i.upstream for i in plan.images)
    for image in manifest.images:
        assert sorted(p.arch for p in image.platforms) == sorted(arches), image.repository


@pytest.mark.slow
def test_hand_run_serves_the_default_plan_of_a_real_release(tmp_path: Path) -> None:
    """README "Try it without internet": the printed bundle.yaml builds kubespray v2.31.0's default plan."""
    source = require_shared("upstream", "kubespray", "kubespray-v2.31.0.tar.gz")
    env = hand_run_env(tmp_path)
    run = start_hand_run(tmp_path, "--kubespray", str(source), env=env)
    try:
        spec, bundle = build_from_hand_run(run, tmp_path, env)
        assert spec["arches"] == ["amd64"]
        plan = planned(source, ["amd64"], tmp_path / "cache")
        # The files the sample used to leave out: etcd, crictl, nerdctl and calico's CRDs.
        names = {f.name for f in plan.files}
        assert {"etcd", "crictl", "nerdctl", "calico_crds"} <= names, names
        check_bundle_holds_the_plan(bundle, plan, ["amd64"])
    finally:
        if run.proc.poll() is None:
            stop_hand_run(run, signal.SIGTERM)


def test_hand_run_with_the_example_tree_two_arches_and_ctrl_c(tmp_path: Path) -> None:
    """Without ../shared: the built-in tree, amd64 and arm64; Ctrl-C stops every server it started."""
    env = hand_run_env(tmp_path)
    run = start_hand_run(tmp_path, "--example-tree", "--arch", "amd64", "--arch", "arm64", env=env)
    try:
        spec, bundle = build_from_hand_run(run, tmp_path, env)
        assert spec["arches"] == ["amd64", "arm64"]
        check_bundle_holds_the_plan(
            bundle, planned(example_tree_path(), ["amd64", "arm64"], tmp_path / "c"), ["amd64", "arm64"]
        )
    finally:
        if run.proc.poll() is None:
            stop_hand_run(run, signal.SIGINT)


def test_hand_run_refuses_a_missing_tree_before_starting_servers(tmp_path: Path) -> None:
    missing = tmp_path / "kubespray-v9.9.9.tar.gz"
    run = subprocess.run(
        [sys.executable, "-m", "kubeplay.lab.upstream", str(tmp_path / "upstream"), "--kubespray", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert f"error: {missing}: no such file or directory" in run.stderr
    assert "--example-tree" in run.stderr
    assert not run.stdout
    assert not (tmp_path / "upstream" / "registry").exists()  # no server was started


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
def test_hand_run_interrupted_while_starting_stops_what_it_started(tmp_path: Path) -> None:
    """SIGTERM while the release is still being extracted and served: exit 130, no server left behind."""
    source = require_shared("upstream", "kubespray", "kubespray-v2.31.0.tar.gz")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubeplay.lab.upstream", str(tmp_path / "upstream"), "--kubespray", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hand_run_env(tmp_path),  # a cold cache: extracting the release leaves seconds to interrupt in
    )
    try:
        deadline = time.monotonic() + 60
        while len(servers := children_of(proc.pid)) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert len(servers) == 4, "the simulator's four servers did not start"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert "interrupted while starting" in err.decode()
    assert not out  # no bundle.yaml printed for a release that was not served
    assert not (tmp_path / "upstream" / "bundle.yaml").exists()
    assert not [p for p in servers if Path(f"/proc/{p}").exists()], "servers left behind"
