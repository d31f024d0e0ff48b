"""Read the build host's own apt sources (deb822 `.sources` and one-line `.list`), to use its mirror."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822

APT_ETC = Path("/etc/apt")


@dataclass(frozen=True)
class HostAptSource:
    """One `deb` line of the host: archive URI, suites, components and its signed-by keyring, if any."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def _from_deb822(text: str) -> list[HostAptSource]:
    found = []
    for para in Deb822.iter_paragraphs(text.splitlines()):
        if "deb" not in para.get("Types", "").split() or para.get("Enabled", "yes").lower() == "no":
            continue
        signed = para.get("Signed-By", "").strip() or None
        if signed and "\n" in signed:
            signed = None  # an inline key block; the distro keyring is used instead
        for uri in para.get("URIs", "").split():
            found.append(
                HostAptSource(
                    uri.rstrip("/"),
                    tuple(para.get("Suites", "").split()),
                    tuple(para.get("Components", "").split()),
                    signed,
                )
            )
    return found


def _from_list(text: str) -> list[HostAptSource]:
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        signed = None
        if words and words[0].startswith("["):
            opts: list[str] = []
            while words:
                w = words.pop(0)
                opts.append(w.strip("[]"))
                if w.endswith("]"):
                    break
            for opt in opts:
                if opt.startswith("signed-by="):
                    signed = opt.split("=", 1)[1]
        if len(words) >= 2:
            found.append(HostAptSource(words[0].rstrip("/"), (words[1],), tuple(words[2:]), signed))
    return found


def read_host_apt_sources(etc: Path = APT_ETC) -> list[HostAptSource]:
    """Every enabled `deb` source configured on this host (empty when apt is not configured)."""
    found: list[HostAptSource] = []
    main_list = etc / "sources.list"
    if main_list.is_file():
        found += _from_list(main_list.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".sources":
                found += _from_deb822(path.read_text(errors="replace"))
            elif path.suffix == ".list":
                found += _from_list(path.read_text(errors="replace"))
    return found


def host_sources_for(codename: str, etc: Path = APT_ETC) -> list[HostAptSource]:
    """The host's sources whose suites belong to `codename` (codename, -updates, -security; no backports)."""
    result = []
    for src in read_host_apt_sources(etc):
        # backports and proposed-updates are opt-in for apt too (NotAutomatic), so they are left out here.
        suites = tuple(
            s
            for s in src.suites
            if (s == codename or s.startswith(codename + "-")) and not s.endswith(("-backports", "-proposed-updates"))
        )
        if suites:
            result.append(HostAptSource(src.uri, suites, src.components, src.signed_by))
    return result
