"""apt's choices, expressed as extra libsolv jobs, so the closure is the set apt itself would install.

libsolv decides every dependency; these functions only read its answer and say where apt would have
chosen differently:
- `a | b`: apt installs the first alternative that can be installed, unless one is already satisfied;
- installing a binary of a newer source version upgrades the installed binaries of that same source
  (apt's Upgrade-By-Source-Package), when that version is available.
"""

from __future__ import annotations

import re
from typing import Any

_OPS = {"<": ("REL_LT",), "<<": ("REL_LT",), "<=": ("REL_LT", "REL_EQ"), "=": ("REL_EQ",)}
_OPS |= {">": ("REL_GT",), ">>": ("REL_GT",), ">=": ("REL_GT", "REL_EQ")}
_ALT = re.compile(r"^\s*(\S+)(?:\s+(<<|<=|>=|>>|<|>|=)\s+(\S+))?\s*$")


def _dep(pool: Any, solv: Any, text: str) -> Any:
    m = _ALT.match(text)
    if m is None:
        return None
    name, op, evr = m.groups()
    dep = pool.Dep(name)
    if op:
        flags = 0
        for flag in _OPS[op]:
            flags |= getattr(solv, flag)
        dep = dep.Rel(flags, pool.Dep(evr))
    return dep


def first_alternatives(pool: Any, solv: Any, new: list[Any]) -> list[Any]:
    """Solvables apt would pick for the dependencies of `new` where libsolv picked another provider.

    apt satisfies `a | b` with the first alternative that can be installed, and a plain `a` with the
    real package named `a` before any package that merely Provides it.
    """
    chosen_ids = {s.id for s in new}
    installed = pool.installed
    favors: dict[int, Any] = {}
    for s in new:
        for req in s.lookup_deparray(solv.SOLVABLE_REQUIRES):
            alts = [d for d in (_dep(pool, solv, a) for a in req.str().split(" | ")) if d is not None]
            providers = [list(pool.whatprovides(d)) for d in alts]
            if any(p.repo == installed for ps in providers for p in ps):
                continue  # already satisfied on the baseline: apt changes nothing
            for alt, ps in zip(alts, providers, strict=True):
                if not ps:
                    continue  # nothing can satisfy this alternative: apt tries the next
                named = [p for p in ps if p.name == alt.str().split(" ")[0]]
                candidates = named or ps
                if not any(p.id in chosen_ids for p in candidates):
                    pick = pool.best_solvables(candidates)
                    if pick:
                        favors[pick[0].id] = pick[0]
                break
    return list(favors.values())


def same_source_upgrades(pool: Any, solv: Any, new: list[Any]) -> list[Any]:
    """Newer versions of installed binaries that share a source and version with a package in `new`."""
    installed = pool.installed
    if installed is None:
        return []
    sources: dict[tuple[str, str], None] = {}
    for s in new:
        src_name = s.lookup_str(solv.SOLVABLE_SOURCENAME) or s.name
        src_evr = s.lookup_str(solv.SOLVABLE_SOURCEEVR) or s.evr
        sources[(src_name, src_evr)] = None
    new_names = {s.name for s in new}
    by_source: dict[str, list[Any]] = {}
    for s in installed.solvables_iter():
        if s.name in new_names:
            continue
        # baseline twins carry no source; their index namesakes do
        twin = next((t for t in pool.whatprovides(pool.Dep(s.name)) if t.name == s.name and t.repo != installed), None)
        src_name = (twin.lookup_str(solv.SOLVABLE_SOURCENAME) if twin is not None else None) or s.name
        by_source.setdefault(src_name, []).append(s)
    upgrades = []
    for src_name, src_evr in sources:
        for inst in by_source.get(src_name, []):
            for cand in pool.whatprovides(pool.Dep(inst.name)):
                if (
                    cand.name == inst.name
                    and cand.repo != installed
                    and cand.evrcmp(inst) > 0
                    and (cand.lookup_str(solv.SOLVABLE_SOURCEEVR) or cand.evr) == src_evr
                ):
                    upgrades.append(cand)
    return upgrades
