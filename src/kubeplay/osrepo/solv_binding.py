"""Which libsolv binding to use: the PyPI `solv` module, or Debian's python3-solv for apt targets.

The PyPI wheel is built without Debian support (setdisttype(DISTTYPE_DEB) fails, no add_debpackages),
so apt targets fall back to Debian's python3-solv when its extension matches this interpreter.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from kubeplay.errors import BadInput

DEBIAN_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
_loaded: dict[str, ModuleType] = {}


def _supports(mod: Any, family: str) -> bool:
    pool = mod.Pool()
    if family == "rpm":
        return bool(pool.setdisttype(mod.Pool.DISTTYPE_RPM) != -1)
    repo = pool.add_repo("probe")
    return bool(pool.setdisttype(mod.Pool.DISTTYPE_DEB) != -1 and hasattr(repo, "add_debpackages"))


def _debian_solv() -> ModuleType | None:
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    exts = sorted(DEBIAN_DIST_PACKAGES.glob(f"_solv.{tag}-*.so"))
    wrapper = DEBIAN_DIST_PACKAGES / "solv.py"
    if not exts or not wrapper.is_file():
        return None
    if "_solv" not in sys.modules:
        loader = importlib.machinery.ExtensionFileLoader("_solv", str(exts[0]))
        ext_spec = importlib.util.spec_from_loader("_solv", loader)
        if ext_spec is None:
            return None
        ext = importlib.util.module_from_spec(ext_spec)
        loader.exec_module(ext)
        sys.modules["_solv"] = ext
    spec = importlib.util.spec_from_file_location("kubeplay_debian_solv", wrapper)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def solv_for(family: str) -> Any:
    """The libsolv module able to resolve `family` ("apt" or "rpm"); BadInput saying what to install if none."""
    if family in _loaded:
        return _loaded[family]
    import solv  # noqa: PLC0415 - imported lazily: only builds with OS targets need libsolv

    candidates: list[Any] = [solv]
    if family == "apt":
        try:
            deb = _debian_solv()
        except (ImportError, OSError):
            deb = None
        if deb is not None:
            candidates.append(deb)
    for mod in candidates:
        if _supports(mod, family):
            _loaded[family] = mod
            return mod
    raise BadInput(
        "the installed libsolv cannot resolve Debian packages (the PyPI `solv` wheel lacks Debian support)",
        hint="apt-get install python3-solv (Debian's build, same Python minor version as kubeplay's venv)",
    )
