"""OpenSSH's allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS): who may sign, for which namespaces.

Each line: `principals [options] keytype base64-key [comment]`; principals are a comma-separated pattern
list (optionally quoted); options are `cert-authority`, `namespaces="pattern,…"`, `valid-after=TIME`,
`valid-before=TIME`. kubeplay matches plain keys (cert-authority lines are read but match no plain key).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from kubeplay.errors import BadInput


@dataclass(frozen=True)
class AllowedSigner:
    """One line of allowed_signers."""

    line: int
    principals: str
    key_type: str
    key_blob: bytes
    namespaces: str | None = None
    cert_authority: bool = False
    valid_after: datetime | None = None
    valid_before: datetime | None = None


def _pattern_matches(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value) is not None


def match_pattern_list(patterns: str, value: str) -> bool:
    """OpenSSH match_pattern_list: comma-separated `*`/`?` patterns; a matching `!pattern` refuses."""
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern.removeprefix("!"), value):
            if negated:
                return False
            matched = True
    return matched


def _parse_time(text: str, where: str) -> datetime:
    value = text.strip('"')
    utc = value.endswith(("Z", "z"))
    digits = value.rstrip("Zz")
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if len(digits) not in formats or not digits.isdigit():
        raise BadInput(f"{where}: time {text!r} is not YYYYMMDD[HHMM[SS]][Z]")
    parsed = datetime.strptime(digits, formats[len(digits)])  # local time unless Z, as OpenSSH reads it
    return parsed.replace(tzinfo=UTC) if utc else parsed.astimezone()


def _take_field(text: str) -> tuple[str, str]:
    """The first whitespace-separated field (double quotes group) and the rest, stripped."""
    quoted = False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char.isspace() and not quoted:
            return text[:index], text[index:].strip()
    return text, ""


def _split_options(text: str) -> list[str]:
    options, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            options.append(current)
            current = ""
        else:
            current += char
    options.append(current)
    return options


def _is_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-", "rsa-"))


def parse_allowed_signers(text: str, origin: str) -> list[AllowedSigner]:
    """Every signer line of an allowed_signers file; BadInput naming `origin:line` for a malformed one."""
    signers: list[AllowedSigner] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{origin}:{number}"
        principals, rest = _take_field(line)
        word, after = _take_field(rest)
        options: dict[str, str | None] = {}
        if word and not _is_key_type(word):
            for option in _split_options(word):
                name, _, value = option.partition("=")
                options[name.lower()] = value.strip('"') if value else None
            word, after = _take_field(after)
        key_b64, _ = _take_field(after)
        if not _is_key_type(word) or not key_b64:
            raise BadInput(f"{where}: expected 'principals [options] keytype base64-key'", hint="see ssh-keygen(1)")
        try:
            blob = base64.b64decode(key_b64, validate=True)
        except ValueError:
            raise BadInput(f"{where}: the key is not valid base64") from None
        unknown = set(options) - {"cert-authority", "namespaces", "valid-after", "valid-before"}
        if unknown:
            raise BadInput(f"{where}: unknown option {sorted(unknown)[0]!r}")
        after_text, before_text = options.get("valid-after"), options.get("valid-before")
        signers.append(
            AllowedSigner(
                line=number,
                principals=principals.strip('"'),
                key_type=word,
                key_blob=blob,
                namespaces=options.get("namespaces"),
                cert_authority="cert-authority" in options,
                valid_after=_parse_time(after_text, where) if after_text else None,
                valid_before=_parse_time(before_text, where) if before_text else None,
            )
        )
    return signers


def find_signer(
    signers: list[AllowedSigner], key_blob: bytes, namespace: str, now: datetime | None = None
) -> tuple[AllowedSigner | None, str]:
    """The line that allows `key_blob` to sign in `namespace` now, or None and why none does."""
    moment = now or datetime.now(UTC)
    same_key = [s for s in signers if s.key_blob == key_blob and not s.cert_authority]
    if not same_key:
        return None, "the key is not listed"
    reasons = []
    for signer in same_key:
        if signer.namespaces is not None and not match_pattern_list(signer.namespaces, namespace):
            reasons.append(f"line {signer.line} allows namespaces {signer.namespaces!r}, not {namespace!r}")
        elif signer.valid_after is not None and moment < signer.valid_after:
            reasons.append(f"line {signer.line} is valid only after {signer.valid_after.isoformat()}")
        elif signer.valid_before is not None and moment > signer.valid_before:
            reasons.append(f"line {signer.line} expired at {signer.valid_before.isoformat()}")
        else:
            return signer, ""
    return None, "; ".join(reasons)
