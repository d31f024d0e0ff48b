"""A deploy node serving several versions: a second bundle (full or delta) is merged into what real nginx
and the real distribution registry serve, while clients keep fetching the first version's content."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bootstrap.merge import add_bundle, plan_merge
from kubeplay.bootstrap.prune import prune
from kubeplay.bootstrap.served import served_inventory, served_versions
from kubeplay.bootstrap.steps import STEPS, foreground, run_install
from kubeplay.bundle.inventory import identity_of
from kubeplay.errors import BadInput, BundleError
from kubeplay.osrepo.apt_check import AptLine, IsolatedAptRoot

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bootstrap_fixture import NEEDS_REGISTRY_AND_NGINX, free_ports, make_context
from tests.conftest import run_kubeplay
from tests.served_fixture import digests, make_delta, make_version

pytestmark = [
    pytest.mark.integration,
    NEEDS_REGISTRY_AND_NGINX,
    pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg (signs the served repos)"),
]
DOMAIN = "kube.registry.local"
SERVING = tuple(s for s in STEPS if s.name in ("serve", "certs", "registry", "nginx", "services", "health"))


class Node:
    """The deploy node's serving half on loopback, and a client that fetches as a node does."""

    def __init__(self, tmp_path: Path, first: Path) -> None:
        self.ctx = make_context(tmp_path, first, ports=tuple(free_ports(3)), domain=DOMAIN)  # type: ignore[arg-type]
        self.paths = self.ctx.paths  # type: ignore[attr-defined]
        run_install(self.ctx, steps=SERVING)  # type: ignore[arg-type]
        cfg = self.ctx.cfg  # type: ignore[attr-defined]
        self.files = f"http://127.0.0.1:{cfg.nginx_http_port}"
        self.registry = f"https://127.0.0.1:{cfg.registry_https_port}"
        tls = ssl.create_default_context(cafile=str(self.paths.ca_cert))
        self.http = httpx.Client(verify=tls, timeout=10, trust_env=False)

    def get(self, url: str, **headers: str) -> httpx.Response:
        ext = {"sni_hostname": DOMAIN} if url.startswith("https") else {}
        return self.http.get(url, headers=headers, extensions=ext)

    def check_version(self, bundle: Path) -> list[str]:
        """Every file, image manifest and blob of `bundle` as a node fetches them; return what failed."""
        import json

        manifest = json.loads((bundle / "kubeplay.json").read_text())
        bad = []
        for f in manifest["files"]:
            r = self.get(f"{self.files}/{f['path']}")
            if r.status_code != 200 or __import__("hashlib").sha256(r.content).hexdigest() != f["sha256"]:
                bad.append(f"{f['path']}: {r.status_code}")
        for img in manifest["images"]:
            r = self.get(f"{self.registry}/v2/{img['repository']}/manifests/{img['tag']}", Accept=MANIFEST_ACCEPT)
            if r.status_code != 200 or r.headers.get("docker-content-digest") != img["digest"]:
                bad.append(f"{img['repository']}:{img['tag']}: {r.status_code}")
                continue
            body = r.json()
            for d in [body["config"], *body["layers"]]:
                b = self.get(f"{self.registry}/v2/{img['repository']}/blobs/{d['digest']}")
                if (
                    b.status_code != 200
                    or "sha256:" + __import__("hashlib").sha256(b.content).hexdigest() != d["digest"]
                ):
                    bad.append(f"{img['repository']}@{d['digest'][:19]}: {b.status_code}")
        return bad

    def apt(self, root: Path) -> IsolatedAptRoot:
        """An apt root whose one source is the served repo, trusted by the served key."""
        key = self.paths.served / "repos/kubeplay-archive-keyring.gpg"
        line = AptLine(f"{self.files}/repos/apt/debian/bookworm", "bookworm", "main", key)
        apt = IsolatedAptRoot(root, "amd64", [line], ["Package: base-files\nVersion: 12\nArchitecture: amd64"])
        apt.update()
        return apt

    def close(self) -> None:
        self.http.close()
        foreground().stop()


@pytest.fixture
def two_versions(tmp_path: Path):  # type: ignore[no-untyped-def]
    old = make_version(tmp_path, "1.35.3", debs={"kube-tools": "1.35.3", "common-tool": "1.0"})
    new = make_version(tmp_path, "1.35.4", debs={"kube-tools": "1.35.4", "common-tool": "1.0"})
    node = Node(tmp_path, old)
    try:
        yield node, old, new
    finally:
        node.close()


def _available(apt: IsolatedAptRoot, name: str) -> list[str]:
    proc = subprocess.run(
        ["apt-cache", *apt.options(), "madison", name], capture_output=True, text=True, timeout=60, check=True
    )
    return sorted(line.split("|")[1].strip() for line in proc.stdout.splitlines() if "|" in line)


