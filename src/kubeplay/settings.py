"""Every `KUBEPLAY_*` environment variable: its name, type, default and meaning, and the one place they are read.

Library code reads settings with `from_environ()` (a pure function of an environ mapping, for tests), never
`os.environ`; CLI options take their `envvar=` names from the constants here. Booleans have one parser
(`parse_bool`). Caches live under one root (`CacheLayout`): `$KUBEPLAY_CACHE_DIR`, else
/var/cache/kubeplay for root (labs run as root, and a root-owned ~/.cache would lock out the user's own
builds under sudo), else `$XDG_CACHE_HOME/kubeplay`, else ~/.cache/kubeplay.

`python -m kubeplay.settings` prints the README's table of these variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeplay.errors import BadInput

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
DEFAULT_LAB_DIR = Path("/var/lib/kubeplay/lab")
DEFAULT_LAB_SUBNET = "10.213.0.0/24"
ROOT_CACHE = Path("/var/cache/kubeplay")
DEFAULT_INSTALL_STATE = Path("/var/lib/kubeplay")
DEFAULT_SERVED = DEFAULT_INSTALL_STATE / "served"


@dataclass(frozen=True)
class Variable:
    """One environment variable as the README documents it; `option` is the CLI option it sets, if any."""

    name: str
    type: str
    default: str
    meaning: str
    option: str = ""
    reader: str = "kubeplay"  # or "install.sh", "tests"


VARIABLES: dict[str, Variable] = {}


def _define(name: str, type_: str, default: str, meaning: str, option: str = "", reader: str = "kubeplay") -> str:
    VARIABLES[name] = Variable(name, type_, default, meaning, option, reader)
    return name


# Read by the library (through from_environ) or by several commands.
CACHE_DIR = _define(
    "KUBEPLAY_CACHE_DIR",
    "path",
    "/var/cache/kubeplay (root), else $XDG_CACHE_HOME/kubeplay or ~/.cache/kubeplay",
    "cache root: kubespray/ (release trees), osrepo/ (OS packages), wheels/ (PyPI), lab/ (node rootfs), charts/",
)
WHEELS = _define(
    "KUBEPLAY_WHEELS", "bool", "true", "build puts Python wheels for the deploy node in wheels/", "--wheels"
)
WHEEL = _define(
    "KUBEPLAY_WHEEL", "path", "", "a ready kubeplay .whl for wheels/ instead of one built from the source tree"
)
PIGZ = _define("KUBEPLAY_PIGZ", "bool", "true", "gzip packing runs pigz when installed (false: in-process zlib)")
SHARED = _define(
    "KUBEPLAY_SHARED", "path", "../shared beside the checkout", "kubespray releases for the demo and tests"
)
QUIET = _define("KUBEPLAY_QUIET", "bool", "false", "no progress output", "--quiet")
JSON_EVENTS = _define("KUBEPLAY_JSON_EVENTS", "bool", "false", "one JSON event per line on stdout", "--json-events")
CONFIG = _define(
    "KUBEPLAY_CONFIG", "path", "config.yaml", "config.yaml of install, deploy and day-2 commands", "--config"
)
BUNDLE = _define(
    "KUBEPLAY_BUNDLE", "path", "beside config.yaml, or .", "the unpacked bundle (install.sh sets it)", "--bundle"
)
MIRROR_CREDENTIALS = _define(
    "KUBEPLAY_CRED_<NAME>_USERNAME, KUBEPLAY_CRED_<NAME>_PASSWORD",
    "str",
    "",
    "credentials a bundle.yaml mirror names (`credentials: <name>`); win over credentials_file",
)
# kubeplay build / pack / verify / push / baseline
BUILD_OUTPUT = _define(
    "KUBEPLAY_BUILD_OUTPUT", "path", "./kubeplay-<kube_version>-<distros>-<arches>", "bundle directory", "--output"
)
BUILD_BASE = _define(
    "KUBEPLAY_BUILD_BASE", "path", "", "build also writes a delta against this inventory.json or bundle", "--base"
)
BUILD_BASE_CONTENT = _define(
    "KUBEPLAY_BUILD_BASE_CONTENT",
    "path",
    "--base when a bundle",
    "base files to make patches against",
    "--base-content",
)
JOBS = _define("KUBEPLAY_JOBS", "int", "8", "parallel downloads of build", "--jobs")
RETRIES = _define("KUBEPLAY_RETRIES", "int", "5", "tries per download", "--retries")
TIMEOUT = _define("KUBEPLAY_TIMEOUT", "float", "60.0", "seconds without data before a download is retried", "--timeout")
PACK_COMPRESSION = _define("KUBEPLAY_PACK_COMPRESSION", "zstd or gzip", "zstd", "archive compression", "--compression")
PACK_OUTPUT = _define("KUBEPLAY_PACK_OUTPUT", "path", "beside the bundle", "directory for pack's archive", "--output")
SPLIT_SIZE = _define("KUBEPLAY_SPLIT_SIZE", "size", "", "pack writes parts of this size (e.g. 4GB)", "--split-size")
PACK_LEVEL = _define("KUBEPLAY_PACK_LEVEL", "int", "3 (zstd), 6 (gzip)", "compression level", "--level")
ZSTD_LEVEL = _define("KUBEPLAY_ZSTD_LEVEL", "int", "", "older name of KUBEPLAY_PACK_LEVEL", "--level")
EXTRACT_DEST = _define("KUBEPLAY_EXTRACT_DEST", "path", ".", "directory `kubeplay extract` unpacks into", "--dest")
ALLOWED_SIGNERS = _define(
    "KUBEPLAY_ALLOWED_SIGNERS",
    "path",
    "/etc/kubeplay/allowed_signers (install.sh, when present)",
    "OpenSSH allowed_signers: who may sign bundles (verify and install.sh check SHA256SUMS.sig first)",
    "--allowed-signers",
)
SUMS_SHA256 = _define("KUBEPLAY_SUMS_SHA256", "sha256", "", "expected sha256 of SHA256SUMS for verify", "--sums-sha256")
PUSH_REGISTRY = _define(
    "KUBEPLAY_PUSH_REGISTRY", "host[/prefix]", "", "registry `kubeplay push` copies images into", "--registry"
)
PUSH_CREDENTIALS_FILE = _define(
    "KUBEPLAY_PUSH_CREDENTIALS_FILE", "path", "", "0600 file of `username:`/`password:` for push", "--credentials-file"
)
PUSH_USERNAME = _define("KUBEPLAY_PUSH_USERNAME", "str", "", "push's registry user, without a credentials file")
PUSH_PASSWORD = _define("KUBEPLAY_PUSH_PASSWORD", "str", "", "push's registry password, with KUBEPLAY_PUSH_USERNAME")
BASELINE_OUTPUT = _define("KUBEPLAY_BASELINE_OUTPUT", "path", "stdout", "where `kubeplay baseline` writes", "--output")
# kubeplay install / deploy
STATE_DIR = _define(
    "KUBEPLAY_STATE_DIR", "path", "/var/lib/kubeplay", "install's state (ledger, certificates)", "--state-dir"
)
NO_SYSTEMD = _define(
    "KUBEPLAY_NO_SYSTEMD", "bool", "false", "install runs registry and nginx as child processes", "--no-systemd"
)
DEPLOY_STATE = _define(
    "KUBEPLAY_DEPLOY_STATE", "path", "/var/lib/kubeplay/deploy", "deploy's inventory, ledger and logs", "--state-dir"
)
SERVED = _define(
    "KUBEPLAY_SERVED",
    "path",
    "$KUBEPLAY_STATE_DIR/served, else /var/lib/kubeplay/served",
    "the versions this deploy node serves; deploy, upgrade and day-2 commands take their bundle from it",
    "--served",
)
CA = _define("KUBEPLAY_CA", "path", "the CA kubeplay install made", "registry CA deploy puts on the nodes", "--ca")
# kubeplay lab / demo
LAB_DIR = _define("KUBEPLAY_LAB_DIR", "path", str(DEFAULT_LAB_DIR), "where labs live", "--state-dir")
LAB_NAME = _define(
    "KUBEPLAY_LAB_NAME", "str", "lab", "lab name (other lab commands: the only lab up, else lab)", "--name"
)
LAB_SUBNET = _define(
    "KUBEPLAY_LAB_SUBNET", "ipv4 network", DEFAULT_LAB_SUBNET, "private subnet of a new lab", "--subnet"
)
DEMO_DIR = _define("KUBEPLAY_DEMO_DIR", "path", "demo-out", "work directory of `kubeplay demo`", "--workdir")
# Read by the bundle's install.sh (a shell script on the deploy node: the values are spelled out there).
_SH = "install.sh"
_define("KUBEPLAY_VENV", "path", "/opt/kubeplay/venv", "where install.sh creates kubeplay's venv", reader=_SH)
_define("KUBEPLAY_PYTHON", "command", "python3 python3.13 python3.12 python3.11", "interpreter(s) to try", reader=_SH)
VERIFIED_SUMS = _define(
    "KUBEPLAY_VERIFIED_SUMS",
    "sha256",
    "",
    "set by install.sh: the SHA256SUMS it just checked every file against (install does not hash them again)",
)
_define("KUBEPLAY_SKIP_VERIFY", "bool", "false", "skip checking the bundle (a re-run on a verified copy)", reader=_SH)
_define("KUBEPLAY_COMMAND", "str", "install", "the kubeplay command install.sh runs (e.g. deploy)", reader=_SH)
_define("KUBEPLAY_LINK", "path", "/usr/local/bin/kubeplay", "symlink to the venv's kubeplay (empty: none)", reader=_SH)
# Read by the test suite and benchmarks only.
_define(
    "KUBEPLAY_TEST_CACHE", "path", "/var/tmp/kubeplay-test-cache", "downloads kept between test runs", reader="tests"
)
_define("KUBEPLAY_PEAK_RSS_FILE", "path", "", "a build writes its peak RSS there (tests, bench)", reader="tests")

# Names read before this module existed; each now has one replacement.
RETIRED = {
    "KUBEPLAY_WHEEL_CACHE": f"set {CACHE_DIR} (wheels go in its wheels/ directory)",
    "KUBEPLAY_CACHE": f"set {CACHE_DIR} (the lab rootfs goes in its lab/ directory)",
}


def parse_bool(name: str, value: str) -> bool:
    """1/0, true/false, yes/no, on/off in any case; raise BadInput naming `name` and `value` otherwise."""
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadInput(f"{name}={value!r}: expected 1/0, true/false, yes/no or on/off")


def mirror_credential_variables(name: str) -> tuple[str, str]:
    """The USERNAME and PASSWORD variables of bundle.yaml's credential `name` (non-alphanumerics become _)."""
    stem = "KUBEPLAY_CRED_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
    return f"{stem}_USERNAME", f"{stem}_PASSWORD"


