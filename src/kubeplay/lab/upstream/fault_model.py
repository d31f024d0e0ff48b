"""What each fault does, as data: parsed from a URL path, applied to a response body."""

from __future__ import annotations

from dataclasses import dataclass


def corrupt(data: bytes, offset: int) -> bytes:
    """Flip the first byte of every chunk and every 997th byte: any non-empty body differs from the real one."""
    out = bytearray(data)
    for i in range(len(out)):
        if i == 0 or (offset + i) % 997 == 0:
            out[i] ^= 0xFF
    return bytes(out)


@dataclass(frozen=True)
class BodyFaults:
    cut_after: int | None = None
    rate: int | None = None
    wrong_bytes: bool = False


@dataclass(frozen=True)
class Fault:
    kind: str  # fail, cut, cut-every, slow, corrupt, status
    number: int
    target: str | None = None  # registry only: which GETs get the fault (None: blobs and manifests)

    def applies_to(self, upstream_path: str) -> bool:
        """Whether a registry GET of `upstream_path` (`/v2/<repository>/blobs|manifests/<reference>`) gets it."""
        parts = upstream_path.split("/")
        if len(parts) < 5 or parts[-2] not in ("blobs", "manifests"):
            return False
        section, by_digest = parts[-2], parts[-1].startswith("sha256:")
        if self.target is None:
            return True
        if self.target == "blobs":
            return section == "blobs"
        if section != "manifests":
            return False
        return self.target == "manifests" or (self.target == "digests") == by_digest

    def body_faults(self, nth: int) -> BodyFaults:
        """How the body of the nth request (1-based) for one path misbehaves."""
        if self.kind == "cut-every" or (self.kind == "cut" and nth == 1):
            return BodyFaults(cut_after=self.number)
        if self.kind == "slow":
            return BodyFaults(rate=max(self.number, 1))
        if self.kind == "corrupt":
            return BodyFaults(wrong_bytes=True)
        return BodyFaults()


WITH_NUMBER = ("fail", "cut", "cut-every", "slow", "status")
# A registry fault kind may end in one of these, e.g. `fail-manifests`: only those GETs misbehave.
# tags: manifests by tag; digests: manifests by digest (an index's children, pinned images).
TARGETS = ("manifests", "tags", "digests", "blobs")


def parse_fault(parts: list[str], *, registry: bool = False) -> tuple[Fault | None, list[str]]:
    """`["cut", "1000", "github.com", …]` -> (Fault("cut", 1000), ["github.com", …]).

    File paths write `corrupt` without a number; registry paths always carry one (`corrupt/0`) so that
    every fault prefix is `fault/<kind>/<n>/`, and their kind may name a target (`corrupt-digests`, see
    TARGETS). Raises ValueError for a bad number.
    """
    if not parts:
        return None, []
    kind, target = parts[0], None
    if registry:
        base, _, suffix = kind.rpartition("-")
        if suffix in TARGETS and base:
            kind, target = base, suffix
    if kind == "corrupt" and not registry:
        return Fault(kind, 0), parts[1:]
    if kind not in (*WITH_NUMBER, "corrupt") or len(parts) < 2:
        return None, []
    number = int(parts[1])
    if kind == "status" and not 200 <= number <= 599:
        raise ValueError(f"status {number} is not an HTTP status")
    if number < 0:
        raise ValueError(f"{kind} needs a non-negative number")
    return Fault(kind, number, target), parts[2:]
