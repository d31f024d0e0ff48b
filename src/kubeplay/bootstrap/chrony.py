"""chrony as the cluster's time server: `allow` the cluster subnet, `local stratum 10` with no upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kubeplay.bootstrap.render import render


def render_chrony_conf(allow: list[str], upstream_servers: list[str]) -> str:
    return render("chrony.conf.j2", allow=allow, upstream_servers=upstream_servers)


def render_chrony_dropin(chronyd_bin: str, options_variable: str) -> str:
    return render("chrony-dropin.conf.j2", chronyd_bin=chronyd_bin, options_variable=options_variable)


def upstream_servers(ntp_servers: list[str], own_addresses: set[str]) -> list[str]:
    """NTP servers from config other than this node itself (which serves, and cannot sync to itself)."""
    return [s for s in ntp_servers if s not in own_addresses]


@dataclass(frozen=True)
class ChronyLayout:
    """Where chrony reads its configuration on this distro and how kubeplay hooks into it."""

    main_conf: Path
    confdir: Path | None  # a directory chrony reads *.conf from; else an `include` line is added

    def fragment_path(self, own_conf: Path) -> Path:
        return self.confdir / "kubeplay.conf" if self.confdir else own_conf


def find_layout(candidates: tuple[Path, ...], root: Path) -> ChronyLayout | None:
    """Detect chrony.conf and a `confdir` directive in it (Debian has /etc/chrony/conf.d)."""
    for main in candidates:
        if main.exists():
            for line in main.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^\s*confdir\s+(\S+)", line)
                if m:
                    return ChronyLayout(main, root / m.group(1).lstrip("/"))
            return ChronyLayout(main, None)
    return None


def chrony_unit_names() -> tuple[str, ...]:
    return ("chrony.service", "chronyd.service")
