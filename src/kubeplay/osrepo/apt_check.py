"""An isolated apt root: apt-get against chosen sources and a chosen dpkg status, for any arch.

Used to check that a bundled repo installs (`apt-get install --simulate` for an arch the build host
cannot run) and, in the benchmark, to run kubespray-offline's method (`--download-only`) as the peer.
Nothing of the host's apt configuration is read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubeplay.errors import StepFailed

APT_TIMEOUT = 1800


@dataclass(frozen=True)
class AptLine:
    uri: str
    suite: str
    components: str
    signed_by: Path


class IsolatedAptRoot:
    """apt state under `root`: its own sources, lists, cache and dpkg status."""

    def __init__(self, root: Path, arch: str, sources: list[AptLine], status_paragraphs: list[str]) -> None:
        self.root = root
        self.arch = arch
        for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "var/lib/dpkg"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        lines = []
        for s in sources:
            lines.append(
                f"Types: deb\nURIs: {s.uri}\nSuites: {s.suite}\nComponents: {s.components}\n"
                f"Architectures: {arch}\nSigned-By: {s.signed_by}\n"
            )
        (root / "etc/apt/sources.list.d/sources.sources").write_text("\n".join(lines))
        status = [p.strip("\n") + "\nStatus: install ok installed" for p in status_paragraphs]
        (root / "var/lib/dpkg/status").write_text("\n\n".join(status) + "\n")
        (root / "etc/apt/sources.list").write_text("")

    def options(self) -> list[str]:
        r = str(self.root)
        opts = {
            "Dir": r,
            "Dir::Etc": f"{r}/etc/apt",
            "Dir::Etc::trusted": "/nonexistent",
            "Dir::Etc::TrustedParts": "/nonexistent",
            "Dir::State::status": f"{r}/var/lib/dpkg/status",
            "Dir::Cache": f"{r}/var/cache/apt",
            "Dir::State": f"{r}/var/lib/apt",
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "Debug::NoLocking": "1",
            "APT::Install-Recommends": "false",
            "APT::Get::Assume-Yes": "true",
        }
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def run(self, *args: str) -> str:
        """Run apt-get with this root; StepFailed with apt's own message when it fails."""
        proc = subprocess.run(
            ["apt-get", *self.options(), *args], capture_output=True, text=True, timeout=APT_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise StepFailed(f"apt-get {' '.join(args[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def update(self) -> None:
        self.run("update", "-q")

    def simulate(self, packages: list[str]) -> list[tuple[str, str]]:
        """(name, version) of every package `apt-get install --simulate` would install."""
        out = self.run("install", "--simulate", "-q", *packages)
        found = []
        for line in out.splitlines():
            if line.startswith("Inst "):
                parts = line.split()
                version = next((p.strip("(") for p in parts[2:] if p.startswith("(")), "")
                found.append((parts[1], version))
        return found

    def download_only(self, packages: list[str]) -> list[Path]:
        """The .deb files `apt-get install --download-only` fetched into this root's archive cache."""
        self.run("install", "--download-only", "-q", *packages)
        return sorted((self.root / "var/cache/apt/archives").glob("*.deb"))
