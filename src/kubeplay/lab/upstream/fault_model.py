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


def parse_fault(parts: list[str], *, registry: bool = False) -> tuple[Fault | None, list[str]]:
    """`["cut", "1000", "github.com", …]` -> (Fault("cut", 1000), ["github.com", …]).

    File paths write `corrupt` without a number; registry paths always carry one (`corrupt/0`) so that
    every fault prefix is `fault/<kind>/<n>/`. Raises ValueError for a bad number.
    """
    if not parts:
        return None, []
    kind = parts[0]
    if kind == "corrupt" and not registry:
        return Fault(kind, 0), parts[1:]
    if kind not in (*WITH_NUMBER, "corrupt") or len(parts) < 2:
        return None, []
    number = int(parts[1])
    if kind == "status" and not 200 <= number <= 599:
        raise ValueError(f"status {number} is not an HTTP status")
    if number < 0:
        raise ValueError(f"{kind} needs a non-negative number")
    return Fault(kind, number), parts[2:]
