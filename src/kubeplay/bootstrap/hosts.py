"""Managed blocks between marker lines in files kubeplay shares with others (/etc/hosts, chrony.conf).

Only the lines between `# BEGIN kubeplay` and `# END kubeplay` are ever changed; everything else in the
file is kept byte for byte. Applying the same block twice changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from kubeplay.state import atomic_write

BEGIN = "# BEGIN kubeplay (managed by `kubeplay install`; removed by `kubeplay uninstall`)"
END = "# END kubeplay"


def replace_block(text: str, body: list[str]) -> str:
    """Return `text` with the managed block set to `body` (appended if absent; removed if body is empty)."""
    lines = text.splitlines()
    out: list[str] = []
    inside = False
    placed = False
    block = [BEGIN, *body, END] if body else []
    for line in lines:
        if line.startswith("# BEGIN kubeplay"):
            inside = True
            if not placed:
                out.extend(block)
                placed = True
            continue
        if inside:
            if line.startswith(END):
                inside = False
            continue
        out.append(line)
    if not placed and block:
        out.extend(block)
    return "\n".join(out) + "\n" if out else ""


def hosts_lines(ip: str, domain: str) -> list[str]:
    return [f"{ip} {domain}"]


def other_entries_for(text: str, domain: str) -> list[str]:
    """Lines outside the managed block that also name `domain` (they would shadow or confuse ours)."""
    found: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("# BEGIN kubeplay"):
            inside = True
            continue
        if inside:
            inside = not line.startswith(END)
            continue
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and domain in fields[1:]:
            found.append(line)
    return found


def apply_block(path: Path, body: list[str]) -> bool:
    """Set the managed block in `path`, keeping its mode; return True if the file changed."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    new = replace_block(old, body)
    if new == old:
        return False
    mode = (path.stat().st_mode & 0o777) if path.exists() else 0o644
    try:
        atomic_write(path, new.encode(), mode=mode)
    except OSError:
        # /etc/hosts may be a bind mount (containers): a rename over it fails (EBUSY), so write in place.
        path.write_text(new, encoding="utf-8")
    return True


def has_block(path: Path) -> bool:
    return path.exists() and any(line.startswith("# BEGIN kubeplay") for line in path.read_text().splitlines())
