"""`wheels/`: kubeplay and everything it and kubespray need on the deploy node, as binary wheels.

For every (Python version, arch) the deploy node may have, `pip download --only-binary=:all:` resolves
kubeplay's own wheel (built from the source tree), ansible-runner, ansible-core in the range kubespray's
playbooks/ansible_version.yml accepts, and kubespray's requirements.txt into a shared download cache.
A second, offline resolution (`--no-index --find-links <cache>`) then copies exactly the wheels that set
needs into the bundle: it is the same resolution the deploy node will do, so a bundle that builds also
installs. Each target gets `requirements-<cpXY>-<machine>.txt` with every wheel pinned by version and
sha256, so `pip install --require-hashes` on the deploy node accepts nothing else.

kubespray's requirements.txt pins the `ansible` community package (about 50 MB, pure Python): it is
kept, because kubespray's roles use collections from it (ansible.utils, community.general, ...) and
that pin is the combination kubespray's CI tests. It is one wheel shared by every target.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay import settings
from kubeplay.errors import BadInput, BundleError

WHEELS_DIR = "wheels"
DEFAULT_PYTHONS: tuple[str, ...] = ("3.11", "3.12")
FALLBACK_ANSIBLE_CORE = ">=2.18,<2.19"
RUNNER_REQUIREMENT = "ansible-runner>=2.4"
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
# glibc 2.28 covers RHEL/Rocky/Alma 8+, Debian 10+, Ubuntu 20.04+; older tags are accepted as well.
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
PIP_TIMEOUT = 1800

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)


@dataclass(frozen=True)
class WheelTarget:
    """One deploy-node flavour: a CPython version and a kubeplay arch name."""

    python: str
    arch: str

    @property
    def cp(self) -> str:
        major, minor = self.python.split(".")[:2]
        return f"cp{major}{minor}"

    @property
    def machine(self) -> str:
        return MACHINES[self.arch]

    @property
    def tag(self) -> str:
        """`cp311-x86_64`: what install.sh computes on the deploy node to pick its requirements file."""
        return f"{self.cp}-{self.machine}"

    def pip_platform_args(self) -> list[str]:
        args: list[str] = []
        for platform in MANYLINUX:
            args += ["--platform", f"{platform}_{self.machine}"]
        args += ["--python-version", self.python, "--implementation", "cp"]
        for abi in (self.cp, "abi3", "none"):
            args += ["--abi", abi]
        return args


def targets_for(arches: Sequence[str], pythons: Sequence[str] = DEFAULT_PYTHONS) -> list[WheelTarget]:
    """Every (python, arch) pair; raise BadInput for an arch or Python version wheels cannot be fetched for."""
    for arch in arches:
        if arch not in MACHINES:
            raise BadInput(f"no wheel platform for arch {arch!r}", hint=f"supported: {', '.join(MACHINES)}")
    for python in pythons:
        if not re.fullmatch(r"3\.\d+", python) or int(python.split(".")[1]) < 11:
            raise BadInput(f"python version {python!r}: kubeplay needs CPython 3.11 or newer", hint="e.g. 3.11")
    return [WheelTarget(p, a) for a in arches for p in pythons]


def _find_vars(node: Any, keys: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str | int | float):
                found[key] = str(value)
            else:
                found.update(_find_vars(value, keys))
    elif isinstance(node, list):
        for item in node:
            found.update(_find_vars(item, keys))
    return found


def ansible_core_range(kubespray_dir: Path) -> str:
    """`>=min,<max` from kubespray's playbooks/ansible_version.yml, or the fallback when it is absent."""
    path = kubespray_dir / "playbooks" / "ansible_version.yml"
    if not path.is_file():
        return FALLBACK_ANSIBLE_CORE
    try:
        found = _find_vars(
            yaml.safe_load(path.read_text(encoding="utf-8")), ("minimal_ansible_version", "maximal_ansible_version")
        )
    except yaml.YAMLError:
        return FALLBACK_ANSIBLE_CORE
    low, high = found.get("minimal_ansible_version"), found.get("maximal_ansible_version")
    if not low or not high or "{" in low + high:
        return FALLBACK_ANSIBLE_CORE
    # kubespray's check is `>= minimal` and `< maximal` (exclusive), so the pip range says the same.
    return f">={low},<{high}"


def kubespray_requirements(kubespray_dir: Path) -> list[str]:
    """Requirement lines of kubespray's requirements.txt (comments and pip options dropped)."""
    path = kubespray_dir / "requirements.txt"
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(line)
    return out


