"""bundle.yaml `images:` and `files:`: what a user writes, the errors naming its location, and the plan."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.source import file_sha256
from kubeplay.cli.app import main
from kubeplay.config.bundle import load_bundle_spec
from kubeplay.errors import ConfigError

SHA = "ab" * 32


def bundle(tmp_path: Path, **extra: object) -> Path:
    data = {
        "kubespray": {"version": "v2.31.0", "source": "k.tar.gz", "sha256": "00" * 32},
        "arches": ["amd64", "arm64"],
        **extra,
    }
    path = tmp_path / "bundle.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_images_and_files_read_in_both_spellings(tmp_path: Path) -> None:
    spec = load_bundle_spec(
        bundle(
            tmp_path,
            images=[
                "nginx:1.27",
                {"ref": f"quay.io/org/agent@sha256:{'cd' * 32}", "arches": ["arm64"], "platform_policy": "warn"},
                f"localhost:5000/team/app:2.0@sha256:{'ef' * 32}",
            ],
            files=[{"url": "https://example.com/tools/t-1.0.tgz", "sha256": f"sha256:{SHA.upper()}"}],
        )
    )
    assert [(i.repo, i.tag, i.digest) for i in spec.images] == [
        ("nginx", "1.27", None),
        ("quay.io/org/agent", None, f"sha256:{'cd' * 32}"),
        ("localhost:5000/team/app", "2.0", f"sha256:{'ef' * 32}"),
    ]
    assert spec.images[1].arches == ["arm64"] and spec.images[1].platform_policy == "warn"
    assert spec.files[0].sha256 == SHA


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"images": ["quay.io/org/app"]}, "images[0].ref: 'quay.io/org/app' has neither a tag nor a digest"),
        ({"images": ["nginx:1", "Bad Name:1"]}, "images[1].ref: invalid image repository"),
        ({"images": [{"ref": "nginx:1", "arches": ["s390x"]}]}, "images[0].arches: unknown arch 's390x'"),
        ({"images": [{"ref": "nginx:1", "platform_policy": "maybe"}]}, "images[0].platform_policy:"),
        ({"images": [{"ref": "nginx:1", "tag": "2"}]}, "images[0].tag: unknown key"),
        ({"files": [{"url": "https://e.com/a"}]}, "files[0].sha256: Field required"),
        ({"files": [{"url": "https://e.com/a", "sha256": "12"}]}, "files[0].sha256: expected 64 hex digits"),
        ({"files": [{"url": "ftp://e.com/a", "sha256": SHA}]}, "files[0].url: expected an http(s) URL"),
        ({"files": [{"url": "https://e.com/../a", "sha256": SHA}]}, "files[0].url:"),
    ],
)
def test_bad_entries_are_named_by_their_bundle_yaml_path(
    tmp_path: Path, extra: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(bundle(tmp_path, **extra))
    assert expected in str(info.value)
    assert info.value.exit_code == 2


def test_an_image_arch_outside_the_bundle_is_named(tmp_path: Path) -> None:
    path = bundle(tmp_path, arches=["amd64"], images=["nginx:1", {"ref": "quay.io/a/b:1", "arches": ["arm64"]}])
    with pytest.raises(ConfigError) as info:
        load_bundle_spec(path)
    assert "images[1].arches: arm64 not among the bundle's arches (amd64)" in str(info.value)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEPLAY_CACHE_DIR", str(tmp_path / "cache"))  # what `kubeplay plan`/`init` unpack


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    tree = tmp_path / "src" / "kubespray-2.31.0"
    shutil.copytree(example_tree_path(), tree)
    path = tmp_path / "kubespray-v2.31.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return path


def run_plan(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(sys, "argv", ["kubeplay", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


def test_plan_lists_the_users_artifacts_beside_kubesprays(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bundle(
        tmp_path,
        kubespray={"version": "v2.31.0-example", "source": archive.name, "sha256": file_sha256(archive)},
        images=["ghcr.io/example/app:1.2.0", {"ref": "quay.io/example/agent:3", "arches": ["arm64"]}],
        files=[{"url": "https://downloads.example.org/tools/tool-1.0.tar.gz", "sha256": SHA}],
    )
    code, _, err = run_plan(["plan", str(path)], monkeypatch, capsys)
    assert code == 0, err
    lines = err.splitlines()
    app = next(line for line in lines if "ghcr.io/example/app:1.2.0" in line)
    assert app.split()[:2] == ["user", "image"] and "amd64,arm64" in app
    agent = next(line for line in lines if "quay.io/example/agent:3" in line)
    assert agent.split()[:2] == ["user", "image"] and "amd64" not in agent
    tool = next(line for line in lines if "https://downloads.example.org/tools/tool-1.0.tar.gz" in line)
    assert tool.split()[:3] == ["user", "file", "tool-1.0.tar.gz"]
    assert "registry.k8s.io/kube-apiserver:v1.35.2" in err  # kubespray's still there
    assert "total: 20 files (9 amd64, 9 arm64, 2 noarch), 12 images" in err

    code, out, _ = run_plan(["plan", str(path), "--json", "--arch", "amd64"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    user_images = [i for i in data["images"] if i["origin"] == "user"]
    assert [(i["upstream"], i["variable"], i["bundle_repository"]) for i in user_images] == [
        ("ghcr.io/example/app:1.2.0", "bundle.yaml images[0]", "library/ghcr.io/example/app")
    ]  # the arm64-only image is not in an amd64 plan
    user_files = [f for f in data["files"] if f["origin"] == "user"]
    assert user_files[0]["path"] == "files/downloads.example.org/tools/tool-1.0.tar.gz"
    assert user_files[0]["checksum"] == {"algorithm": "sha256", "hex": SHA}


def test_init_documents_images_and_files(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "written.yaml"
    code, _, err = run_plan(["init", "--kubespray", str(archive), "-o", str(out_file)], monkeypatch, capsys)
    assert code == 0, err
    text = out_file.read_text()
    assert "\nimages: []\n" in text and "\nfiles: []\n" in text
    # the commented examples, uncommented, are a valid bundle.yaml (digests filled in)
    uncommented = text.replace("images: []", "images:").replace("files: []", "files:").replace("charts: []", "charts:")
    uncommented = uncommented.replace("#  - ", "  - ").replace("<64 hex>", SHA)
    uncommented = "\n".join(line for line in uncommented.splitlines() if not line.startswith("#  "))
    out_file.write_text(uncommented)
    spec = load_bundle_spec(out_file)
    assert [i.ref for i in spec.images] == ["ghcr.io/example/app:1.2.0", "quay.io/example/agent@sha256:" + SHA]
    assert spec.files[0].url == "https://example.com/tools/tool-1.0.tar.gz"
    assert [(c.name, c.is_oci) for c in spec.charts] == [("podinfo", True), ("ingress-nginx", False)]
