"""`kubeplay init`, `kubeplay plan` and `kubeplay demo` as a user runs them: output, files, exit codes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.planner import make_plan
from kubeplay.catalog.source import file_sha256, load_tree
from kubeplay.cli.app import main
from kubeplay.cli.plan import print_plan
from kubeplay.config.bundle import load_bundle_spec
from kubeplay.console import Output

EXAMPLE = example_tree_path()


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["kubeplay", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    tree = tmp_path / "src" / "kubespray-2.31.0"
    shutil.copytree(EXAMPLE, tree)
    path = tmp_path / "kubespray-v2.31.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEPLAY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "cache"


def test_init_writes_a_commented_bundle_with_the_release_defaults(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "bundle.yaml"
    code, _, err = run(
        ["init", "--kubespray", str(archive), "-o", str(out_file), "--arch", "amd64", "--arch", "arm64"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    text = out_file.read_text()
    assert "# Kubernetes version; it must be in the release's checksum tables." in text
    assert "# v2.31.0-example supports: 1.35.2, 1.35.1, 1.34.4" in text
    spec = load_bundle_spec(out_file)
    assert spec.kubespray.version == "v2.31.0-example"
    assert spec.kubespray.sha256 == file_sha256(archive)
    assert spec.kube_version == "1.35.2"
    assert spec.arches == ["amd64", "arm64"]
    assert spec.kube_network_plugin == ["calico"] and spec.container_manager == ["containerd"]
    assert spec.registry_project == "library" and spec.kubespray_vars == {} and spec.mirrors == {}
    assert "wrote" in err


def test_init_never_overwrites_without_force(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "bundle.yaml"
    out_file.write_text("mine\n")
    code, _, err = run(["init", "--kubespray", str(archive), "-o", str(out_file)], monkeypatch, capsys)
    assert code == 2 and "exists; not overwriting it" in err and "--force" in err
    assert out_file.read_text() == "mine\n"
    code, _, _ = run(["init", "--kubespray", str(archive), "-o", str(out_file), "--force"], monkeypatch, capsys)
    assert code == 0 and "kubespray:" in out_file.read_text()


def test_init_rejects_values_the_release_rejects(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["init", "--kubespray", str(archive), "-o", str(tmp_path / "b.yaml")]
    code, _, err = run([*args, "--network-plugin", "weave"], monkeypatch, capsys)
    assert code == 2 and "accepts: calico, flannel, cilium, none" in err
    code, _, err = run([*args, "--kube-version", "1.20.0"], monkeypatch, capsys)
    assert code == 2 and "supported: 1.35.2, 1.35.1, 1.34.4" in err
    assert not (tmp_path / "b.yaml").exists()


def write_bundle(tmp_path: Path, archive: Path, **extra: object) -> Path:
    data = {
        "kubespray": {"version": "v2.31.0-example", "source": archive.name, "sha256": file_sha256(archive)},
        "arches": ["amd64", "arm64"],
        **extra,
    }
    path = tmp_path / "bundle.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_prints_table_totals_offline_vars_and_summary(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path, archive)
    monkeypatch.chdir("/")  # the archive path is relative to bundle.yaml, not to the working directory
    code, out, err = run(["plan", str(bundle)], monkeypatch, capsys)
    assert code == 0, err
    assert out == ""
    assert "https://dl.k8s.io/release/v1.35.2/bin/linux/arm64/kubeadm" in err
    assert "registry.k8s.io/kube-apiserver:v1.35.2" in err
    assert "total: 19 files (9 amd64, 9 arm64, 1 noarch), 10 images for amd64, arm64" in err
    assert 'github_url: "{{ files_repo }}/github.com"' in err
    assert "planned 19 files" in err


def test_plan_json_is_the_plan_on_stdout(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path, archive, kube_network_plugin=["calico", "cilium"])
    code, out, _ = run(["plan", str(bundle), "--json", "--arch", "arm64"], monkeypatch, capsys)
    assert code == 0
    data = json.loads(out)
    assert data["arches"] == ["arm64"] and data["kube_version"] == "1.35.2"
    assert {f["arch"] for f in data["files"]} == {"arm64", "noarch"}
    assert "quay.io/cilium/cilium:v1.19.1" in {i["upstream"] for i in data["images"]}
    code, out, _ = run(["plan", str(bundle), "--json", "--all"], monkeypatch, capsys)
    assert "https://get.helm.sh/helm-v3.18.4-linux-amd64.tar.gz" in {f["url"] for f in json.loads(out)["files"]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"kube_version": "1.99.0"}, "kube_version 1.99.0 is not in kubespray v2.31.0-example's checksum tables"),
        ({"kube_network_plugin": "weave"}, "kube_network_plugin: unknown value 'weave'"),
        ({"arches": ["s390x"]}, "arches: unknown arch 's390x'; supported: amd64, arm64"),
        ({"bogus_key": 1}, "bogus_key: unknown key"),
        ({"kubespray": {"version": "v2.31.0-example", "source": "missing.tar.gz"}}, "missing.tar.gz: no such file"),
        (
            {"kubespray": {"version": "v2.31.0-example", "source": "https://example.invalid/v2.31.0.tar.gz"}},
            "needs the",
        ),
    ],
)
def test_plan_bad_input_is_one_clear_line_and_exit_2(
    extra: dict[str, object],
    message: str,
    archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(["plan", str(write_bundle(tmp_path, archive, **extra))], monkeypatch, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_plan_with_wrong_sha256_and_unknown_arch_option(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path, archive)
    code, _, err = run(["plan", str(bundle), "--arch", "riscv64"], monkeypatch, capsys)
    assert code == 2 and "unknown arch 'riscv64'; supported: amd64, arm64" in err
    bundle.write_text(bundle.read_text().replace(file_sha256(archive), "f" * 64))
    code, _, err = run(["plan", str(bundle)], monkeypatch, capsys)
    assert code == 2 and f"expected {'f' * 64}, actual {file_sha256(archive)}" in err


def test_plan_yaml_error_names_file_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text("kubespray:\n  version: [v2.31.0\n")
    code, _, err = run(["plan", str(bundle)], monkeypatch, capsys)
    assert code == 2 and f"{bundle}:3:1" in err


def test_plan_with_render_problems_prints_what_rendered_and_fails(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path, archive, kubespray_vars={"cni_version": "{{ typo_var }}"})
    code, _, err = run(["plan", str(bundle)], monkeypatch, capsys)
    assert code == 1
    assert "cni: cni_download_url:" in err and "typo_var" in err
    assert "kubeadm" in err and "template(s) did not render" in err


def test_demo_falls_back_to_the_example_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBEPLAY_SHARED", str(tmp_path / "no-shared"))
    code, _, err = run(["demo", "--plan-only"], monkeypatch, capsys)
    assert code == 0, err
    assert "built-in example tree" in err
    assert 'kube_image_repo: "192.0.2.10:5443/library/registry.k8s.io"' in err
    assert "demo planned 19 files" in err


def test_cli_errors_have_no_traceback_in_a_real_process(archive: Path, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, archive, kube_version="1.99.0")
    result = subprocess.run(
        [sys.executable, "-m", "kubeplay", "plan", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"KUBEPLAY_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "supported: 1.35.2, 1.35.1, 1.34.4" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_table_on_a_narrow_terminal_keeps_every_url_whole(archive: Path, tmp_path: Path) -> None:
    """A table cell breaks a long URL over lines instead of cutting it short with an ellipsis."""
    plan = make_plan(load_bundle_spec(write_bundle(tmp_path, archive)), load_tree(archive))
    screen = io.StringIO()
    print_plan(plan, Output(console=Console(file=screen, width=100, force_terminal=True, color_system=None)))
    cells: list[list[str]] = []
    for line in screen.getvalue().splitlines():
        if line.startswith("│"):
            parts = [part.strip() for part in line.split("│")[1:-1]]
            if parts[0]:
                cells.append(parts)
            else:  # a continuation line: each column goes on where it left off
                cells[-1] = [a + b for a, b in zip(cells[-1], parts, strict=True)]
    shown = {row[4] for row in cells}
    assert {f.url for f in plan.files} | {i.upstream for i in plan.images} == shown
    assert "…" not in screen.getvalue()


def test_plan_signatures_column_lines_and_total(archive: Path, tmp_path: Path) -> None:
    """With --signatures: SIGNED before UPSTREAM (blank for files, `no` unsigned, `?` not asked), one
    `signed:` line per signed image naming what is signed, and the total by kind."""
    from kubeplay.cli.plan import plan_lines, signature_totals
    from kubeplay.fetch.signatures import ImageSignatures, PlanSignatures, SignedSubject

    plan = make_plan(load_bundle_spec(write_bundle(tmp_path, archive)), load_tree(archive))
    first, second, *rest = plan.images
    index = SignedSubject("index", "sha256:" + "a" * 64, ("sig", "att", "referrers"), ("t1", "t2", "t3"))
    platform = SignedSubject("linux/arm64", "sha256:" + "b" * 64, ("referrers",), ("t4",))
    signatures = PlanSignatures(
        images={
            first.upstream: ImageSignatures((index,)),
            second.upstream: ImageSignatures((platform,)),
            **{i.upstream: ImageSignatures(()) for i in rest[1:]},
        },
        problems=[(rest[0].upstream, rest[0].variable, "HTTP 404")],
    )
    lines = plan_lines(plan, signatures=signatures)
    assert lines[0].split() == ["KIND", "NAME", "VERSION", "ARCH", "SIGNED", "UPSTREAM"]
    by_upstream = {line.split()[-1]: line for line in lines[1:]}
    assert "sig att referrers" in by_upstream[first.upstream]
    assert by_upstream[rest[0].upstream].split()[-2] == "?"
    assert by_upstream[rest[1].upstream].split()[-2] == "no"
    assert ImageSignatures((index, platform)).describe() == "index: sig att referrers; linux/arm64: referrers"
    assert signature_totals(signatures) == (
        f"2 of {len(plan.images)} images come with upstream signature artifacts "
        "(cosign .sig/.att/.sbom tags: 1, OCI referrers: 2); 1 not checked"
    )
    screen = io.StringIO()
    print_plan(plan, Output(console=Console(file=screen, width=250)), signatures=signatures)
    assert f"signed: {second.upstream}: linux/arm64: referrers" in screen.getvalue()
