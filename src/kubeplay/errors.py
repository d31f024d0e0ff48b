"""The one exception tree kubeplay raises for expected failures.

The CLI catches `KubeplayError` once and turns it into one red line, an optional hint, and the exit
code the class carries. Every class a user can meet is defined here; the number is its exit code.

    KubeplayError ........................ 1  an expected failure while working
    ├── BadInput ......................... 2  the user's input is wrong; nothing was attempted
    │   ├── ConfigError .................. 2  a config file does not parse or validate
    │   └── CatalogError ................. 2  the kubespray tree or config cannot produce a plan
    │       └── ArchiveDigestMismatch .... 2  the kubespray archive is not the one bundle.yaml names
    ├── FetchError ....................... 1  a download or upload failed (after its retries)
    │   ├── DigestMismatch ............... 1  upstream served other bytes than the digest says
    │   ├── AuthFailed ................... 1  a registry or mirror refused or could not be answered
    │   └── NotUpstream .................. 1  upstream has no such tag, version or requested arch
    ├── BundleError ...................... 1  a bundle is incomplete, tampered with, or unsafe
    │   └── UntrustedBundle .............. 2  unsigned, badly signed, or signed by a key not allowed
    ├── PlanIncomplete ................... 1  templates did not render; the printed plan lacks them
    ├── SigningFailed .................... 1  gpg could not make the repository key or a signature
    ├── StepFailed ....................... 1  a step of install or deploy failed (re-run resumes it)
    │   └── DeployStopped ................ 1  a deploy step failed on a host (carries the reason)
    ├── LabError ......................... 1  the lab could not be brought up or torn down
    │   ├── MachineError ................. 1  a node's container failed to start or stop
    │   ├── RootfsError .................. 1  a node rootfs could not be built or copied
    │   │   └── CacheBusy ................ 1  a rootfs cache entry is locked by another `lab up`
    │   ├── LabStateError ................ 1  the lab state file is missing or unreadable
    │   ├── LabSSHError .................. 1  the lab's SSH key could not be made
    │   ├── LabNetworkError .............. 1  an `ip` command of the lab network failed
    │   └── TeardownRefused .............. 1  removing a recorded item could touch what is not the lab's
    └── Interrupted .................... 130  Ctrl-C (SIGINT): work so far is kept, a re-run resumes

Foreign exceptions (httpx, OSError, subprocess, ansible-runner) are mapped to these where kubeplay calls
the foreign code: a new exception raised `from` the original, never the original changed in flight.
Exceptions private to a package's control flow never reach the user, and stay where they are used:
fetch.retry.TransientError ("try again": the retry loops of fetch and push raise FetchError when they
give up) and the catalog's TemplateFailure, FilterError, FieldProblem and LocationError (an entry that
does not render, or whose URL or image name kubeplay cannot place, becomes a problem the plan lists;
registry_binary.url's LocationError becomes a ConfigError).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubeplay.deploy.limits import StopReason


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


class ArchiveDigestMismatch(CatalogError):
    """The kubespray archive's sha256 is not the one bundle.yaml expects."""


class FetchError(KubeplayError):
    """A download (or a push's upload) failed for good: retries used up, or a fault no retry fixes.

    The message names the reason; the caller adds the URL or item it was working on.
    """


class DigestMismatch(FetchError):
    """Bytes from upstream do not match the expected digest."""


class AuthFailed(FetchError):
    """Authentication was required and could not be satisfied; the message names no secret."""


class NotUpstream(FetchError):
    """Upstream answered, but has not what was asked for: no such tag or version, no requested arch."""


class BundleError(KubeplayError):
    """The bundle is incomplete, tampered with, or unsafe to extract."""


class UntrustedBundle(BundleError):
    """The bundle's SSH signature is missing, does not verify, or its key is not in allowed_signers."""

    exit_code = 2


class PlanIncomplete(KubeplayError):
    """Some templates did not render; the plan printed is missing those entries."""


class SigningFailed(KubeplayError):
    """gpg could not make the bundle key or a signature."""


class StepFailed(KubeplayError):
    """A step of install or deploy failed; its ledger entry stays open so a re-run resumes there."""


class DeployStopped(StepFailed):
    """A deploy step failed on a host; `reason` names the step, task, host and (for containers) the limit."""

    def __init__(self, message: str, hint: str | None, reason: StopReason, log: Path) -> None:
        super().__init__(message, hint)
        self.reason = reason
        self.log = log


class LabError(KubeplayError):
    """The lab could not be brought up or torn down completely."""


class MachineError(LabError):
    """A lab node's container failed to start or to stop."""


class RootfsError(LabError):
    """The lab rootfs could not be built or copied."""


class CacheBusy(RootfsError):
    """A cache entry's lock is held by someone else (a `lab up` building or copying it)."""


class LabStateError(LabError):
    """The lab state file is missing or unreadable."""


class LabSSHError(LabError):
    """The lab's SSH key could not be created."""


class LabNetworkError(LabError):
    """An `ip` command failed while building or tearing down the lab network."""


class TeardownRefused(LabError):
    """A recorded item was not removed because removing it could touch something that is not the lab's."""


class Interrupted(KubeplayError):
    """The user pressed Ctrl-C (SIGINT). What was done is kept; the same command run again resumes.

    Raised in the main thread for the KeyboardInterrupt; fetch workers raise it too once told to stop.
    """

    exit_code = 130

    def __init__(self, message: str, hint: str | None = "run the same command again to resume") -> None:
        super().__init__(message, hint)
