"""ansible-runner's event stream, turned into a live table on the Output, a JSON event log and a plain full log.

Every event is redacted in place before anything sees it (ansible-runner writes the same dict to its
artifacts afterwards), so a secret never reaches the screen, the logs or the artifacts directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import IO, Any

from kubeplay.console import LiveTable, Output, Table

REDACTED = "********"
FACT_PREFIX = "kubeplay fact:"
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_item_on_failed": "item_failed",
}


def redact(value: Any, secrets: list[str]) -> Any:
    """`value` with every secret string replaced; dicts and lists are changed in place and returned."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        for key in list(value):
            value[key] = redact(value[key], secrets)
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = redact(item, secrets)
        return value
    return value


def result_message(res: Any) -> str:
    """The one line that says why a task failed or a host was unreachable."""
    if not isinstance(res, dict):
        return str(res)
    parts = []
    for key in ("msg", "reason", "stderr", "module_stderr", "stdout"):
        text = res.get(key)
        if isinstance(text, str) and text.strip():
            parts.append(text.strip())
            break
    # "non-zero return code" / "MODULE FAILURE" say nothing: the command's own words follow.
    if parts and parts[0].startswith(("non-zero return code", "MODULE FAILURE")):
        for key in ("stderr", "module_stderr", "stdout", "module_stdout"):
            text = res.get(key)
            if isinstance(text, str) and text.strip():
                parts[0] = f"{parts[0]}: {text.strip()}"
                break
    results = res.get("results")
    if isinstance(results, list) and (not parts or parts[0].startswith("One or more items failed")):
        for item in results:  # a loop's own summary says nothing: the first failed item says why
            if isinstance(item, dict) and item.get("failed"):
                why = result_message(item)
                parts = [f"{parts[0]}; first: {_item_label(item)}{why}" if parts else why]
                break
    message = parts[0] if parts else json.dumps(res, default=str)[:300]
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) > 6:  # Ansible puts the cause first and the command's last words last
        lines = [*lines[:4], "...", *lines[-2:]]
    return " | ".join(lines)[:1500]


def _item_label(item: dict[str, Any]) -> str:
    value = item.get("item")
    if isinstance(value, dict):
        value = value.get("name", value.get("key", ""))
    return f"{value}: " if isinstance(value, str | int) and str(value) else ""


@dataclass
class HostTally:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class Failure:
    host: str
    task: str
    play: str
    message: str
    unreachable: bool
    action: str = ""  # the module, e.g. ansible.posix.sysctl


@dataclass
class RunDisplay:
    """Consumes ansible-runner events: live table on a terminal, a line per play otherwise, and two logs."""

    label: str
    out: Output
    log: IO[str]
    events: IO[str]
    secrets: list[str] = field(default_factory=list)
    hosts: dict[str, HostTally] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    # host -> {task: stdout} for tasks named "kubeplay fact: ..." (what preflight learns about each node)
    facts: dict[str, dict[str, str]] = field(default_factory=dict)
    play: str = ""
    task: str = ""
    tasks_seen: int = 0
    started: float = field(default_factory=time.monotonic)
    _live: LiveTable | None = None

    def __enter__(self) -> RunDisplay:
        live = self.out.live_table(self._render())
        if live.active:
            self._live = live.__enter__()
        else:
            self.out.heading(self.label)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
        if not self.out.quiet:
            self.out.table(self.recap())

    def _render(self) -> Table:
        table = Table(
            columns=("host", "ok", "changed", "failed", "unreachable"),
            title=f"{self.label} — {self.play or 'starting'}",
            caption=f"task: {self.task}" if self.task else None,
            right=frozenset({"ok", "changed", "failed", "unreachable"}),
        )
        for host, t in sorted(self.hosts.items()):
            table.add(host, t.ok, t.changed, t.failed, t.unreachable)
        return table

    def recap(self) -> Table:
        table = self._render()
        table.title = f"{self.label} — {time.monotonic() - self.started:.0f}s, {self.tasks_seen} tasks"
        table.caption = None
        return table

    def handle(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: redact in place, display, log; True keeps the (redacted) event."""
        redact(event, self.secrets)
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        stdout = event.get("stdout")
        if isinstance(stdout, str) and stdout:
            self.log.write(stdout + "\n")
            self.log.flush()
        record: dict[str, Any] | None = None
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play") or data.get("name") or "")
            record = {"play": self.play}
            if self._live is None:
                self.out.info(f"  play: {self.play}")
        elif kind == "playbook_on_task_start":
            self.task = str(data.get("task") or "")
            self.tasks_seen += 1
            record = {"play": self.play, "task": self.task}
        elif kind in _RESULT_EVENTS:
            record = self._result(kind, data)
        elif kind == "playbook_on_stats":
            record = {key: data.get(key) for key in ("ok", "changed", "failures", "dark", "skipped")}
        if record is not None:
            line = {"time": event.get("created"), "run": self.label, "event": kind, **record}
            self.events.write(json.dumps(line, default=str) + "\n")
            self.events.flush()
            if kind != "playbook_on_task_start":
                self.out.event("ansible", **{k: v for k, v in line.items() if k != "event"}, ansible_event=kind)
        if self._live is not None:
            self._live.update(self._render())
        return True

    def _result(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        host = str(data.get("host") or "?")
        tally = self.hosts.setdefault(host, HostTally())
        res = data.get("res") or {}
        status = _RESULT_EVENTS[kind]
        ignored = bool(data.get("ignore_errors"))
        if status == "ok":
            task = str(data.get("task") or self.task)
            if task.startswith(FACT_PREFIX) and isinstance(res, dict):
                self.facts.setdefault(host, {})[task] = str(res.get("stdout") or "")
            if isinstance(res, dict) and res.get("changed"):
                tally.changed += 1
            else:
                tally.ok += 1
        elif status == "skipped":
            tally.skipped += 1
        elif status == "unreachable":
            tally.unreachable += 1
        elif status == "failed" and not ignored:
            tally.failed += 1
        record: dict[str, Any] = {"play": self.play, "task": str(data.get("task") or self.task), "host": host}
        record["status"] = "changed" if status == "ok" and isinstance(res, dict) and res.get("changed") else status
        if status in ("failed", "unreachable") and not ignored:
            message = result_message(res)
            record["message"] = message
            action = str(data.get("task_action") or "")
            self.failures.append(Failure(host, record["task"], self.play, message, status == "unreachable", action))
            if not self.out.quiet and self._live is None:
                self.out.mark("failed", f"{status} {host}: {record['task']}: {message}")
        return record
