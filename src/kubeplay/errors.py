"""The one exception tree kubeplay raises for expected failures.

The CLI catches `KubeplayError` once and turns it into one red line, an optional hint, and the
exit code the class carries: 2 for bad input (nothing was attempted), 1 for a failure while working.
"""

from __future__ import annotations


class KubeplayError(Exception):
    """An expected failure with a message for the operator and an optional hint on what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class BadInput(KubeplayError):
    """The user's input is wrong: a config key, a version, a path. Nothing has been changed."""

    exit_code = 2


class ConfigError(BadInput):
    """A configuration file failed to parse or validate; the message names file and field path."""


class CatalogError(BadInput):
    """The kubespray tree or the requested configuration cannot produce a plan."""


class FetchError(KubeplayError):
    """A download failed after its retries; the message names the URL and the reason."""


class DigestMismatch(FetchError):
    """Bytes from upstream do not match the expected digest."""


class BundleError(KubeplayError):
    """The bundle is incomplete, tampered with, or unsafe to extract."""


class StepFailed(KubeplayError):
    """A step of install or deploy failed; its ledger entry stays open so a re-run resumes there."""
