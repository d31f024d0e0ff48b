"""`kubeplay plan --sizes` against the simulator: every file's HEAD and every image's manifests, before
anything is downloaded; the total it prints is what the build then stores, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubeplay.bundle.manifest import read_manifest
from kubeplay.catalog.examples import example_tree_path
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.release import serve_release

pytestmark = pytest.mark.integration


def kubeplay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, timeout=600, env=env, check=False
    )


def test_plan_sizes_is_what_the_build_stores(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    served = serve_release(upstream, example_tree_path(), arches=("amd64", "arm64"), cache_dir=tmp_path / "c")
    # the user's own: a two-arch image sharing its base layer with kubespray's, one amd64-only, one file
    upstream.push_image("ghcr.io/kp-sizes/app:1.0", ["amd64", "arm64"], variant_arm64=True)
    upstream.push_image("ghcr.io/kp-sizes/tool:2", ["amd64"], layer_kib=32)
    data = b"a file of the workloads\n" * 4000
    url = "https://downloads.example.org/kp-sizes/data.bin"
    sha = upstream.add_file(url, data)
    spec = {
        "kubespray": {"version": served.version, "source": str(served.archive.path), "sha256": served.archive.sha256},
        "arches": ["amd64", "arm64"],
        "mirrors": upstream.mirrors(),
        "credentials_file": str(upstream.credentials_file(tmp_path / "credentials.yaml")),
        "images": ["ghcr.io/kp-sizes/app:1.0", {"ref": "ghcr.io/kp-sizes/tool:2", "arches": ["amd64"]}],
        "files": [{"url": url, "sha256": sha}],
    }
    bundle_yaml = tmp_path / "bundle.yaml"
    bundle_yaml.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250"}

    sized = kubeplay("plan", str(bundle_yaml), "--sizes", "--json", env=env)
    assert sized.returncode == 0, sized.stderr
    sizes = json.loads(sized.stdout)["sizes"]
    assert sizes["unknown"] == []
    assert sizes["by_path"]["files/downloads.example.org/kp-sizes/data.bin"] == len(data)
    table = kubeplay("plan", str(bundle_yaml), "--sizes", env=env)
    assert table.returncode == 0, table.stderr
    size_line = next(line for line in table.stderr.splitlines() if line.startswith("size: "))
    assert "distinct blobs (per arch: amd64 " in size_line
    tool_line = next(line for line in table.stderr.splitlines() if "ghcr.io/kp-sizes/tool:2" in line)
    assert tool_line.split()[:2] == ["user", "image"] and "KiB" in tool_line

    out = tmp_path / "bundle"
    built = kubeplay("build", str(bundle_yaml), "-o", str(out), "--no-wheels", env=env)
    assert built.returncode == 0, built.stderr
    totals = read_manifest(out).totals
    assert sizes["files"] == totals.files_size
    assert sizes["images"] == totals.blobs_size
    assert sizes["blobs"] <= totals.blobs  # the store also holds each manifest as a blob
    assert sizes["total"] == totals.files_size + totals.blobs_size
    assert hashlib.sha256((out / "files/downloads.example.org/kp-sizes/data.bin").read_bytes()).hexdigest() == sha


def test_plan_sizes_names_what_upstream_cannot_size(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    served = serve_release(upstream, example_tree_path(), arches=("amd64",), cache_dir=tmp_path / "c")
    spec = {
        "kubespray": {"version": served.version, "source": str(served.archive.path), "sha256": served.archive.sha256},
        "arches": ["amd64"],
        "mirrors": upstream.mirrors(),
        "credentials_file": str(upstream.credentials_file(tmp_path / "credentials.yaml")),
        "images": ["ghcr.io/kp-sizes/absent:9"],
        "files": [{"url": "https://downloads.example.org/kp-sizes/absent.bin", "sha256": "00" * 32}],
    }
    bundle_yaml = tmp_path / "bundle.yaml"
    bundle_yaml.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250"}
    result = kubeplay("plan", str(bundle_yaml), "--sizes", env=env)
    assert result.returncode == 0, result.stderr
    assert "ghcr.io/kp-sizes/absent:9 (bundle.yaml images[0]): size unknown: manifest 9 not found" in result.stderr
    assert "absent.bin (bundle.yaml files[0]): size unknown: HTTP 404" in result.stderr
    assert "; 2 not sized" in result.stderr


def test_plan_signatures_says_which_images_upstream_signed_and_how(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    served = serve_release(upstream, example_tree_path(), arches=("amd64", "arm64"), cache_dir=tmp_path / "c")
    signed = upstream.push_image("ghcr.io/kp-signed/app:1.0", ["amd64", "arm64", "ppc64le"])
    upstream.publish_signatures(signed)  # the index: .sig/.att/.sbom tags and a referrer
    per_platform = upstream.push_image("ghcr.io/kp-signed/agent:2", ["amd64", "arm64"])
    upstream.publish_signatures(per_platform, [per_platform.manifests["linux/arm64"]])
    spec = {
        "kubespray": {"version": served.version, "source": str(served.archive.path), "sha256": served.archive.sha256},
        "arches": ["amd64", "arm64"],
        "mirrors": upstream.mirrors(),
        "credentials_file": str(upstream.credentials_file(tmp_path / "credentials.yaml")),
        "images": ["ghcr.io/kp-signed/app:1.0", "ghcr.io/kp-signed/agent:2", "ghcr.io/kp-signed/absent:9"],
    }
    bundle_yaml = tmp_path / "bundle.yaml"
    bundle_yaml.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "250"}

    listed = kubeplay("plan", str(bundle_yaml), "--signatures", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)["signatures"]
    app = found["by_image"]["ghcr.io/kp-signed/app:1.0"]
    assert [(s["what"], s["digest"], s["kinds"]) for s in app] == [
        ("index", signed.digest, ["sig", "att", "sbom", "referrers"])
    ]
    agent = found["by_image"]["ghcr.io/kp-signed/agent:2"]
    assert [(s["what"], s["kinds"]) for s in agent] == [("linux/arm64", ["sig", "att", "sbom", "referrers"])]
    assert found["signed"] == 2
    assert [u["what"] for u in found["unknown"]] == ["ghcr.io/kp-signed/absent:9"]
    assert all(not s for name, s in found["by_image"].items() if "kp-signed" not in name)  # kubespray's: none

    table = kubeplay("plan", str(bundle_yaml), "--signatures", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stderr.splitlines()
    app_line = next(line for line in lines if line.endswith("ghcr.io/kp-signed/app:1.0"))
    assert "sig att sbom referrers" in app_line
    assert "signed: ghcr.io/kp-signed/agent:2: linux/arm64: sig att sbom referrers" in lines
    total = next(line for line in lines if line.startswith("signatures: "))
    assert total.startswith("signatures: 2 of ") and "OCI referrers: 2); 1 not checked" in total

    # what plan names is what the build keeps beside the image
    spec["images"] = spec["images"][:2]
    bundle_yaml.write_text(yaml.safe_dump(spec))
    out = tmp_path / "bundle"
    built = kubeplay("build", str(bundle_yaml), "-o", str(out), "--no-wheels", env=env)
    assert built.returncode == 0, built.stderr
    kept = {r.upstream: r.signatures for r in read_manifest(out).images}
    for upstream_ref, subjects in found["by_image"].items():
        assert kept[upstream_ref] == sorted(t for s in subjects for t in s["tags"]), upstream_ref
