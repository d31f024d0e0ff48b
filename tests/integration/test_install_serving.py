"""The deploy node's serving half on loopback: real distribution registry and real nginx, started the way
`kubeplay install --no-systemd` starts them, probed the way a node pulls (TLS by domain with the CA)."""

from __future__ import annotations

import hashlib
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.registry import blob_path, manifest_children, tagged_images
from kubeplay.bootstrap.steps import STEPS, foreground, run_install
from kubeplay.steps import StepResult

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import NEEDS_REGISTRY_AND_NGINX, free_ports, make_bundle, make_context

pytestmark = [
    pytest.mark.integration,
    NEEDS_REGISTRY_AND_NGINX,
]
DOMAIN = "kube.registry.local"
SERVING = tuple(s for s in STEPS if s.name in ("serve", "certs", "registry", "nginx", "services", "health"))


def messages(results: list[StepResult]) -> dict[str, str]:
    return {r.name: r.message for r in results}


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    bundle = make_bundle(tmp_path, images=3)
    http, https, push = free_ports(3)
    ctx = make_context(tmp_path, bundle, ports=(http, https, push), domain=DOMAIN)
    try:
        results = run_install(ctx, steps=SERVING)  # type: ignore[arg-type]
        yield ctx, results
    finally:
        foreground().stop()


def client(ctx: object) -> tuple[httpx.Client, str, dict[str, object]]:
    verify = ssl.create_default_context(cafile=str(ctx.paths.ca_cert))  # type: ignore[attr-defined]
    base = f"https://127.0.0.1:{ctx.cfg.registry_https_port}"  # type: ignore[attr-defined]
    return httpx.Client(verify=verify, timeout=10, trust_env=False), base, {"sni_hostname": DOMAIN}


def test_every_image_pulls_over_tls_by_domain_and_push_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    ctx, results = served
    assert messages(results)["health"].startswith("registry /v2/ over TLS")
    storage = ctx.bundle.registry_dir
    images = tagged_images(storage)
    assert len(images) == 3
    c, base, ext = client(ctx)
    with c:
        headers = {"Host": DOMAIN}
        for img in images:
            r = c.get(
                f"{base}/v2/{img.repository}/manifests/{img.tag}",
                headers={**headers, "Accept": MANIFEST_ACCEPT},
                extensions=ext,
            )
            assert r.status_code == 200
            assert "sha256:" + hashlib.sha256(r.content).hexdigest() == img.digest
            for blob in manifest_children(storage, img.digest)[2]:
                b = c.get(f"{base}/v2/{img.repository}/blobs/{blob}", headers=headers, extensions=ext)
                assert b.status_code == 200 and "sha256:" + hashlib.sha256(b.content).hexdigest() == blob
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = c.request(method, f"{base}/v2/{images[0].repository}/blobs/uploads/", headers=headers, extensions=ext)
            assert r.status_code == 403, method
    # A wrong name does not verify (fresh connection): the certificate names the domain and registry IP only.
    c2, _, _ = client(ctx)
    with c2, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        c2.get(f"{base}/v2/", extensions={"sni_hostname": "evil.example"})
    # Pushing stays possible on loopback, straight to the registry.
    r = httpx.post(
        f"http://127.0.0.1:{ctx.cfg.registry_push_port}/v2/{images[0].repository}/blobs/uploads/", trust_env=False
    )
    assert r.status_code == 202
    assert blob_path(storage, images[0].digest).exists()


def test_files_and_ca_over_http(served) -> None:  # type: ignore[no-untyped-def]
    ctx, _ = served
    http = f"http://127.0.0.1:{ctx.cfg.nginx_http_port}"
    with httpx.Client(timeout=10, trust_env=False) as c:
        assert c.get(f"{http}/certs/rootCA.crt").content == ctx.paths.ca_cert.read_bytes()
        for f in ctx.bundle.manifest["files"]:
            body = c.get(f"{http}/{f['path']}").content
            assert hashlib.sha256(body).hexdigest() == f["sha256"]
        assert c.get(f"{http}/kubeplay.json").status_code == 404, "only files/, repos/ and the CA are served"
        assert c.get(f"{http}/registry/docker/registry/v2/").status_code == 404
        assert c.post(f"{http}/files/x").status_code == 405


