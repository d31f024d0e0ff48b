"""Offline OS package repositories: upstream indexes, libsolv closures, signed apt and rpm repos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeplay.osrepo.build import OsRepoReport, OsRepoTargetReport, build_os_repos

__all__ = ["OsRepoReport", "OsRepoTargetReport", "build_os_repos"]


def __getattr__(name: str) -> Any:
    # Lazy: the builder pulls in libsolv and createrepo_c (kubeplay[build]); `kubeplay baseline` and the
    # deploy node import parts of this package without them.
    if name in __all__:
        from kubeplay.osrepo import build  # noqa: PLC0415

        return getattr(build, name)
    raise AttributeError(name)
