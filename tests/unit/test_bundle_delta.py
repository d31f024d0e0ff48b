"""Delta bundles: the base loaders (inventory.json, bundle directory, packed bundle), what a delta carries
(only blobs and files the base lacks, an image sharing layers carries only its new ones), verify/pack/extract
of a delta, base + delta = the full bundle, and zstd patches (made, applied, tampered ones refused)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from kubeplay.assemble.delta import ALWAYS_CARRIED, similarity_key, write_delta
from kubeplay.bundle.base import load_base
from kubeplay.bundle.delta import (
    DELTA_NAME,
    apply_patch,
    full_sums_sha256,
    full_sums_text,
    make_patch,
    read_delta,
)
from kubeplay.bundle.extract import extract_bundle
from kubeplay.bundle.inventory import TOP_LEVEL_OWN, identity_of, write_inventory
from kubeplay.bundle.manifest import (
    FileRecord,
    ImageRecord,
    read_manifest,
    read_sha256sums,
    write_manifest,
    write_sha256sums,
)
from kubeplay.bundle.pack import pack_checked_bundle
from kubeplay.bundle.verify import verify_bundle
from kubeplay.console import Output
from kubeplay.errors import BadInput, BundleError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bundle_fixture import BLOBS, KUBEADM, _blob, _seeded_bytes, flip_byte, make_bundle

NEW_KUBEADM = KUBEADM.replace("v1.33.4", "v1.33.5")
QUIET = Output(quiet=True)


def _new_kubeadm(old: bytes) -> bytes:
    """A patch release of a binary: mostly the same bytes, a changed stretch, a little more at the end."""
    return old[:100_000] + _seeded_bytes("kubeadm-1.33.5", 3_000) + old[103_000:] + _seeded_bytes("tail", 4_000)


def make_next_version(base: Path, root: Path) -> dict[str, str]:
    """The next version of the bundle at `base`, at `root`: a new kubeadm path and bytes, and a second image
    whose manifest shares the first image's layer; returns the new blobs' digests by role."""
    shutil.copytree(base, root)
    old = root / KUBEADM
    new = root / NEW_KUBEADM
    new.parent.mkdir(parents=True)
    new.write_bytes(_new_kubeadm(old.read_bytes()))
    shutil.rmtree(root / "files/dl.k8s.io/release/v1.33.4")
    manifest = read_manifest(root)
    shared_layer = hashlib.sha256(_seeded_bytes("layer", 150_000)).hexdigest()
    layer = _blob(root, _seeded_bytes("coredns-layer", 120_000))
    config = _blob(root, json.dumps({"architecture": "amd64", "os": "linux", "image": "coredns"}).encode())
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": f"sha256:{config}", "size": 60, "mediaType": "application/vnd.oci.image.config"},
            "layers": [
                {"digest": f"sha256:{shared_layer}", "size": 150_000, "mediaType": "application/vnd.oci.image.layer"},
                {"digest": f"sha256:{layer}", "size": 120_000, "mediaType": "application/vnd.oci.image.layer"},
            ],
        }
    ).encode()
    image = _blob(root, body)
    tag = root / "registry/docker/registry/v2/repositories/library/coredns/_manifests/tags/1.12/current/link"
    tag.parent.mkdir(parents=True)
    tag.write_text(f"sha256:{image}")
    data = new.read_bytes()
    record = manifest.files[0]
    manifest.kube_version = "1.33.5"
    manifest.files = [
        FileRecord(
            **{
                **record.model_dump(),
                "path": NEW_KUBEADM,
                "url": record.url.replace("v1.33.4", "v1.33.5"),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    ]
    manifest.images.append(
        ImageRecord(
            **{
                **manifest.images[0].model_dump(),
                "name": "coredns",
                "repository": "library/coredns",
                "tag": "1.12",
                "digest": f"sha256:{image}",
                "upstream_digest": f"sha256:{image}",
            }
        )
    )
    write_manifest(root, manifest)
    write_sha256sums(root, use_cache=False)
    return {"layer": layer, "config": config, "manifest": image, "shared": shared_layer}


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    base = make_bundle(tmp_path / "base")
    full = tmp_path / "out" / "kubeplay-1.33.5-amd64"
    (tmp_path / "out").mkdir()
    blobs = make_next_version(base, full)
    return base, full, blobs


def _blob_rel(digest: str) -> str:
    return f"{BLOBS}/{digest[:2]}/{digest}/data"


def _sums(root: Path) -> dict[str, str]:
    return read_sha256sums(root / "SHA256SUMS")


# --- loaders ------------------------------------------------------------------------------------------


def test_directory_archive_parts_and_inventory_json_give_the_same_base(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base")
    from_dir = load_base(base)
    sums = _sums(base)
    assert from_dir.paths.keys() == {p for p in sums if p not in TOP_LEVEL_OWN}
    assert from_dir.paths[KUBEADM].size == (base / KUBEADM).stat().st_size
    assert from_dir.identities == [identity_of((base / "kubeplay.json").read_bytes())]
    assert from_dir.bundles[0].kube_version == "1.33.4"
    packed = pack_checked_bundle(base, tmp_path / "packed")
    split = pack_checked_bundle(base, tmp_path / "split", split_size=100 << 10)
    assert split.parts_manifest is not None
    write_inventory(from_dir, tmp_path / "inventory.json")
    for other in (packed.archive, split.parts_manifest, split.parts[1], tmp_path / "inventory.json"):
        loaded = load_base(other)
        assert loaded.paths == from_dir.paths, other
        assert loaded.identities == from_dir.identities


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.json", "no such file or directory"),
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "neither an inventory.json"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "not a finished kubeplay bundle directory"),
        (lambda d: (d / "inv.json").write_text('{"kind": "x"}') and d / "inv.json", "not a kubeplay inventory"),
    ],
)
def test_anything_else_as_base_is_bad_input_naming_it(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(BadInput, match=message) as info:
        load_base(path)
    assert str(path) in info.value.message


# --- delta selection -----------------------------------------------------------------------------------


def test_delta_carries_only_what_the_base_lacks_and_shared_layers_stay_behind(pair: tuple[Path, Path, dict]) -> None:
    base, full, blobs = pair
    result = write_delta(full, load_base(base), base_content=None, out=QUIET)
    assert result.path.parent == full.parent and result.path.name.startswith(full.name + "-delta-")
    carried = set(_sums(result.path))
    base_digests = set(_sums(base).values())
    expected = {p for p, d in _sums(full).items() if d not in base_digests or p in ALWAYS_CARRIED}
    assert carried == expected | {DELTA_NAME}
    assert {_blob_rel(blobs["layer"]), _blob_rel(blobs["config"]), _blob_rel(blobs["manifest"]), NEW_KUBEADM} <= carried
    assert _blob_rel(blobs["shared"]) not in carried  # the new image's layer shared with the old image
    assert "kubespray/README.md" not in carried
    assert (result.path / NEW_KUBEADM).stat().st_ino == (full / NEW_KUBEADM).stat().st_ino  # hard link
    record = read_delta(result.path)
    assert record is not None
    assert record.content.keys() == _sums(full).keys()
    assert record.target.sums_sha256 == hashlib.sha256((full / "SHA256SUMS").read_bytes()).hexdigest()
    assert record.base.identities == load_base(base).identities
    assert 0 < record.carried_size < record.full_size


def _complete(base: Path, delta: Path, dest: Path) -> None:
    """What the deploy node does: the full bundle from base files (by digest), carried files and patches."""
    record = read_delta(delta)
    assert record is not None
    by_digest = {d: base / p for p, d in _sums(base).items()}
    patches = {p.path: p for p in record.patches}
    for rel, entry in record.content.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in patches:
            patch = patches[rel]
            apply_patch(by_digest[patch.base_sha256], delta / patch.patch, target, entry.sha256, entry.size)
        elif (delta / rel).is_file():
            shutil.copy(delta / rel, target)
        else:
            shutil.copy(by_digest[entry.sha256], target)
    (dest / "SHA256SUMS").write_bytes(full_sums_text(record.content))


@pytest.mark.parametrize("patches", [False, True])
def test_base_plus_delta_is_the_full_bundle_digest_for_digest(
    pair: tuple[Path, Path, dict], tmp_path: Path, patches: bool
) -> None:
    base, full, _ = pair
    result = write_delta(full, load_base(base), base_content=base if patches else None, out=QUIET)
    record = result.record
    if patches:
        assert [p.path for p in record.patches] == [NEW_KUBEADM]
        assert NEW_KUBEADM not in _sums(result.path)
        assert (result.path / record.patches[0].patch).stat().st_size < (full / NEW_KUBEADM).stat().st_size // 10
    else:
        assert record.patches == []
    done = tmp_path / "completed"
    _complete(base, result.path, done)
    assert _sums(done) == _sums(full)
    assert verify_bundle(done).ok
    assert all(hashlib.sha256((done / p).read_bytes()).hexdigest() == d for p, d in _sums(full).items())


def test_verify_pack_extract_of_a_delta(pair: tuple[Path, Path, dict], tmp_path: Path) -> None:
    base, full, _ = pair
    result = write_delta(full, load_base(base), base_content=base, out=QUIET)
    checked = verify_bundle(result.path)
    assert checked.ok, checked.report.lines()
    assert checked.kind == "delta directory"
    packed = pack_checked_bundle(result.path, tmp_path / "packed")
    assert "-delta-" in packed.archive.name  # never the full bundle's archive name
    archive = verify_bundle(packed.archive)
    assert archive.ok, archive.report.lines()
    assert archive.kind == "delta archive"
    extracted = extract_bundle(packed.archive, tmp_path / "unpacked")
    assert _sums(extracted.root) == _sums(result.path)
    assert load_base(packed.archive).paths == load_base(result.path).paths == load_base(full).paths


def test_a_delta_lacking_a_file_kubeplay_json_lists_is_named(pair: tuple[Path, Path, dict]) -> None:
    base, full, _ = pair
    result = write_delta(full, load_base(base), base_content=None, out=QUIET)
    record = read_delta(result.path)
    assert record is not None
    del record.content[NEW_KUBEADM]
    record.target.sums_sha256 = full_sums_sha256(record.content)
    (result.path / NEW_KUBEADM).unlink()
    (result.path / DELTA_NAME).write_text(record.model_dump_json())
    write_sha256sums(result.path, use_cache=False)
    problems = "\n".join(verify_bundle(result.path).report.problems)
    assert f"{NEW_KUBEADM}: listed in kubeplay.json, missing from the bundle and SHA256SUMS and delta.json" in problems


def test_a_carried_file_changed_after_the_build_fails_verify(pair: tuple[Path, Path, dict]) -> None:
    base, full, _ = pair
    result = write_delta(full, load_base(base), base_content=None, out=QUIET)
    (result.path / NEW_KUBEADM).unlink()  # break the hard link before changing it
    shutil.copy(full / NEW_KUBEADM, result.path / NEW_KUBEADM)
    flip_byte(result.path / NEW_KUBEADM)
    assert any(line.startswith(f"changed: {NEW_KUBEADM}") for line in verify_bundle(result.path).report.lines())
    with pytest.raises(BundleError, match="not packed"):
        pack_checked_bundle(result.path, result.path.parent / "packed")


def test_rebuilding_a_delta_replaces_the_earlier_one(pair: tuple[Path, Path, dict]) -> None:
    base, full, _ = pair
    first = write_delta(full, load_base(base), base_content=None, out=QUIET)
    (first.path / "stray").write_text("left from before")
    second = write_delta(full, load_base(base), base_content=None, out=QUIET)
    assert second.path == first.path and not (second.path / "stray").exists()
    assert [p.name for p in full.parent.iterdir() if p.name.startswith(".")] == []


def test_similarity_key_drops_versions_keeps_name_and_arch() -> None:
    a = "files/dl.k8s.io/release/v1.35.3/bin/linux/amd64/kubelet"
    assert similarity_key(a) == similarity_key(a.replace("1.35.3", "1.35.4"))
    assert similarity_key(a) != similarity_key(a.replace("amd64", "arm64"))
    assert similarity_key(a) != similarity_key(a.replace("kubelet", "kubeadm"))
    assert similarity_key("files/github.com/containerd/containerd-2.1.4-linux-amd64.tar.gz") is None
    assert similarity_key("registry/docker/registry/v2/blobs/sha256/ab/cd/data") is None


# --- patches -------------------------------------------------------------------------------------------


@pytest.fixture
def patch_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    old = tmp_path / "kubelet-1.35.3"
    new = tmp_path / "kubelet-1.35.4"
    old.write_bytes(_seeded_bytes("kubelet", 400_000))
    new.write_bytes(_new_kubeadm(old.read_bytes()))
    patch = tmp_path / "patch.zst"
    size = make_patch(old, new, patch)
    assert size < new.stat().st_size // 10
    return old, new, patch


def test_patch_round_trip(patch_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, patch = patch_files
    dest = tmp_path / "out/kubelet"
    data = new.read_bytes()
    apply_patch(old, patch, dest, hashlib.sha256(data).hexdigest(), len(data))
    assert dest.read_bytes() == data


@pytest.mark.parametrize("damage", ["patch", "base", "digest"])
def test_a_patch_that_does_not_rebuild_the_file_is_refused_naming_it(
    patch_files: tuple[Path, Path, Path], tmp_path: Path, damage: str
) -> None:
    old, new, patch = patch_files
    data = new.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if damage == "patch":
        flip_byte(patch)
    elif damage == "base":
        flip_byte(old, 1000)
    else:
        digest = "0" * 64
    dest = tmp_path / "out/kubelet"
    with pytest.raises(BundleError) as info:
        apply_patch(old, patch, dest, digest, len(data))
    assert str(dest) in info.value.message
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir()] == []
