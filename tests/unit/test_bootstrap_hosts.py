"""/etc/hosts (and chrony.conf) blocks between marker lines: idempotent, and nothing else is touched."""

from __future__ import annotations

from pathlib import Path

from kubeplay.bootstrap.hosts import BEGIN, END, apply_block, has_block, hosts_lines, other_entries_for

HOSTS = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n# a comment the admin wrote\n10.0.0.9 build-box\n"


def test_block_is_added_once_and_rest_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    path.chmod(0o640)
    assert apply_block(path, hosts_lines("10.0.0.5", "kube.registry.local"))
    text = path.read_text()
    assert text.startswith(HOSTS)
    assert text.endswith(f"{BEGIN}\n10.0.0.5 kube.registry.local\n{END}\n")
    assert not apply_block(path, hosts_lines("10.0.0.5", "kube.registry.local")), "second run changes nothing"
    assert path.read_text() == text
    assert (path.stat().st_mode & 0o777) == 0o640


def test_changed_ip_replaces_the_block_in_place(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    apply_block(path, hosts_lines("10.0.0.5", "kube.registry.local"))
    path.write_text(path.read_text() + "192.168.7.7 added-later\n")
    assert apply_block(path, hosts_lines("10.0.0.6", "kube.registry.local"))
    text = path.read_text()
    assert text.count(BEGIN) == 1 and "10.0.0.5" not in text and "10.0.0.6 kube.registry.local" in text
    assert text.endswith("192.168.7.7 added-later\n"), "lines after the block stay where they were"


def test_removal_restores_the_original_bytes(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    apply_block(path, hosts_lines("10.0.0.5", "kube.registry.local"))
    assert has_block(path)
    assert apply_block(path, [])
    assert path.read_text() == HOSTS
    assert not has_block(path)


def test_foreign_entries_for_the_domain_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS + "10.9.9.9 kube.registry.local # old install\n")
    apply_block(path, hosts_lines("10.0.0.5", "kube.registry.local"))
    assert other_entries_for(path.read_text(), "kube.registry.local") == ["10.9.9.9 kube.registry.local # old install"]
