"""Dependency closure with libsolv: install the requested packages on top of a baseline system.

The solver is libsolv (the one behind dnf and zypper). This module only loads indexes into a pool,
marks the baseline as installed, turns the request into jobs, and reads the transaction back.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kubeplay.errors import BadInput
from kubeplay.osrepo.apt_policy import first_alternatives, same_source_upgrades
from kubeplay.osrepo.solv_binding import solv_for

Family = Literal["apt", "rpm"]


@dataclass(frozen=True)
class Installed:
    """A package on the baseline system."""

    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class Chosen:
    """A package the closure needs: its identity and the repo (by key) and location it comes from."""

    name: str
    version: str
    arch: str
    repo_key: str
    location: str
    checksum: tuple[str, str] | None  # (algorithm, hex)
    size: int | None


@dataclass
class ClosureRequest:
    family: Family
    arch: str  # solver arch: amd64/arm64 for apt, x86_64/aarch64 for rpm
    label: str  # "debian 12 amd64", used in messages
    requested: list[str]  # names the user asked for: unknown ones are errors
    optional: list[str] = field(default_factory=list)  # defaults: unknown ones are skipped
    recommends: bool = False
    baseline: list[Installed] = field(default_factory=list)
    disabled: Callable[[Any], bool] | None = None  # solvables to hide (rpm modular filtering)


@dataclass
class ClosureResult:
    packages: list[Chosen]
    skipped: list[str]  # optional names absent from the indexes


# Dependency kinds copied from an index solvable onto its baseline twin.
_DEP_KEYS = ("SOLVABLE_PROVIDES", "SOLVABLE_REQUIRES", "SOLVABLE_CONFLICTS", "SOLVABLE_OBSOLETES")


def new_pool(family: Family, arch: str) -> tuple[Any, Any]:
    """(solv module, pool) for the family's version semantics and the arch's compatible arches."""
    solv = solv_for(family)
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_DEB if family == "apt" else solv.Pool.DISTTYPE_RPM)
    pool.setarch(arch)
    return solv, pool


def load_repo(pool: Any, solv: Any, key: str, path: Path, family: Family) -> Any:
    """Add one index file (plain Packages text, or primary.xml[.gz]) as repo `key`."""
    repo = pool.add_repo(key)
    f = solv.xfopen(str(path))
    if f is None:
        raise BadInput(f"cannot open index {path}")
    ok = repo.add_debpackages(f, 0) if family == "apt" else repo.add_rpmmd(f, None, 0)
    f.close()
    if not ok:
        raise BadInput(f"cannot parse index {path}: {pool.errstr}")
    repo.internalize()
    return repo


def _add_baseline(pool: Any, solv: Any, baseline: list[Installed]) -> None:
    """Mark the baseline installed: twin each entry on its index package (same version if there, else newest)."""
    installed = pool.add_repo("@baseline")
    by_name: dict[str, list[Any]] = {}
    for s in pool.solvables_iter():
        by_name.setdefault(s.name, []).append(s)
    for entry in baseline:
        cands = by_name.get(entry.name, [])
        exact = [s for s in cands if s.evr == entry.version]
        src = exact[0] if exact else (max(cands, key=_EvrKey) if cands else None)
        new = installed.add_solvable()
        new.name, new.evr = entry.name, entry.version
        new.arch = entry.arch or (src.arch if src is not None else "noarch")
        if src is not None:
            for keyname in _DEP_KEYS:
                for dep in src.lookup_deparray(getattr(solv, keyname)):
                    if keyname == "SOLVABLE_PROVIDES" and dep.str().split(" ")[0] == entry.name:
                        continue  # the self-provide carries the index version; add ours below
                    new.add_deparray(getattr(solv, keyname), dep)
        new.add_deparray(solv.SOLVABLE_PROVIDES, pool.Dep(entry.name).Rel(solv.REL_EQ, pool.Dep(entry.version)))
    installed.internalize()
    pool.installed = installed


class _EvrKey:
    """Sort solvables by version with the pool's own comparison."""

    def __init__(self, s: Any) -> None:
        self.s = s

    def __lt__(self, other: _EvrKey) -> bool:
        return bool(self.s.evrcmp(other.s) < 0)


def _closest(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=4, cutoff=0.7)
    return f"closest names: {', '.join(close)}" if close else "no similar names"