def find_source_tree() -> Path | None:
    """The kubeplay source tree this code runs from (a checkout or editable install), or None."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'(?m)^name\s*=\s*"kubeplay"', pyproject.read_text(encoding="utf-8")):
        return root
    return None


def _fail(what: str, proc: subprocess.CompletedProcess[str], hint: str) -> BundleError:
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
    return BundleError(f"{what} failed (exit {proc.returncode}):\n{tail}", hint=hint)


def build_kubeplay_wheel(out_dir: Path, source: Path | None = None, run: Runner = run_pip) -> Path:
    """Build kubeplay's wheel from its source tree into `out_dir`; return the wheel's path.

    `KUBEPLAY_WHEEL` names a ready wheel instead (for a kubeplay installed from a wheel, with no tree).
    """
    wheel = settings.from_environ().kubeplay_wheel
    if wheel:
        if not wheel.is_file() or not wheel.name.startswith("kubeplay-") or wheel.suffix != ".whl":
            raise BadInput(f"{settings.WHEEL}={wheel}: not a kubeplay wheel file")
        return wheel
    tree = source or find_source_tree()
    if tree is None:
        raise BundleError(
            "cannot find kubeplay's source tree to build the wheel the deploy node installs",
            hint=f"run kubeplay from a source checkout, or set {settings.WHEEL} to a kubeplay .whl file",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("kubeplay-*.whl"):
        old.unlink()
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir), str(tree)])
    wheels = sorted(out_dir.glob("kubeplay-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise _fail("building the kubeplay wheel", proc, "check that the source tree builds: pip wheel .")
    return wheels[0]


def wheel_name_version(filename: str) -> tuple[str, str]:
    """Project name (normalised) and version from a wheel file name."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5 or not filename.endswith(".whl"):
        raise BundleError(f"{filename}: not a wheel file name")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def requirements_text(wheels: Sequence[Path]) -> str:
    """A hash-pinned requirements file naming exactly `wheels` (one line per project, all its hashes)."""
    by_project: dict[tuple[str, str], list[str]] = {}
    for wheel in wheels:
        by_project.setdefault(wheel_name_version(wheel.name), []).append(_sha256(wheel))
    lines = []
    for (name, version), digests in sorted(by_project.items()):
        hashes = " ".join(f"--hash=sha256:{d}" for d in sorted(set(digests)))
        lines.append(f"{name}=={version} {hashes}\n")
    return "".join(lines)


@dataclass
class WheelsResult:
    """What landed in `wheels/`: the files, and the requirements file written for each target tag."""

    wheels: list[Path] = field(default_factory=list)
    requirements: dict[str, Path] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.wheels)


def _pip_download(target: WheelTarget, requirements: list[str], dest: Path, cache: Path, offline: bool) -> list[str]:
    args = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--only-binary=:all:"]
    args += [*target.pip_platform_args(), "-d", str(dest), "--find-links", str(cache)]
    if offline:
        args.append("--no-index")
    return args + requirements


def download_wheels(
    bundle_dir: Path,
    targets: Sequence[WheelTarget],
    *,
    kubespray_dir: Path | None = None,
    cache_dir: Path | None = None,
    kubeplay_wheel: Path | None = None,
    run: Runner = run_pip,
) -> WheelsResult:
    """Fill `bundle_dir/wheels/` for every target; raise BundleError naming the target pip could not satisfy."""
    kubespray_dir = kubespray_dir or bundle_dir / "kubespray"
    cache = (cache_dir or settings.from_environ().cache.wheels).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    wheels_dir = bundle_dir / WHEELS_DIR
    wheels_dir.mkdir(parents=True, exist_ok=True)
    # Each build makes kubeplay's wheel in a directory of its own: builds running at the same time share
    # the cache, and one must not delete the wheel another is installing from.
    with tempfile.TemporaryDirectory(prefix="kubeplay-build-", dir=cache) as build_dir:
        own = kubeplay_wheel or build_kubeplay_wheel(Path(build_dir))
        return _download_for_targets(wheels_dir, targets, own, kubespray_dir, cache, run)


def _download_for_targets(
    wheels_dir: Path,
    targets: Sequence[WheelTarget],
    own: Path,
    kubespray_dir: Path,
    cache: Path,
    run: Runner,
) -> WheelsResult:
    wanted = [
        str(own),
        "pip",
        RUNNER_REQUIREMENT,
        f"ansible-core{ansible_core_range(kubespray_dir)}",
        *kubespray_requirements(kubespray_dir),
    ]
    result = WheelsResult()
    keep: set[str] = set()
    for target in targets:
        proc = run(_pip_download(target, wanted, cache, cache, offline=False))
        if proc.returncode != 0:
            raise _fail(
                f"pip download for Python {target.python} on {target.machine}",
                proc,
                "every dependency needs a binary wheel for that platform; check the versions pinned above",
            )
        with tempfile.TemporaryDirectory(prefix="kubeplay-wheels-") as tmp:
            proc = run(_pip_download(target, wanted, Path(tmp), cache, offline=True))
            if proc.returncode != 0:
                raise _fail(f"offline resolution for Python {target.python} on {target.machine}", proc, "")
            chosen = sorted(Path(tmp).glob("*.whl"))
            for wheel in chosen:
                final = wheels_dir / wheel.name
                if not final.exists() or final.stat().st_size != wheel.stat().st_size:
                    shutil.copyfile(wheel, final)
                keep.add(wheel.name)
            req = wheels_dir / f"requirements-{target.tag}.txt"
            req.write_text(requirements_text([wheels_dir / w.name for w in chosen]), encoding="utf-8")
            result.requirements[target.tag] = req
    for stale in [*wheels_dir.glob("*.whl"), *wheels_dir.glob("requirements-*.txt")]:
        if stale.name not in keep and stale not in result.requirements.values():
            stale.unlink()
    result.wheels = sorted(wheels_dir / name for name in keep)
    return result