def test_a_second_version_is_added_while_the_first_is_fetched(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, old, new = two_versions
    assert node.check_version(old) == []
    key_before = (node.paths.served / "repos/kubeplay-archive-keyring.gpg").read_bytes()
    failures: list[str] = []
    rounds = 0
    stop = threading.Event()

    def fetch_old() -> None:
        nonlocal rounds
        while not stop.is_set() and rounds < 500:
            failures.extend(node.check_version(old))
            rounds += 1

    fetcher = threading.Thread(target=fetch_old)
    fetcher.start()
    try:
        done = add_bundle(new, node.paths)
    finally:
        stop.set()
        fetcher.join(timeout=60)
    assert failures == [] and rounds >= 1
    assert done.kube_version == "1.35.4" and done.added > 0
    # Both versions served in full; shared layers and common files stored once (the same inode).
    assert node.check_version(old) == [] and node.check_version(new) == []
    assert [v.kube_version for v in served_versions(node.paths)] == ["1.35.3", "1.35.4"]
    common = node.paths.served / "files/example.org/common.txt"
    assert common.stat().st_nlink >= 2
    # The union repo verifies with the key nodes already trust, and offers both versions' packages.
    assert (node.paths.served / "repos/kubeplay-archive-keyring.gpg").read_bytes() == key_before
    apt = node.apt(tmp_path / "apt")
    assert _available(apt, "kube-tools") == ["1.35.3", "1.35.4"]
    assert _available(apt, "common-tool") == ["1.0"]
    apt.run("download", "kube-tools=1.35.3")
    # A re-run adds nothing.
    assert add_bundle(new, node.paths).already


def test_a_delta_is_completed_from_what_is_served(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, old, new = two_versions
    base = served_inventory(node.paths)
    delta = make_delta(new, set(base.digests()), base.identities, tmp_path / "delta")
    carried = set(digests(delta))
    assert "files/example.org/common.txt" not in carried  # left out: served already
    assert sum(1 for r in carried if "/blobs/" in r) < sum(1 for r in digests(new) if "/blobs/" in r)
    add_bundle(delta, node.paths)
    assert node.check_version(old) == [] and node.check_version(new) == []
    (v_new,) = [v for v in served_versions(node.paths) if v.kube_version == "1.35.4"]
    assert v_new.identity == identity_of((new / "kubeplay.json").read_bytes())
    assert v_new.delta_of == tuple(base.identities)
    # base + delta = the full bundle, digest for digest
    assert (v_new.sums_path).read_text() == (new / "SHA256SUMS").read_text()
    assert (v_new.dir / "kubespray/VERSION").read_text() == "for 1.35.4\n"
    assert _available(node.apt(tmp_path / "apt"), "kube-tools") == ["1.35.3", "1.35.4"]


def test_a_delta_for_another_base_is_refused_before_anything_changes(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, _old, new = two_versions
    other = "ab" * 32
    delta = make_delta(new, set(), [other], tmp_path / "delta")
    before = sorted(p for p in node.paths.served.rglob("*"))
    with pytest.raises(BadInput) as info:
        plan_merge(delta, node.paths)
    served = served_versions(node.paths)[0].identity
    assert f"built against ? ({other[:12]})" in str(info.value) and served[:12] in str(info.value)
    assert sorted(p for p in node.paths.served.rglob("*")) == before
    # Through the CLI: preflight refuses it, exit 2, nothing written.
    result = run_kubeplay(
        "install", "--bundle", str(delta), "-c", str(tmp_path / "config.yaml"), "--state-dir", str(node.paths.state),
        "--no-systemd",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "a delta for another base" in result.stderr and "Traceback" not in result.stderr


def test_a_tampered_delta_is_refused_by_name_and_nothing_is_merged(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, _old, new = two_versions
    base = served_inventory(node.paths)
    delta = make_delta(new, set(base.digests()), base.identities, tmp_path / "delta")
    blob = next(rel for rel in sorted(digests(delta)) if "/blobs/" in rel)
    data = bytearray((delta / blob).read_bytes())
    data[10] ^= 0xFF
    (delta / blob).write_bytes(bytes(data))
    files_before = sorted(p.relative_to(node.paths.served) for p in node.paths.served.rglob("*") if p.is_file())
    with pytest.raises(BundleError) as info:
        add_bundle(delta, node.paths)
    assert blob.split("/")[-2] in str(info.value) and "does not match" in str(info.value)
    files_after = sorted(p.relative_to(node.paths.served) for p in node.paths.served.rglob("*") if p.is_file())
    assert files_after == [f for f in files_before if not str(f).startswith(".staging")]
    assert [v.kube_version for v in served_versions(node.paths)] == ["1.35.3"]
    # A missing file is refused too, naming it.
    (delta / blob).unlink()
    with pytest.raises(BadInput) as missing:
        plan_merge(delta, node.paths)
    assert blob in str(missing.value)


_MERGE = """
import sys
from pathlib import Path
from kubeplay.bootstrap.merge import add_bundle
from kubeplay.bootstrap.paths import HostPaths
add_bundle(Path(sys.argv[1]), HostPaths(root=Path(sys.argv[2])))
"""


def test_kill_9_during_a_delta_merge_then_again_completes_and_the_old_version_is_always_served(
    tmp_path: Path,
) -> None:
    old = make_version(tmp_path, "1.35.3")
    # Many files, so a merge takes long enough to be killed in the middle; installed as a delta.
    full = make_version(tmp_path, "1.35.4", files=3, extra_files=1500)
    node = Node(tmp_path, old)
    base = served_inventory(node.paths)
    new = make_delta(full, set(base.digests()), base.identities, tmp_path / "delta")
    failures: list[str] = []
    stop = threading.Event()
    fetcher = threading.Thread(
        target=lambda: [failures.extend(node.check_version(old)) for _ in iter(stop.is_set, True)]
    )
    fetcher.start()
    killed_at = []
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        for delay in (0.3, 0.6, 0.9, 1.2):
            proc = subprocess.Popen([sys.executable, "-c", _MERGE, str(new), str(node.paths.root)], env=env)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_at.append(delay)
            proc.wait(timeout=60)
            failures.extend(node.check_version(old))
        done = subprocess.run(
            [sys.executable, "-c", _MERGE, str(new), str(node.paths.root)], env=env, timeout=300, check=False
        )
        assert done.returncode == 0
        assert node.check_version(full) == []
    finally:
        stop.set()
        fetcher.join(timeout=60)
        node.close()
    assert killed_at, "the merge finished before any kill: make the bundle bigger"
    assert failures == []
    assert [v.kube_version for v in served_versions(node.paths)] == ["1.35.3", "1.35.4"]
    assert not (node.paths.served / ".staging").exists()


def test_prune_keeps_the_named_version_and_removes_what_only_the_other_used(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, old, new = two_versions
    add_bundle(new, node.paths)
    dry = prune(node.paths, ["1.35.4"], dry_run=True)
    assert dry.removed == ["1.35.3"] and dry.files > 0
    assert [v.kube_version for v in served_versions(node.paths)] == ["1.35.3", "1.35.4"]
    result = prune(node.paths, ["v1.35.4"])
    assert result.removed == ["1.35.3"] and result.kept == ["1.35.4"]
    assert node.check_version(new) == []
    assert node.check_version(old) != []  # its own files and tags are gone
    assert (node.paths.served / "files/example.org/common.txt").is_file()  # shared: kept
    apt = node.apt(tmp_path / "apt")
    assert _available(apt, "kube-tools") == ["1.35.4"]
    assert not list(node.paths.served.glob("repos/apt/debian/bookworm/pool/main/k/kube-tools/*1.35.3*"))
    with pytest.raises(BadInput) as info:
        prune(node.paths, ["1.34.0"])
    assert "not served" in str(info.value) and "1.35.4" in str(info.value)


def test_not_enough_space_is_refused_before_anything_is_written(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kubeplay.bootstrap.merge import SPACE_MARGIN, check_space

    node, _old, new = two_versions
    plan = plan_merge(new, node.paths)
    free = shutil.disk_usage(node.paths.served).free
    # The served file system as seen from a bundle on another device: everything is copied.
    import kubeplay.bootstrap.merge as merge

    orig = merge._same_device
    merge._same_device = lambda a, b: False  # type: ignore[assignment]
    orig_usage = shutil.disk_usage
    try:
        shutil.disk_usage = lambda p: orig_usage(p)._replace(free=plan.copy_bytes + SPACE_MARGIN - 1)  # type: ignore[assignment]
        with pytest.raises(BadInput) as info:
            check_space(plan, node.paths.served)
    finally:
        shutil.disk_usage = orig_usage  # type: ignore[assignment]
        merge._same_device = orig  # type: ignore[assignment]
    assert str(node.paths.served) in str(info.value) and "needs" in str(info.value) and free > 0


def test_status_lists_versions_and_writes_the_inventory(two_versions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node, old, new = two_versions
    add_bundle(new, node.paths)
    out = tmp_path / "inventory.json"
    result = run_kubeplay("status", "--inventory", "-o", str(out), "--state-dir", str(node.paths.state))
    assert result.returncode == 0, result.stderr
    from kubeplay.bundle.inventory import read_inventory

    inv = read_inventory(out)
    assert [b.kube_version for b in inv.bundles] == ["1.35.3", "1.35.4"]
    assert set(digests(old).values()) <= set(inv.digests()) and set(digests(new).values()) <= set(inv.digests())
    assert {(p.name, p.version) for p in inv.packages} >= {("kube-tools", "1.35.3"), ("kube-tools", "1.35.4")}
    assert {i.tag for i in inv.images} == {"v1.35.3", "v1.35.4"}
    assert out.stat().st_size < 200_000  # digests, not content
    listing = run_kubeplay("status", "--no-probe", "--json", "--state-dir", str(node.paths.state))
    import json

    assert [v["kube_version"] for v in json.loads(listing.stdout)["versions"]] == ["1.35.3", "1.35.4"]
