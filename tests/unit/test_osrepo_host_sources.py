"""Reading the build host's apt sources, so its mirror is used without editing bundle.yaml."""

from __future__ import annotations

from pathlib import Path

from kubeplay.osrepo.host_sources import HostAptSource, host_sources_for

DEB822 = """Types: deb deb-src
URIs: http://mirror.example.invalid/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.invalid/debian-security
Suites: bookworm-security
Components: main
Enabled: no
"""
LIST = """# comment
deb [arch=amd64 signed-by=/etc/k.gpg] http://other.example.invalid/debian bookworm main
deb http://old.example.invalid/debian bullseye main
"""


def test_host_sources_for_a_codename(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text(LIST)
    found = host_sources_for("bookworm", tmp_path)
    assert found == [
        HostAptSource("http://other.example.invalid/debian", ("bookworm",), ("main",), "/etc/k.gpg"),
        HostAptSource(
            "http://mirror.example.invalid/debian",
            ("bookworm", "bookworm-updates"),
            ("main", "contrib"),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
    ]
    assert host_sources_for("trixie", tmp_path) == []