def test_rerun_restarts_cleanly_after_the_first_run_died(tmp_path: Path) -> None:
    """Foreground services left behind by a killed run are ours (pid file + command line) and are replaced."""
    bundle = make_bundle(tmp_path, images=1)
    ports = tuple(free_ports(3))
    ctx = make_context(tmp_path, bundle, ports=ports)  # type: ignore[arg-type]
    try:
        run_install(ctx, steps=SERVING)  # type: ignore[arg-type]
        first = [s.proc.pid for s in foreground().services if s.proc]
        foreground().services.clear()  # forget them, as a kill -9 of kubeplay would
        again = make_context(tmp_path, bundle, ports=ports)  # type: ignore[arg-type]
        results = messages(run_install(again, steps=SERVING))  # type: ignore[arg-type]
        assert results["certs"] == "done earlier, inputs unchanged"
        assert "registry /v2/ over TLS" in results["health"]
        second = [s.proc.pid for s in foreground().services if s.proc]
        assert set(first).isdisjoint(second)
        for pid in first:  # stopped (a zombie until reaped, since this test dropped their handles)
            status = Path(f"/proc/{pid}/status")
            assert not status.exists() or "State:\tZ" in status.read_text()
    finally:
        foreground().stop()


def add_registry_release(bundle: Path, member: str = "registry") -> Path:
    """A distribution registry release archive in the bundle (the real binary, as upstream ships it in a
    .tar.gz), recorded in kubeplay.json as `kubeplay build` records bundle.yaml's registry_binary."""
    import io
    import json
    import tarfile

    from kubeplay.bundle.manifest import REGISTRY_BINARY_FILE

    rel = "files/github.com/distribution/distribution/releases/download/v2.8.2/registry_2.8.2_linux_amd64.tar.gz"
    archive = bundle / rel
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add("/usr/bin/docker-registry", arcname=member)
        readme = b"the registry\n"
        info = tarfile.TarInfo("README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    manifest_path = bundle / "kubeplay.json"
    manifest = json.loads(manifest_path.read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest["files"].append(
        {"name": REGISTRY_BINARY_FILE, "arch": "amd64", "url": "https://github.com/" + rel.split("/", 2)[2],
         "path": rel, "variable": "registry_binary.url", "size": archive.stat().st_size, "sha256": digest}
    )  # fmt: skip
    manifest["spec"]["registry_binary"] = {"url": "unused", "sha256": {"amd64": digest}, "member": member}
    manifest_path.write_text(json.dumps(manifest))
    from kubeplay.bundle.manifest import write_sha256sums

    write_sha256sums(bundle, use_cache=False)  # as a build does: the served set takes what SHA256SUMS lists
    return archive


def test_a_deploy_node_without_a_registry_package_runs_the_bundled_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EL repos have no distribution registry package: the bundle's release archive provides the binary."""
    import kubeplay.bootstrap.registry as registry_module

    bundle = make_bundle(tmp_path, images=2)
    add_registry_release(bundle)
    ctx = make_context(tmp_path, bundle, ports=tuple(free_ports(3)), domain=DOMAIN)  # type: ignore[arg-type]
    owned = ctx.paths.bin / "registry"  # type: ignore[attr-defined]
    # This node has no registry package: none of the packaged paths, nothing on PATH but its own bin.
    monkeypatch.setattr(registry_module, "REGISTRY_BINARIES", (str(owned),))
    monkeypatch.setenv("PATH", f"{owned.parent}:/usr/sbin:/sbin")
    try:
        results = messages(run_install(ctx, steps=SERVING))  # type: ignore[arg-type]
        assert f"({owned} from registry_2.8.2_linux_amd64.tar.gz)" in results["registry"]
        assert owned.read_bytes() == Path("/usr/bin/docker-registry").read_bytes()
        assert owned.stat().st_mode & 0o777 == 0o755
        registry = next(s for s in foreground().services if s.name == "kubeplay-registry")
        assert registry.argv[0] == str(owned)
        http, base, ext = client(ctx)
        with http:
            for image in tagged_images(bundle / "registry"):
                r = http.get(
                    f"{base}/v2/{image.repository}/manifests/{image.tag}",
                    headers={"Accept": MANIFEST_ACCEPT},
                    extensions=ext,
                )
                assert r.status_code == 200, image
    finally:
        foreground().stop()
    # The binary is kubeplay's: uninstall's record lists it.
    assert str(owned) in {i.target for i in ctx.record.of_kind("file")}  # type: ignore[attr-defined]
