"""Conformance: `kubeplay build` of a real kubespray release (../shared) with the real planner, every file
and image served by the simulator, the kubespray archive fetched by URL; the bundle registry then serves
every image to skopeo for each arch. Skips when ../shared is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import require_shared

from kubeplay.bundle.manifest import read_manifest
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import load_tree
from kubeplay.config.bundle import BundleSpec
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import bundle_registry, sha256sum_check, skopeo

pytestmark = pytest.mark.integration
RELEASE = "kubespray-v2.31.0.tar.gz"


def test_real_kubespray_release_builds_and_serves(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    source = require_shared("upstream", "kubespray", RELEASE)
    base = {"kubespray": {"version": "v2.31.0", "source": str(source)}, "arches": ["amd64", "arm64"]}
    first = make_plan(BundleSpec.model_validate(base), load_tree(source, None, cache_dir=tmp_path / "cache"))
    archive = upstream.add_kubespray(source, plan_files=first.files)
    pushed, pinned = upstream.push_plan_images(first.images, ["amd64", "arm64"])
    assert not pinned
    spec = {
        "kubespray": {"version": "v2.31.0", "source": archive.url, "sha256": archive.sha256},
        "arches": ["amd64", "arm64"],
        "mirrors": upstream.mirrors(),
        "credentials_file": str(upstream.credentials_file(tmp_path / "credentials.yaml")),
    }
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "bundle"
    # The whole bundle, wheels for the deploy node included (wheels are cached across runs).
    env = {**os.environ, "KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "KUBEPLAY_WHEELS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "kubeplay", "--json-events", "build", str(tmp_path / "bundle.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert sha256sum_check(out).returncode == 0
    manifest = read_manifest(out)
    assert manifest.kubespray.sha256 == archive.sha256
    assert len(manifest.files) == len(first.files) and len(manifest.images) == len(pushed)
    assert (out / "kubespray" / "roles" / "kubespray_defaults").is_dir()
    assert os.access(out / "install.sh", os.X_OK) and (out / "config-sample.yaml").is_file()
    assert any(p.name.startswith("kubeplay-") and p.suffix == ".whl" for p in (out / "wheels").rglob("*.whl"))
    assert any(p.name.startswith("ansible_core-2.18") for p in (out / "wheels").rglob("*.whl"))
    with bundle_registry(out, upstream, tmp_path / "serve") as registry:
        for record in manifest.images:
            ref = f"docker://{registry}/{record.repository}:{record.tag}"
            for platform in record.platforms:
                raw = skopeo(
                    "inspect",
                    "--cert-dir",
                    str(upstream.cert_dir),
                    "--override-arch",
                    platform.arch,
                    ref,
                )
                assert raw.returncode == 0, f"{ref} {platform.arch}: {raw.stderr}"
                assert json.loads(raw.stdout)["Architecture"] == platform.arch
    again = subprocess.run(
        [sys.executable, "-m", "kubeplay", "--json-events", "build", str(tmp_path / "bundle.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    built = next(json.loads(line) for line in again.stdout.splitlines() if '"built"' in line)
    assert built["fetched"] == 0
