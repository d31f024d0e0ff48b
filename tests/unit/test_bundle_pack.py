"""`kubeplay pack`: archive contents, determinism, split parts, sidecars, refusing a bundle that fails its sums."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.pack import archive_stem, pack_checked_bundle
from kubeplay.bundle.parts import PartsManifest, parse_size
from kubeplay.errors import BadInput, BundleError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import KUBEADM, STEM, flip_byte, make_bundle, tree_digests


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def test_pack_names_archive_from_manifest_and_writes_sha256sum_sidecar(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = pack_checked_bundle(bundle, out)
    assert result.archive == out / f"{STEM}.tar.zst"
    assert result.archive.is_file()
    check = subprocess.run(
        ["sha256sum", "-c", result.sha256_file.name], check=False, cwd=out, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{STEM}.tar.zst", f"{STEM}.tar.zst.sha256"]


def test_archive_is_readable_by_gnu_tar_with_manifest_first(bundle: Path, tmp_path: Path) -> None:
    result = pack_checked_bundle(bundle, tmp_path / "out")
    listing = subprocess.run(
        ["tar", "--zstd", "-tf", str(result.archive)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing[:3] == [f"{STEM}/", f"{STEM}/kubeplay.json", f"{STEM}/SHA256SUMS"]
    assert f"{STEM}/{KUBEADM}" in listing
    target = tmp_path / "gnu"
    target.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(result.archive), "-C", str(target)], check=True)
    assert tree_digests(target / STEM) == tree_digests(bundle)
    assert (target / STEM / KUBEADM).stat().st_mode & 0o111


def test_round_trip_through_safe_extract_gives_identical_tree(bundle: Path, tmp_path: Path) -> None:
    result = pack_checked_bundle(bundle, tmp_path / "out")
    extracted = extract_bundle(result.archive, tmp_path / "dest")
    assert extracted.root == tmp_path / "dest" / STEM
    assert tree_digests(extracted.root) == tree_digests(bundle)
    assert extracted.report.ok
    assert [p.name for p in (tmp_path / "dest").iterdir()] == [STEM]  # no staging directory left


def test_same_bundle_packs_to_the_same_bytes(bundle: Path, tmp_path: Path) -> None:
    first = pack_checked_bundle(bundle, tmp_path / "a")
    second = pack_checked_bundle(bundle, tmp_path / "b", split_size=1 << 20)
    assert first.sha256 == second.sha256


def test_split_parts_join_into_the_archive_and_match_their_manifest(bundle: Path, tmp_path: Path) -> None:
    whole = pack_checked_bundle(bundle, tmp_path / "whole")
    out = tmp_path / "split"
    split = 128 << 10
    result = pack_checked_bundle(bundle, out, split_size=split)
    assert result.parts_manifest == out / f"{STEM}.parts.json"
    manifest = PartsManifest.model_validate_json(result.parts_manifest.read_text())
    assert [p.name for p in result.parts] == [f"{STEM}.tar.zst.part{i:03d}" for i in range(len(result.parts))]
    assert [p.name for p in manifest.parts] == [p.name for p in result.parts]
    assert len(result.parts) > 1
    assert all(p.stat().st_size <= split for p in result.parts)
    joined = b"".join(p.read_bytes() for p in result.parts)
    assert joined == whole.archive.read_bytes()
    assert manifest.sha256 == whole.sha256 == result.sha256
    assert not (out / f"{STEM}.tar.zst").exists()
    # the shell recipe an operator uses: cat the parts (the glob does not catch the manifest), check, untar
    joined_check = subprocess.run(
        ["sh", "-c", f"cat {STEM}.tar.zst.part* | sha256sum"], cwd=out, capture_output=True, text=True, check=True
    )
    assert joined_check.stdout.split()[0] == whole.sha256
    parts_check = subprocess.run(
        ["sha256sum", "-c", f"{STEM}.parts.sha256"], cwd=out, capture_output=True, text=True, check=False
    )
    assert parts_check.returncode == 0, parts_check.stdout + parts_check.stderr
    assert parts_check.stdout.count(": OK") == len(result.parts)


def test_repacking_with_fewer_parts_removes_stale_parts(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    many = pack_checked_bundle(bundle, out, split_size=128 << 10)
    fewer = pack_checked_bundle(bundle, out, split_size=4 << 20)
    assert len(fewer.parts) < len(many.parts)
    assert sorted(out.glob(f"{STEM}.tar.zst.part*")) == fewer.parts


def test_build_state_and_unfinished_downloads_stay_out(bundle: Path, tmp_path: Path) -> None:
    (bundle / ".kubeplay-build").mkdir(exist_ok=True)
    (bundle / ".kubeplay-build/ledger.json").write_text("{}")
    (bundle / "files/half.bin.part").write_bytes(b"partial")
    result = pack_checked_bundle(bundle, tmp_path / "out")
    listing = subprocess.run(
        ["tar", "--zstd", "-tf", str(result.archive)], check=True, capture_output=True, text=True
    ).stdout
    assert ".kubeplay-build" not in listing
    assert "half.bin.part" not in listing


@pytest.mark.parametrize("victim", [KUBEADM, "kubespray/README.md", "kubeplay.json"])
def test_pack_refuses_a_bundle_that_fails_its_sums_and_leaves_no_archive(
    bundle: Path, tmp_path: Path, victim: str
) -> None:
    flip_byte(bundle / victim)
    out = tmp_path / "out"
    with pytest.raises(BundleError) as err:
        pack_checked_bundle(bundle, out)
    assert victim in str(err.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_pack_refuses_missing_extra_and_symlinked_files(bundle: Path, tmp_path: Path) -> None:
    (bundle / "kubespray/README.md").unlink()
    (bundle / "stray.txt").write_text("not in the sums")
    (bundle / "files/link").symlink_to("../kubeplay.json")
    with pytest.raises(BundleError) as err:
        pack_checked_bundle(bundle, tmp_path / "out")
    message = str(err.value)
    assert "missing: kubespray/README.md" in message
    assert "extra: stray.txt" in message
    assert "files/link (symlink" in message


def test_pack_bad_input(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        pack_checked_bundle(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(BadInput, match="inside the bundle"):
        pack_checked_bundle(bundle, bundle / "out")
    assert not (bundle / "out").exists()
    not_bundle = tmp_path / "plain"
    not_bundle.mkdir()
    with pytest.raises(BadInput, match="not a finished kubeplay bundle"):
        pack_checked_bundle(not_bundle, tmp_path / "out")
    (bundle / "SHA256SUMS").unlink()
    with pytest.raises(BadInput, match="no SHA256SUMS"):
        pack_checked_bundle(bundle, tmp_path / "out")


def test_hardlinked_files_are_carried_once(bundle: Path, tmp_path: Path) -> None:
    copy = bundle / "files/kubeadm-again"
    copy.hardlink_to(bundle / KUBEADM)
    subprocess.run(["sha256sum", "--version"], check=True, capture_output=True)
    from kubeplay.bundle.manifest import write_sha256sums

    write_sha256sums(bundle, use_cache=False)
    single = pack_checked_bundle(bundle, tmp_path / "out")
    copy.unlink()
    shutil.copyfile(bundle / KUBEADM, copy)
    doubled = pack_checked_bundle(bundle, tmp_path / "out2")
    assert single.content_size < doubled.content_size
    extracted = extract_bundle(single.archive, tmp_path / "dest")
    assert (extracted.root / "files/kubeadm-again").read_bytes() == (bundle / KUBEADM).read_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 << 30),
        ("4GiB", 4 << 30),
        ("4GB", 4_000_000_000),
        ("700M", 700 << 20),
        ("700m", 700 << 20),
        ("2048K", 2 << 20),
        ("1T", 1 << 40),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "four", "4X", "-1G", "10K", "4.5G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(BadInput):
        parse_size(text)


def test_archive_stem() -> None:
    assert archive_stem("v1.33.4", ["amd64", "arm64"]) == "kubeplay-1.33.4-amd64-arm64"


def test_parts_manifest_is_small_json(bundle: Path, tmp_path: Path) -> None:
    result = pack_checked_bundle(bundle, tmp_path / "out", split_size=1 << 20)
    assert result.parts_manifest is not None
    data = json.loads(result.parts_manifest.read_text())
    assert set(data) == {"format", "archive", "size", "sha256", "parts"}
    assert data["archive"] == f"{STEM}.tar.zst"
