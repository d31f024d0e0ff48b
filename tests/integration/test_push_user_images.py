"""`kubeplay push` of a bundle holding bundle.yaml `images:`: by tag and pinned by digest only, each pullable
from the target registry byte-exact, as kubespray's images are."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from kubeplay.bootstrap.health import MANIFEST_ACCEPT
from kubeplay.bundle.manifest import read_manifest
from kubeplay.lab.upstream import UpstreamSimulator
from kubeplay.lab.upstream.charts import build_chart

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import kubeplay_with_plan, kubespray_archive, make_plan, write_spec

pytestmark = pytest.mark.integration


def test_push_carries_tagged_and_digest_pinned_user_images(
    upstream: UpstreamSimulator, make_upstream: Callable[..., UpstreamSimulator], tmp_path: Path
) -> None:
    upstream.push_image("ghcr.io/kp-push/app:1.0", ["amd64", "arm64", "s390x"])
    pinned = upstream.push_image("quay.io/kp-push/agent:hidden", ["amd64", "arm64"])
    chart = build_chart("web", "1.2.0", values={"image": "ghcr.io/kp-push/app:1.0"})
    upstream.add_chart_repo("https://charts.example.org/push", [chart])
    archive, sha = kubespray_archive(tmp_path / "src")
    spec_path = write_spec(tmp_path, upstream, str(archive), sha)
    spec = yaml.safe_load(spec_path.read_text())
    spec["images"] = ["ghcr.io/kp-push/app:1.0", f"quay.io/kp-push/agent@{pinned.digest}"]
    spec["charts"] = [{"name": "web", "repo": "https://charts.example.org/push", "version": "1.2.0"}]
    spec_path.write_text(yaml.safe_dump(spec))
    bundle = tmp_path / "bundle"
    proc = kubeplay_with_plan(make_plan([], []), tmp_path, "build", str(spec_path), "-o", str(bundle), "--no-wheels")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    records = {r.variable: r for r in read_manifest(bundle).images}

    target = make_upstream(registry_auth="basic")
    host = target.registry_url.removeprefix("https://")
    env = {**os.environ, "KUBEPLAY_PUSH_USERNAME": target.username, "KUBEPLAY_PUSH_PASSWORD": target.password}
    pushed = subprocess.run(
        [sys.executable, "-m", "kubeplay", "push", str(bundle), "--registry", f"{host}/site",
         "--ca", str(target.ca_cert)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed 3 image(s)" in pushed.stderr  # two images and the chart's OCI artifact

    with httpx.Client(
        verify=target.ssl_context(), auth=(target.username, target.password), timeout=20, trust_env=False
    ) as client:

        def manifest(repo: str, reference: str) -> str:
            r = client.get(
                f"{target.registry_url}/v2/{repo}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
            )
            assert r.status_code == 200, (repo, reference, r.status_code)
            return "sha256:" + hashlib.sha256(r.content).hexdigest()

        app = records["bundle.yaml images[0]"]
        # the bundle serves upstream's index (ppc64le absent); this registry refuses that, so the tag names the
        # index cut to amd64+arm64, and push says so
        assert manifest("site/ghcr.io/kp-push/app", "1.0") == app.cut_index != app.digest
        assert "refused upstream's index for 1 image(s)" in pushed.stderr
        agent = records["bundle.yaml images[1]"]
        assert agent.tag is None and agent.digest == pinned.digest  # nothing cut: upstream's index byte-exact
        assert manifest("site/quay.io/kp-push/agent", pinned.digest) == pinned.digest
        for platform in agent.platforms:
            assert manifest("site/quay.io/kp-push/agent", platform.digest) == platform.digest
        chart_manifest = client.get(
            f"{target.registry_url}/v2/site/charts/web/manifests/1.2.0",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert chart_manifest.status_code == 200
        layer = json.loads(chart_manifest.content)["layers"][0]["digest"]
        assert client.get(f"{target.registry_url}/v2/site/charts/web/blobs/{layer}").content == chart
