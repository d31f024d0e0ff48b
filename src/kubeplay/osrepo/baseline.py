"""The baseline: what a node already has installed, so the closure bundles only what it lacks.

Read from output captured on a real node:
  Debian/Ubuntu: `dpkg-query -W > baseline.txt` (or -f '${binary:Package}\\t${Version}\\t${Architecture}\\n'),
                 or a copy of /var/lib/dpkg/status
  RHEL family:   `rpm -qa > baseline.txt` (or --qf '%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n')
or from kubeplay's own normalized file, written by `kubeplay baseline`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from kubeplay.errors import BadInput
from kubeplay.osrepo.closure import Installed

Family = Literal["apt", "rpm"]
BASELINE_KIND = "kubeplay-baseline"
RPM_ARCHES = {"x86_64", "aarch64", "noarch", "i686", "i386", "ppc64le", "s390x", "armv7hl", "src"}


class BaselinePackage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    arch: str = ""


class BaselineFile(BaseModel):
    """kubeplay's normalized baseline: the family and every installed package."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["kubeplay-baseline"] = "kubeplay-baseline"
    family: Family
    source: str = ""
    packages: list[BaselinePackage]


def _parse_status(text: str) -> list[Installed]:
    found = []
    for para in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(Package|Version|Architecture|Status):[ \t]*(.*?)[ \t]*$", para, re.M))
        if "Package" not in fields or not fields.get("Version"):
            continue
        if "Status" in fields and not fields["Status"].endswith(" installed"):
            continue
        found.append(Installed(fields["Package"], fields["Version"], fields.get("Architecture", "")))
    return found


def _parse_dpkg_query(lines: list[str]) -> list[Installed]:
    found = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip():
            continue  # removed packages ("rc") list no version
        name, _, arch = parts[0].strip().partition(":")
        if len(parts) >= 3 and parts[2].strip():
            arch = parts[2].strip()
        found.append(Installed(name, parts[1].strip(), arch))
    return found


def parse_nevra(text: str) -> Installed:
    """name-[epoch:]version-release.arch (rpm -qa's default output) into name, [epoch:]version-release, arch."""
    stem, dot, arch = text.rpartition(".")
    if not dot or arch not in RPM_ARCHES:
        raise ValueError(f"{text!r} does not end in .<arch>")
    name_ver, _, release = stem.rpartition("-")
    name, _, version = name_ver.rpartition("-")
    if not name or not version or not release:
        raise ValueError(f"{text!r} is not name-version-release.arch")
    return Installed(name, f"{version}-{release}", arch)


def _parse_rpm(lines: list[str]) -> list[Installed]:
    found = []
    for line in lines:
        if "\t" in line:
            name, evr, *rest = (p.strip() for p in line.split("\t"))
            evr = evr.removeprefix("0:").removeprefix("(none):")
            found.append(Installed(name, evr, rest[0] if rest else ""))
        elif not line.startswith("gpg-pubkey-"):
            found.append(parse_nevra(line.strip()))
    return found


def parse_baseline(text: str, origin: str = "baseline") -> tuple[Family, list[Installed]]:
    """(family, installed packages) from any supported capture; BadInput naming the line that does not parse."""
    stripped = text.lstrip()
    if stripped.startswith(("kind:", "{", "---")) and BASELINE_KIND in text[:200]:
        try:
            data: Any = yaml.safe_load(text)
            model = BaselineFile.model_validate(data)
        except (yaml.YAMLError, ValueError) as exc:
            raise BadInput(f"{origin}: not a valid kubeplay baseline file: {exc}") from exc
        return model.family, [Installed(p.name, p.version, p.arch) for p in model.packages]
    if re.search(r"^Package:", text, re.M):
        return "apt", _parse_status(text)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise BadInput(f"{origin}: empty baseline", hint="capture `dpkg-query -W` or `rpm -qa` on a node")
    tabbed = [ln for ln in lines if "\t" in ln]
    if tabbed and len(tabbed) != len(lines):
        bad = next(ln for ln in lines if "\t" not in ln)
        raise BadInput(
            f"{origin}: mixed formats (line {bad!r})",
            hint="pass the unedited output of `dpkg-query -W` or `rpm -qa` captured on the node",
        )
    rpm_arch = {"x86_64", "aarch64", "noarch", "ppc64le", "s390x"}
    try:
        if not tabbed or any(ln.split("\t")[-1].strip() in rpm_arch for ln in tabbed):
            return "rpm", _parse_rpm(lines)
    except ValueError as exc:
        raise BadInput(
            f"{origin}: {exc}",
            hint="pass the output of `dpkg-query -W`, /var/lib/dpkg/status, or `rpm -qa` captured on the node",
        ) from exc
    return "apt", _parse_dpkg_query(lines)


def read_baseline(path: Path) -> tuple[Family, list[Installed]]:
    """Read and parse a baseline file; BadInput if it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadInput(f"cannot read baseline {path}: {exc.strerror}") from exc
    return parse_baseline(text, str(path))


def baseline_document(family: Family, packages: list[Installed], source: str) -> str:
    """The normalized YAML document `kubeplay baseline` writes."""
    model = BaselineFile(
        family=family,
        source=source,
        packages=[BaselinePackage(name=p.name, version=p.version, arch=p.arch) for p in packages],
    )
    return yaml.safe_dump(model.model_dump(), sort_keys=False)