@dataclass(frozen=True)
class CacheLayout:
    """The cache root and what lives under it."""

    root: Path

    @property
    def kubespray(self) -> Path:
        """Unpacked kubespray release trees (plan, catalog)."""
        return self.root / "kubespray"

    @property
    def osrepo(self) -> Path:
        """OS packages by digest, shared by builds."""
        return self.root / "osrepo"

    @property
    def wheels(self) -> Path:
        """Python wheels downloaded from PyPI, shared by builds."""
        return self.root / "wheels"

    @property
    def lab(self) -> Path:
        """Lab node root file systems."""
        return self.root / "lab"

    @property
    def charts(self) -> Path:
        """Helm chart packages by sha256, shared by `kubeplay plan` and builds."""
        return self.root / "charts"


@dataclass(frozen=True)
class Settings:
    """The settings the library reads; CLI options win over them where a command has one."""

    cache: CacheLayout
    wheels: bool
    kubeplay_wheel: Path | None
    pigz: bool
    shared: Path | None
    quiet: bool
    json_events: bool
    no_systemd: bool
    lab_dir: Path
    lab_subnet: str
    allowed_signers: Path | None = None  # None: config.yaml's, else /etc/kubeplay/allowed_signers when present
    served: Path = DEFAULT_SERVED
    verified_sums: str | None = None  # install.sh's KUBEPLAY_VERIFIED_SUMS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, euid: int) -> Settings:
        """Settings from `environ` for a process of user id `euid`; raise BadInput for a bad boolean or a
        retired name."""
        for old, instead in RETIRED.items():
            if environ.get(old):
                raise BadInput(f"{old} is no longer read", hint=instead)

        def flag(name: str) -> bool:
            raw = environ.get(name, "")
            return VARIABLES[name].default == "true" if not raw.strip() else parse_bool(name, raw)

        def path(name: str) -> Path | None:
            raw = environ.get(name)
            return Path(raw) if raw else None

        return cls(
            cache=CacheLayout(path(CACHE_DIR) or _default_cache_root(environ, euid)),
            wheels=flag(WHEELS),
            kubeplay_wheel=path(WHEEL),
            pigz=flag(PIGZ),
            shared=path(SHARED),
            quiet=flag(QUIET),
            json_events=flag(JSON_EVENTS),
            no_systemd=flag(NO_SYSTEMD),
            lab_dir=path(LAB_DIR) or DEFAULT_LAB_DIR,
            lab_subnet=environ.get(LAB_SUBNET) or DEFAULT_LAB_SUBNET,
            allowed_signers=path(ALLOWED_SIGNERS),
            served=path(SERVED) or ((path(STATE_DIR) or DEFAULT_INSTALL_STATE) / "served"),
            verified_sums=environ.get(VERIFIED_SUMS, "").strip().lower() or None,
        )


def _default_cache_root(environ: Mapping[str, str], euid: int) -> Path:
    if euid == 0:
        return ROOT_CACHE
    if xdg := environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "kubeplay"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".cache" / "kubeplay"


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings of this process (or of `environ`); raise BadInput for a bad value."""
    return Settings.from_environ(os.environ if environ is None else environ, euid=os.geteuid())


def markdown_table() -> str:
    """The README's table: every variable, its type, default and meaning, grouped by who reads it."""
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for var in VARIABLES.values():
        what = var.meaning + (f" (`{var.option}`)" if var.option else "")
        what += "" if var.reader == "kubeplay" else f" — read by {var.reader}"
        default = f"`{var.default}`" if var.default else "—"
        names = ", ".join(f"`{n}`" for n in var.name.split(", "))
        lines.append(f"| {names} | {var.type} | {default} | {what} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
