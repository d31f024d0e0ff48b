"""Opening kubespray trees: directories, release archives, both layouts, and the errors users see."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from kubeplay.catalog.examples import example_tree_path
from kubeplay.catalog.rolevars import load_role_variables
from kubeplay.catalog.source import file_sha256, load_tree
from kubeplay.errors import ArchiveDigestMismatch, BadInput, CatalogError, ConfigError

EXAMPLE = example_tree_path()


def copy_example(tmp_path: Path, name: str = "kubespray-2.31.0") -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLE, target)
    return target


def make_archive(tree: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return archive


def to_old_layout(root: Path) -> Path:
    """Rearrange a v2.28+ tree the way v2.24-v2.27 laid it out (kubespray-defaults, checksums as defaults)."""
    new = root / "roles" / "kubespray_defaults"
    old = root / "roles" / "kubespray-defaults"
    new.rename(old)
    (old / "vars" / "main" / "checksums.yml").rename(old / "defaults" / "main" / "checksums.yml")
    (old / "vars" / "main" / "main.yml").rename(old / "vars" / "main.yml")
    (old / "vars" / "main").rmdir()
    return root


def test_directory_tree_has_layout_and_version() -> None:
    tree = load_tree(EXAMPLE)
    assert tree.layout == "kubespray_defaults"
    assert tree.version == "v2.31.0-example"
    assert tree.sha256 is None
    assert tree.root == EXAMPLE


def test_archive_is_verified_and_extracted_once_into_the_cache(tmp_path: Path) -> None:
    archive = make_archive(copy_example(tmp_path / "src"), tmp_path / "kubespray-v2.31.0.tar.gz")
    digest = file_sha256(archive)
    tree = load_tree(archive, digest, cache_dir=tmp_path / "cache")
    assert tree.sha256 == digest
    assert tree.root == tmp_path / "cache" / "kubespray" / digest / "kubespray-2.31.0"
    assert (tree.root / "roles" / "kubespray_defaults" / "defaults" / "main" / "download.yml").is_file()
    marker = tree.root / "extracted-marker"
    marker.write_text("kept")
    again = load_tree(archive, f"sha256:{digest.upper()}", cache_dir=tmp_path / "cache")
    assert again.root == tree.root and marker.exists(), "a second load must reuse the extracted tree"


def test_archive_with_wrong_sha256_names_both_digests(tmp_path: Path) -> None:
    archive = make_archive(copy_example(tmp_path / "src"), tmp_path / "k.tar.gz")
    with pytest.raises(ArchiveDigestMismatch) as info:
        load_tree(archive, "0" * 64, cache_dir=tmp_path / "cache")
    assert isinstance(info.value, BadInput) and info.value.exit_code == 2
    assert f"expected {'0' * 64}, actual {file_sha256(archive)}" in str(info.value)
    assert not (tmp_path / "cache").exists(), "nothing is extracted from an archive that failed verification"


def test_archive_escaping_its_directory_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(CatalogError, match="cannot extract"):
        load_tree(archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "outside.txt").exists()
    assert not (tmp_path / "outside.txt").exists()


def test_old_layout_is_detected_and_loads_the_same_variables(tmp_path: Path) -> None:
    old = load_tree(to_old_layout(copy_example(tmp_path)))
    assert old.layout == "kubespray-defaults"
    new_vars, old_vars = load_role_variables(load_tree(EXAMPLE)), load_role_variables(old)
    assert old_vars.defaults["downloads"] == new_vars.defaults["downloads"]
    # v2.24-v2.27 keep the checksum tables in role defaults, v2.28+ in role vars.
    assert "kubelet_checksums" in old_vars.defaults and "kubelet_checksums" in new_vars.vars
    assert old_vars.vars["kube_major_version"] == new_vars.vars["kube_major_version"]


def test_missing_files_are_named(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    (root / "roles/kubespray_defaults/defaults/main/download.yml").unlink()
    (root / "roles/kubespray_defaults/vars/main/checksums.yml").unlink()
    with pytest.raises(CatalogError) as info:
        load_tree(root)
    message = str(info.value)
    assert "roles/kubespray_defaults/defaults/main/download.yml" in message
    assert "roles/kubespray_defaults/vars/main/checksums.yml" in message


def test_tree_without_defaults_role_says_which_layouts_are_expected(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    shutil.rmtree(root / "roles" / "kubespray_defaults")
    with pytest.raises(CatalogError, match=r"roles/kubespray_defaults/defaults/main/ \(v2.28\+\)"):
        load_tree(root)


def test_not_a_tree_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no roles/ directory"):
        load_tree(tmp_path)
    with pytest.raises(CatalogError, match="no such file or directory"):
        load_tree(tmp_path / "absent")


def test_parent_of_a_single_tree_is_accepted(tmp_path: Path) -> None:
    copy_example(tmp_path / "unpacked")
    assert load_tree(tmp_path / "unpacked").root == tmp_path / "unpacked" / "kubespray-2.31.0"


def test_yaml_error_in_a_variable_file_names_file_line_and_column(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    broken = root / "roles/kubespray_defaults/defaults/main/main.yml"
    broken.write_text("---\nkube_version: [1.35\nother: 1\n")
    with pytest.raises(ConfigError) as info:
        load_role_variables(load_tree(root))
    assert f"{broken}:3:6" in str(info.value)