def _job_for(solv: Any, pool: Any, spec: str, req: ClosureRequest, *, names: set[str], optional: bool) -> Any:
    """One install job for "name" or "name=version"; None for an absent optional name; BadInput otherwise."""
    name, _, version = spec.partition("=")
    name = name.strip()
    where = f"{req.label}"
    if name in names:
        if not version:
            return pool.Job(solv.Job.SOLVER_SOLVABLE_NAME | solv.Job.SOLVER_INSTALL, pool.str2id(name))
        dep = pool.Dep(name).Rel(solv.REL_EQ, pool.Dep(version.strip()))
        if not [s for s in pool.whatprovides(dep) if s.name == name]:
            versions = sorted({s.evr for s in pool.solvables_iter() if s.name == name})
            raise BadInput(
                f"package {name} has no version {version} for {where}", hint=f"available: {', '.join(versions)}"
            )
        return pool.Job(solv.Job.SOLVER_SOLVABLE_NAME | solv.Job.SOLVER_INSTALL, dep.id)
    providers = sorted({s.name for s in pool.whatprovides(pool.Dep(name)) if s.repo != pool.installed})
    if providers and (req.family == "rpm" or len(providers) == 1):
        dep = pool.Dep(name)
        return pool.Job(solv.Job.SOLVER_SOLVABLE_PROVIDES | solv.Job.SOLVER_INSTALL, dep.id)
    if providers:
        raise BadInput(
            f"package {name} for {where} is a virtual package provided by {', '.join(providers)}",
            hint="list the one you want explicitly (apt would refuse to choose, too)",
        )
    if optional:
        return None
    raise BadInput(f"unknown package {name!r} for {where}", hint=_closest(name, names))


def _problems_text(problems: list[Any]) -> str:
    lines = []
    for i, problem in enumerate(problems, 1):
        lines.append(f"problem {i}: {problem}")
        for rule in problem.findallproblemrules():
            for info in rule.allinfos():
                text = info.problemstr()
                if text and f"  - {text}" not in lines:
                    lines.append(f"  - {text}")
    return "\n".join(lines)


def _apply_apt_policy(solv: Any, pool: Any, solver: Any, jobs: list[Any], new: list[Any]) -> list[Any]:
    """Re-solve with apt's preferences (first alternatives, same-source upgrades) until nothing changes."""
    kept: dict[tuple[int, int], Any] = {}
    for _ in range(6):
        fresh: dict[tuple[int, int], Any] = {}
        for s in first_alternatives(pool, solv, new):
            if (s.id, 0) not in kept:
                fresh[(s.id, 0)] = pool.Job(solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_FAVOR, s.id)
        for s in same_source_upgrades(pool, solv, new):
            if (s.id, 1) not in kept:
                flags = solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_WEAK
                fresh[(s.id, 1)] = pool.Job(flags, s.id)
        if not fresh:
            break
        if solver.solve(jobs + list(kept.values()) + list(fresh.values())):
            break  # apt's preference cannot hold here; libsolv's own answer stands
        kept |= fresh
        new = list(solver.transaction().newsolvables())
    solver.solve(jobs + list(kept.values()))
    return list(solver.transaction().newsolvables())


def resolve_closure(req: ClosureRequest, repos: list[tuple[str, Path]]) -> ClosureResult:
    """The packages to bundle so that `req` installs on top of its baseline; BadInput on unknown/unsatisfiable."""
    solv, pool = new_pool(req.family, req.arch)
    for key, path in repos:
        load_repo(pool, solv, key, path, req.family)
    pool.addfileprovides()
    _add_baseline(pool, solv, req.baseline)
    pool.createwhatprovides()
    if req.disabled is not None:
        hidden = [s.id for s in pool.solvables_iter() if s.repo != pool.installed and req.disabled(s)]
        if hidden:
            pool.set_disabled_list(hidden)
            pool.createwhatprovides()
    names = {s.name for s in pool.solvables_iter() if s.repo != pool.installed and s.installable()}
    jobs = []
    skipped = []
    for spec, optional in [(r, False) for r in req.requested] + [(o, True) for o in req.optional]:
        job = _job_for(solv, pool, spec, req, names=names, optional=optional)
        if job is None:
            skipped.append(spec)
        else:
            jobs.append(job)
    solver = pool.Solver()
    solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 0 if req.recommends else 1)
    problems = solver.solve(jobs)
    if problems:
        raise BadInput(
            f"the requested packages cannot be installed together on {req.label}:\n{_problems_text(problems)}",
            hint="drop or pin the package named in the problem, or fix the baseline",
        )
    new = list(solver.transaction().newsolvables())
    if req.family == "apt":
        new = _apply_apt_policy(solv, pool, solver, jobs, new)
    chosen = []
    for s in new:
        location, _media = s.lookup_location()
        chk = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
        size = s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE)
        chosen.append(
            Chosen(
                name=s.name,
                version=s.evr,
                arch=s.arch,
                repo_key=s.repo.name,
                location=location or "",
                checksum=(chk.typestr(), chk.hex()) if chk is not None else None,
                size=int(size) if size else None,
            )
        )
    chosen.sort(key=lambda c: (c.name, c.arch))
    return ClosureResult(chosen, skipped)
