"""Offline OS package repositories: upstream indexes, libsolv closures, signed apt and rpm repos."""

from kubeplay.osrepo.build import OsRepoReport, OsRepoTargetReport, build_os_repos

__all__ = ["OsRepoReport", "OsRepoTargetReport", "build_os_repos"]
