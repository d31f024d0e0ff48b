"""`kubeplay build --sign KEY --pack` against the simulator: a signed bundle and archive that ssh-keygen and
`kubeplay verify --allowed-signers` accept, and an SBOM that validates and lists exactly what SHA256SUMS lists."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from kubeplay.bundle.manifest import SIGNATURE_NAME, SUMS_NAME, read_manifest, read_sha256sums
from kubeplay.bundle.sbom import SBOM_NAME, check_coverage
from kubeplay.bundle.trust import NAMESPACE, generate_key
from kubeplay.lab.upstream import UpstreamSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.build_fixture import (
    file_artifact,
    image_artifact,
    kubeplay_with_plan,
    kubespray_archive,
    make_plan,
    write_spec,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, cwd=REPO, timeout=300, check=False
    )


def test_signed_build_with_sbom(upstream: UpstreamSimulator, tmp_path: Path) -> None:
    upstream.push_image("registry.k8s.io/kp-trust/multi:v1", ["amd64", "arm64", "s390x"])
    kubeadm = b"kubeadm for the trust test\n" * 500
    url = "https://dl.k8s.io/release/v1.31.1/bin/linux/amd64/kubeadm-kp-trust"
    upstream.add_file(url, kubeadm)
    archive, sha = kubespray_archive(tmp_path / "src")
    spec = write_spec(tmp_path, upstream, str(archive), sha)
    plan = make_plan(
        [file_artifact(url, kubeadm, name="kubeadm")], [image_artifact("registry.k8s.io/kp-trust/multi:v1", name="m")]
    )
    key = tmp_path / "keys" / "builder"
    generate_key(key, "builder@example")
    out = tmp_path / "bundle"
    args = ("build", str(spec), "-o", str(out), "--no-wheels", "--sign", str(key), "--pack")
    proc = kubeplay_with_plan(plan, tmp_path, *args)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]

    sums = read_sha256sums(out / SUMS_NAME)
    assert SBOM_NAME in sums and SIGNATURE_NAME not in sums
    text = (out / SBOM_NAME).read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    coverage = check_coverage(out, text, sums)
    assert coverage.exact, (coverage.unlisted[:10], coverage.absent[:10])
    components = json.loads(text)["components"]
    multi = [c for c in components if c["name"] == "multi"]
    assert len(multi) == 4  # upstream's index (served), the one cut to amd64 and arm64, its two manifests
    image = read_manifest(out).images[0]
    assert image.cut_index is not None
    for digest in (image.digest, image.cut_index, *(p.digest for p in image.platforms)):
        assert any(c["purl"].startswith(f"pkg:oci/multi@{digest}?") for c in multi)

    public = (tmp_path / "keys/builder.pub").read_text().split()
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'builder@example namespaces="{NAMESPACE}" {public[0]} {public[1]}\n')
    if shutil.which("ssh-keygen"):
        command = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "builder@example", "-n", NAMESPACE]
        with (out / SUMS_NAME).open("rb") as stdin:
            checked = subprocess.run(
                [*command, "-s", str(out / SIGNATURE_NAME)],
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        assert checked.returncode == 0, checked.stderr
    packed = next(tmp_path.glob("kubeplay-*.tar.zst"))
    assert Path(f"{packed}.sha256.sig").is_file()
    verified = _kubeplay("verify", str(packed), "--allowed-signers", str(allowed))
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "signed by builder@example" in verified.stderr

    # a rebuild drops the old signature with the old SHA256SUMS; unsigned, verify refuses it
    proc = kubeplay_with_plan(plan, tmp_path, "build", str(spec), "-o", str(out), "--no-wheels")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert not (out / SIGNATURE_NAME).exists()
    rebuilt = read_sha256sums(out / SUMS_NAME)
    assert check_coverage(out, (out / SBOM_NAME).read_text(), rebuilt).exact
    refused = _kubeplay("verify", str(out), "--allowed-signers", str(allowed))
    assert refused.returncode == 2
    assert "not signed" in refused.stderr
