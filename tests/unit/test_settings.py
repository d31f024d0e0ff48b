"""Every KUBEPLAY_* variable: one module names it, parses it and documents it; the README lists exactly those."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from kubeplay import settings
from kubeplay.assemble.pipeline import BuildOptions
from kubeplay.bundle.compression import gzip_tool
from kubeplay.cli.app import app
from kubeplay.errors import BadInput
from kubeplay.lab.nodes import DEFAULT_SUBNET
from kubeplay.settings import VARIABLES, CacheLayout, Settings, parse_bool

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.bundle_fixture import install_sh_bundle, make_bundle, run_install_sh  # noqa: E402

KUBEPLAY = ROOT / ".venv" / "bin" / "kubeplay"

BOOLS = [
    ("1", True),
    ("0", False),
    ("true", True),
    ("False", False),
    ("YES", True),
    ("no", False),
    ("On", True),
    ("OFF", False),
    (" yes ", True),
]


@pytest.mark.parametrize(("value", "expected"), BOOLS)
def test_parse_bool_accepts_the_four_pairs_in_any_case(value: str, expected: bool) -> None:
    assert parse_bool("KUBEPLAY_WHEELS", value) is expected


@pytest.mark.parametrize("value", ["", "2", "maybe", "y", "t", "enabled", "-1"])
def test_parse_bool_refuses_anything_else_naming_variable_and_value(value: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_bool("KUBEPLAY_PIGZ", value)
    assert f"KUBEPLAY_PIGZ={value!r}" in info.value.message
    assert "1/0, true/false, yes/no or on/off" in info.value.message
    assert info.value.exit_code == 2


def from_env(euid: int = 1000, **env: str) -> Settings:
    return Settings.from_environ({"HOME": "/home/u", **env}, euid=euid)


def test_defaults() -> None:
    s = from_env()
    assert s.cache.root == Path("/home/u/.cache/kubeplay")
    assert (s.wheels, s.pigz, s.quiet, s.json_events, s.no_systemd) == (True, True, False, False, False)
    assert (s.kubeplay_wheel, s.shared) == (None, None)
    assert s.lab_dir == Path("/var/lib/kubeplay/lab")
    assert s.lab_subnet == DEFAULT_SUBNET == settings.DEFAULT_LAB_SUBNET
    # an empty value is the default, as if unset
    assert from_env(KUBEPLAY_WHEELS="", KUBEPLAY_QUIET=" ").wheels is True


@pytest.mark.parametrize(
    ("euid", "env", "root"),
    [
        (1000, {}, "/home/u/.cache/kubeplay"),
        (1000, {"XDG_CACHE_HOME": "/xdg"}, "/xdg/kubeplay"),
        (0, {"XDG_CACHE_HOME": "/xdg"}, "/var/cache/kubeplay"),
        (0, {}, "/var/cache/kubeplay"),
        (0, {"KUBEPLAY_CACHE_DIR": "/c"}, "/c"),
        (1000, {"KUBEPLAY_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/xdg"}, "/c"),
    ],
)
def test_one_cache_root(euid: int, env: dict[str, str], root: str) -> None:
    assert from_env(euid, **env).cache.root == Path(root)


def test_cache_layout_has_one_directory_per_cache() -> None:
    cache = CacheLayout(Path("/c"))
    assert [cache.kubespray, cache.osrepo, cache.wheels, cache.lab] == [
        Path("/c/kubespray"),
        Path("/c/osrepo"),
        Path("/c/wheels"),
        Path("/c/lab"),
    ]


@pytest.mark.parametrize("old", ["KUBEPLAY_WHEEL_CACHE", "KUBEPLAY_CACHE"])
def test_a_retired_cache_variable_names_its_replacement(old: str) -> None:
    with pytest.raises(BadInput) as info:
        from_env(**{old: "/somewhere"})
    assert f"{old} is no longer read" in info.value.message
    assert "KUBEPLAY_CACHE_DIR" in (info.value.hint or "")


@pytest.mark.parametrize("name", [n for n, v in VARIABLES.items() if v.type == "bool" and v.reader == "kubeplay"])
def test_every_boolean_goes_through_the_one_parser(name: str) -> None:
    with pytest.raises(BadInput, match=f"{name}='nah'"):
        from_env(**{name: "nah"})


def test_the_library_reads_booleans_through_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEPLAY_WHEELS", "Off")
    assert BuildOptions().wheels is False
    monkeypatch.setenv("KUBEPLAY_WHEELS", "YES")
    assert BuildOptions().wheels is True
    # KUBEPLAY_PIGZ=false used to keep pigz (only "0" turned it off)
    monkeypatch.setenv("KUBEPLAY_PIGZ", "false")
    assert gzip_tool() is None
    monkeypatch.setenv("KUBEPLAY_PIGZ", "sometimes")
    with pytest.raises(BadInput, match="KUBEPLAY_PIGZ='sometimes'"):
        gzip_tool()


def test_mirror_credential_variables() -> None:
    assert settings.mirror_credential_variables("harbor-eu.1") == (
        "KUBEPLAY_CRED_HARBOR_EU_1_USERNAME",
        "KUBEPLAY_CRED_HARBOR_EU_1_PASSWORD",
    )


def test_readme_lists_exactly_the_variables_settings_defines() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings table: [^>]*-->\n(.*?)<!-- end of settings table -->", readme, re.S)
    assert match, "README.md has no generated settings table"
    assert match.group(1) == settings.markdown_table(), "regenerate it: python -m kubeplay.settings"
    listed = re.findall(r"^\| `(KUBEPLAY_[^`]+)`", match.group(1), re.M)
    assert listed == [name.split(", ")[0] for name in VARIABLES]


def _names_in(text: str) -> set[str]:
    names = set(re.findall(r"\bKUBEPLAY_[A-Z0-9_]*[A-Z0-9]\b", text))
    # KUBEPLAY_CRED_<NAME>_USERNAME shows up cut at the "<" and as names of example credentials
    return {n for n in names if not n.startswith("KUBEPLAY_CRED_")}


def test_every_variable_named_anywhere_is_defined_in_settings() -> None:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / ".ci" / "run"]
    for top in ("src", "tests", "bench", "scripts"):
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".sh", ".yaml", ".j2", ".md", "")]
    known = {n for n in VARIABLES if not n.startswith("KUBEPLAY_CRED_")} | set(settings.RETIRED)
    unknown: dict[str, str] = {}
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            for name in _names_in(path.read_text(errors="replace")) - known:
                unknown.setdefault(name, str(path.relative_to(ROOT)))
    # constants of osrepo (package lists, a Python version), not variables
    unknown = {k: v for k, v in unknown.items() if k not in ("KUBEPLAY_APT", "KUBEPLAY_RPM", "KUBEPLAY_MIN_PYTHON")}
    assert unknown == {}


def test_no_module_but_settings_spells_a_variable_name_as_a_string() -> None:
    offenders = []
    for path in (ROOT / "src" / "kubeplay").rglob("*.py"):
        if path.name != "settings.py" and re.search(r"[\"']KUBEPLAY_[A-Z_]+[\"']", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _options(command: Any, path: str = "kubeplay") -> list[tuple[str, Any]]:
    """Every parameter of the command tree typer builds (its click is vendored: no click import here)."""
    found = [(path, p) for p in command.params]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found += _options(sub, f"{path} {name}")
    return found


def _shown(value: Any) -> str:
    return str(getattr(value, "value", value))


def test_cli_options_take_their_variables_from_settings() -> None:
    options = _options(typer.main.get_command(app))
    with_env = [(where, p) for where, p in options if p.envvar]
    assert len(with_env) > 20
    for where, param in with_env:
        for name in [param.envvar] if isinstance(param.envvar, str) else param.envvar:
            var = VARIABLES[name]
            assert var.option in param.opts, (where, name)
            assert var.type != "bool", f"{where} {name}: booleans are parsed by settings.parse_bool, not click"
            if param.default is not None and var.default:
                assert _shown(param.default) == var.default, (where, name)
    for var in VARIABLES.values():
        if var.type == "bool" and var.option:
            flags = [p for _, p in options if var.option in p.opts]
            assert flags, var.name
            assert all(var.name in (getattr(p, "help", "") or "") for p in flags), var.name


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KUBEPLAY_")}
    return subprocess.run(
        [str(KUBEPLAY), *args], capture_output=True, text=True, timeout=120, env={**base, **env}, check=False
    )


def test_a_bad_boolean_stops_the_command_with_exit_2_naming_it(tmp_path: Path) -> None:
    proc = run_cli("verify", str(tmp_path), KUBEPLAY_JSON_EVENTS="maybe")
    assert proc.returncode == 2
    assert "KUBEPLAY_JSON_EVENTS='maybe'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_boolean_variable_and_its_option(tmp_path: Path) -> None:
    bundle = str(make_bundle(tmp_path / "bundle"))
    events = run_cli("verify", bundle, KUBEPLAY_JSON_EVENTS="Yes")
    assert events.returncode == 0, events.stderr
    assert json.loads(events.stdout.splitlines()[-1])["ok"] is True  # the `verified` event on stdout
    assert run_cli("verify", bundle, KUBEPLAY_JSON_EVENTS="off").stdout == ""
    # the option wins over the variable
    assert '"verified"' in run_cli("--json-events", "verify", bundle, KUBEPLAY_JSON_EVENTS="0").stdout


# install.sh is shell: it spells the same words out (and is held to them here).
@pytest.mark.skipif(os.geteuid() != 0, reason="requires root (install.sh checks for it first)")
@pytest.mark.parametrize(
    ("value", "code", "says"),
    [
        ("TRUE", 2, "no Python here matches the bundle's wheels"),
        ("on", 2, "no Python here matches the bundle's wheels"),
        ("Off", 1, "does not match SHA256SUMS"),
        ("", 1, "does not match SHA256SUMS"),
        ("maybe", 2, "KUBEPLAY_SKIP_VERIFY='maybe': expected 1/0, true/false, yes/no or on/off"),
    ],
)
def test_install_sh_reads_skip_verify_like_parse_bool(tmp_path: Path, value: str, code: int, says: str) -> None:
    bundle = install_sh_bundle(tmp_path / "bundle")
    (bundle / "config-sample.yaml").write_text("tampered: true\n")  # verifying fails, skipping does not
    proc = run_install_sh(bundle, tmp_path / "venv", KUBEPLAY_SKIP_VERIFY=value)
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr
