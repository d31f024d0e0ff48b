"""`kubeplay verify`: a directory, an archive or split parts; one flipped byte anywhere is named; exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubeplay.bundle.manifest import write_sha256sums
from kubeplay.bundle.pack import pack_bundle, pack_checked_bundle
from kubeplay.bundle.verify import verify_bundle
from kubeplay.errors import BadInput, BundleError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import BLOBS, KUBEADM, STEM, flip_byte, make_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle")


def _blob_path(bundle: Path) -> str:
    blob = next(p for p in (bundle / BLOBS).rglob("data") if p.stat().st_size > 100_000)
    return blob.relative_to(bundle).as_posix()


def _kubeplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubeplay", *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )


def test_intact_directory_archive_and_parts_verify(bundle: Path, tmp_path: Path) -> None:
    assert verify_bundle(bundle).ok
    archive = pack_checked_bundle(bundle, tmp_path / "one").archive
    result = verify_bundle(archive)
    assert result.ok, result.report.lines()
    assert result.kind == "archive"
    assert result.archive_sha256 is not None
    split = pack_checked_bundle(bundle, tmp_path / "split", split_size=128 << 10)
    assert split.parts_manifest is not None
    for entry in (split.parts_manifest, split.parts[0], split.archive):
        parts_result = verify_bundle(entry)
        assert parts_result.ok
        assert parts_result.kind == "split archive"


@pytest.mark.parametrize("victim", [KUBEADM, "kubespray/README.md", "config-sample.yaml", "blob"])
def test_one_flipped_byte_in_a_directory_is_named(bundle: Path, victim: str) -> None:
    path = _blob_path(bundle) if victim == "blob" else victim
    flip_byte(bundle / path)
    result = verify_bundle(bundle)
    assert not result.ok
    assert any(line.startswith(f"changed: {path} ") for line in result.report.lines())


def test_tampered_manifest_is_named(bundle: Path) -> None:
    manifest = bundle / "kubeplay.json"
    data = json.loads(manifest.read_text())
    data["files"][0]["sha256"] = "0" * 64  # a consistent-looking lie, valid JSON
    manifest.write_text(json.dumps(data))
    result = verify_bundle(bundle)
    assert "changed: kubeplay.json" in "\n".join(result.report.lines())
    assert any(KUBEADM in p and "kubeplay.json" in p for p in result.report.problems)


def test_resummed_tamper_is_still_caught_by_manifest_and_blob_names(bundle: Path) -> None:
    # An attacker who rewrites SHA256SUMS after changing files is caught by kubeplay.json and blob names.
    flip_byte(bundle / KUBEADM)
    blob = _blob_path(bundle)
    flip_byte(bundle / blob)
    write_sha256sums(bundle, use_cache=False)
    report = verify_bundle(bundle).report
    text = "\n".join(report.lines())
    assert f"{KUBEADM}: sha256 differs from kubeplay.json" in text
    assert f"changed: {blob} (registry blob content" in text


def test_missing_and_extra_files_are_listed_by_path(bundle: Path) -> None:
    (bundle / "kubespray/README.md").unlink()
    (bundle / "files/surprise.bin").write_bytes(b"\0")
    report = verify_bundle(bundle).report
    assert report.missing == ["kubespray/README.md"]
    assert report.extra == ["files/surprise.bin"]
    assert report.changed == []


def test_image_manifest_missing_from_registry_is_reported(bundle: Path) -> None:
    manifest = json.loads((bundle / "kubeplay.json").read_text())
    digest = manifest["images"][0]["digest"].removeprefix("sha256:")
    blob_dir = bundle / BLOBS / digest[:2] / digest
    (blob_dir / "data").unlink()
    blob_dir.rmdir()
    write_sha256sums(bundle, use_cache=False)
    report = verify_bundle(bundle).report
    assert any("image pause" in p and digest in p for p in report.problems)


@pytest.mark.parametrize("victim", [KUBEADM, "kubespray/README.md", "kubeplay.json"])
def test_archive_of_tampered_bundle_names_the_file_without_extracting(
    bundle: Path, tmp_path: Path, victim: str
) -> None:
    if victim == "kubeplay.json":  # still valid JSON, so only its digest can tell
        text = (bundle / victim).read_text()
        (bundle / victim).write_text(text.replace("kubeadm_download_url", "kubeadm_download_urX"))
    else:
        flip_byte(bundle / victim)
    archive = pack_bundle(bundle, tmp_path / "out", STEM).archive
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = verify_bundle(archive)
    assert not result.ok
    assert any(line.startswith(f"changed: {victim} (sha256 ") for line in result.report.lines())
    assert [c.split(" (")[0] for c in result.report.changed] == [victim]  # nothing else flagged
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # verify wrote nothing


def test_archive_with_unparseable_manifest_fails_naming_it(bundle: Path, tmp_path: Path) -> None:
    flip_byte(bundle / "kubeplay.json", 0)  # "{" becomes "z": no longer JSON
    archive = pack_bundle(bundle, tmp_path / "out", STEM).archive
    with pytest.raises(BundleError) as err:
        verify_bundle(archive)
    assert err.value.message.startswith(f"{archive.name}:kubeplay.json: invalid manifest")


def test_tampered_sha256sums_names_the_entry_and_fails_the_printed_digest(bundle: Path, tmp_path: Path) -> None:
    sums = bundle / "SHA256SUMS"
    good = verify_bundle(bundle).sums_sha256
    assert good is not None
    first_path = sums.read_text().splitlines()[0].split("  ", 1)[1]
    flip_byte(sums, 0)  # the first digest's first hex digit
    archive = pack_bundle(bundle, tmp_path / "out", STEM).archive
    for target in (bundle, archive):
        report = verify_bundle(target, expected_sums_sha256=good).report
        text = "\n".join(report.lines())
        assert f"changed: {first_path} " in text
        assert "SHA256SUMS: sha256" in text and good in text


def test_flipped_byte_in_compressed_archive_names_the_archive(bundle: Path, tmp_path: Path) -> None:
    archive = pack_checked_bundle(bundle, tmp_path / "out").archive
    flip_byte(archive)
    with pytest.raises(BundleError) as err:
        verify_bundle(archive)
    assert archive.name in err.value.message


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        verify_bundle(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="not a kubeplay bundle"):
        verify_bundle(tmp_path / "empty")
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(BadInput):
        verify_bundle(junk)


def test_cli_exit_codes_and_messages(bundle: Path, tmp_path: Path) -> None:
    ok = _kubeplay("verify", str(bundle))
    assert ok.returncode == 0, ok.stderr
    assert "all digests match" in ok.stderr
    flip_byte(bundle / KUBEADM)
    bad = _kubeplay("verify", str(bundle))
    assert bad.returncode == 1
    assert f"changed: {KUBEADM}" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = _kubeplay("verify", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "no such file" in missing.stderr


def test_cli_pack_then_verify_parts_then_extract(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "media"
    packed = _kubeplay("--json-events", "pack", str(bundle), "-o", str(out), "--split-size", "1M")
    assert packed.returncode == 0, packed.stderr
    events = [json.loads(line) for line in packed.stdout.splitlines()]
    assert events[-1]["event"] == "packed"
    assert (out / f"{STEM}.parts.json").is_file()
    verified = _kubeplay("verify", str(out / f"{STEM}.parts.json"))
    assert verified.returncode == 0, verified.stderr
    extracted = _kubeplay("extract", str(out / f"{STEM}.tar.zst"), "-C", str(tmp_path / "site"))
    assert extracted.returncode == 0, extracted.stderr
    assert (tmp_path / "site" / STEM / KUBEADM).read_bytes() == (bundle / KUBEADM).read_bytes()
    bad_size = _kubeplay("pack", str(bundle), "--split-size", "lots")
    assert bad_size.returncode == 2
