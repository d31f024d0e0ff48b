"""Run a playbook through ansible-runner's Python API, unattended, with secrets kept out of sight.

The inventory lives in a persistent directory (kubespray keeps `credentials/` next to it). Secret
variables (SSH and become passwords) go only into 0600 group_vars/host_vars files beside it for the
length of the run and are deleted afterwards; they never reach the command line, the environment, the
event stream (redacted in place), the logs or ansible-runner's artifacts. SSH pipelining and
ControlPersist are on; no TTY is allocated, so nothing can wait for a prompt.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubeplay.console import Output
from kubeplay.deploy.inventory import SECRET_VARS, ClusterInventory
from kubeplay.deploy.progress import Failure, RunDisplay
from kubeplay.errors import Interrupted, StepFailed
from kubeplay.interrupt import POLL_SECONDS, CancelOnSigint
from kubeplay.state import atomic_write

SECRET_FILE = "zz-kubeplay-secrets.yml"  # noqa: S105 - a file name, not a secret
DEFAULT_TIMEOUT = 4 * 3600
SSH_ARGS = (
    "-o ControlMaster=auto -o ControlPersist=30m -o ServerAliveInterval=30 -o ConnectTimeout={connect_timeout} "
    "-o ConnectionAttempts={attempts} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no"
)


@dataclass
class Workspace:
    """Where deploy keeps its state: inventory dir, generated playbooks, logs, runner private data."""

    root: Path
    # Command prefix for ansible-playbook, e.g. ("ip", "netns", "exec", NS) when nodes sit in another namespace.
    exec_prefix: tuple[str, ...] = ()

    @property
    def inventory_dir(self) -> Path:
        return self.root / "inventory"

    @property
    def inventory_file(self) -> Path:
        return self.inventory_dir / "hosts.yaml"

    @property
    def group_vars(self) -> Path:
        return self.inventory_dir / "group_vars" / "all"

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def fact_cache(self) -> Path:
        # One cache for every run: kubespray's `--limit` runs (scale.yml) need the facts of the other hosts.
        return self.root / "facts"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.json"

    def prepare(self) -> None:
        for d in (self.root, self.inventory_dir, self.group_vars, self.playbooks, self.logs, self.runs):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)


@dataclass
class Playbook:
    """One ansible-playbook invocation."""

    label: str
    path: Path
    project_dir: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    kubespray_dir: Path | None = None
    connect_timeout: int = 30
    attempts: int = 3
    timeout: int = DEFAULT_TIMEOUT
    forks: int = 20


@dataclass
class RunResult:
    label: str
    rc: int
    status: str
    failures: list[Failure]
    log: Path
    events: Path
    seconds: float
    hosts: dict[str, dict[str, int]]
    facts: dict[str, dict[str, str]] = field(default_factory=dict)


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).encode()


def write_inventory(ws: Workspace, inv: ClusterInventory, group_vars: dict[str, Any]) -> None:
    """The inventory without secrets, and kubeplay's group vars (offline redirects + config.yaml)."""
    ws.prepare()
    atomic_write(ws.inventory_file, _dump(inv.to_ansible(exclude_vars=SECRET_VARS)), mode=0o600)
    atomic_write(ws.group_vars / "kubeplay.yml", _dump(group_vars), mode=0o600)


def write_secrets(ws: Workspace, inv: ClusterInventory) -> list[Path]:
    """0600 var files holding the secret variables; return their paths (delete them after the run)."""
    top, groups, hosts = inv.secrets()
    files: list[tuple[Path, dict[str, Any]]] = [(ws.group_vars / SECRET_FILE, top)] if top else []
    files += [(ws.inventory_dir / "group_vars" / g / SECRET_FILE, body) for g, body in groups.items()]
    files += [(ws.inventory_dir / "host_vars" / h / SECRET_FILE, body) for h, body in hosts.items()]
    for path, body in files:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, _dump(body), mode=0o600)
    return [path for path, _ in files]


def remove_secrets(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def ansible_env(ws: Workspace, pb: Playbook) -> dict[str, str]:
    """Environment for ansible-playbook: kubespray's ansible.cfg, with our overrides (env beats the cfg)."""
    env = {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": SSH_ARGS.format(connect_timeout=pb.connect_timeout, attempts=pb.attempts),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_TIMEOUT": str(pb.connect_timeout),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_FORKS": str(pb.forks),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_LOCAL_TEMP": str(ws.root / "tmp"),
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "PYTHONUNBUFFERED": "1",
    }
    if pb.kubespray_dir is not None:
        cfg = pb.kubespray_dir / "ansible.cfg"
        if cfg.is_file():
            env["ANSIBLE_CONFIG"] = str(cfg)
        env["ANSIBLE_ROLES_PATH"] = str(pb.kubespray_dir / "roles")
        env["ANSIBLE_LIBRARY"] = str(pb.kubespray_dir / "library")
        env["ANSIBLE_INVENTORY_IGNORE"] = "~,.orig,.bak,.cfg,.retry,.pyc,.pyo,.creds,.gpg"
    return env


def ansible_playbook_binary() -> str:
    """ansible-playbook next to this Python (the bundle's venv), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise StepFailed("ansible-playbook is not installed", hint="install kubeplay with its deploy extra")
    return found


def _no_stdin_wrapper(private: Path, prefix: tuple[str, ...]) -> Path:
    # ansible-runner streams events through a pty; stdin from /dev/null makes any prompt fail fast instead of waiting.
    wrapper = private / "ansible-playbook"
    argv = " ".join(shlex.quote(a) for a in (*prefix, ansible_playbook_binary()))
    body = f'#!/bin/sh\nexec {argv} "$@" </dev/null\n'
    atomic_write(wrapper, body.encode(), mode=0o700)
    return wrapper


def _prune_runs(runs: Path, keep: int = 20) -> None:
    dirs = sorted((d for d in runs.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    for d in dirs[:-keep]:
        shutil.rmtree(d, ignore_errors=True)


def run_playbook(
    ws: Workspace,
    inv: ClusterInventory,
    pb: Playbook,
    out: Output,
    run_fn: Callable[..., Any] | None = None,
) -> RunResult:
    """Run `pb` against the written inventory; return the result (raise nothing for a failed play)."""
    import ansible_runner  # noqa: PLC0415 - ansible is only needed on the deploy node

    ws.prepare()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ident = f"{stamp}-{pb.label}"
    private = ws.runs / ident
    (private / "env").mkdir(parents=True, exist_ok=True)
    if pb.extravars:  # a file, not the command line
        atomic_write(private / "env" / "extravars", json.dumps(pb.extravars).encode(), mode=0o600)
    # how often ansible-runner polls the cancel callback: Ctrl-C stops the play within this
    atomic_write(private / "env" / "settings", json.dumps({"pexpect_timeout": POLL_SECONDS}).encode())
    log_path = ws.logs / f"{ident}.log"
    events_path = ws.logs / f"{ident}.events.jsonl"
    secrets = inv.secret_values()
    secret_files = write_secrets(ws, inv)
    started = time.monotonic()
    cancel = CancelOnSigint()  # Ctrl-C: ansible-runner kills the play's process group, we raise Interrupted
    try:
        with (
            cancel,
            open(log_path, "w", encoding="utf-8") as log,
            open(events_path, "w", encoding="utf-8") as events,
            RunDisplay(pb.label, out, log, events, secrets=secrets) as display,
        ):
            os.chmod(log_path, 0o600)
            os.chmod(events_path, 0o600)
            runner = (run_fn or ansible_runner.run)(
                private_data_dir=str(private),
                project_dir=str(pb.project_dir),
                playbook=str(pb.path),
                cmdline=shlex.quote(str(pb.path)),  # the wrapper binary takes the playbook as an argument
                inventory=str(ws.inventory_file),
                envvars=ansible_env(ws, pb),
                limit=pb.limit,
                tags=pb.tags,
                skip_tags=pb.skip_tags,
                fact_cache=str(ws.fact_cache),
                ident="artifacts",
                event_handler=display.handle,
                quiet=True,
                suppress_output_file=True,
                binary=str(_no_stdin_wrapper(private, ws.exec_prefix)),
                timeout=pb.timeout,
                cancel_callback=cancel,
            )
    finally:
        remove_secrets(secret_files)
        _prune_runs(ws.runs)
    if cancel.requested.is_set():
        raise Interrupted(f"{pb.label}: interrupted, ansible-playbook was stopped; its log is {log_path}")
    stats = {
        host: {"ok": t.ok, "changed": t.changed, "failed": t.failed, "unreachable": t.unreachable}
        for host, t in display.hosts.items()
    }
    return RunResult(
        label=pb.label,
        rc=int(runner.rc if runner.rc is not None else 1),
        status=str(runner.status),
        failures=list(display.failures),
        log=log_path,
        events=events_path,
        seconds=time.monotonic() - started,
        hosts=stats,
        facts=display.facts,
    )


def _log_error(log: Path) -> str:
    """The first `ERROR!` Ansible printed outside any task (a playbook it could not load, say), if any."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.startswith("ERROR!"):
            detail = [x.strip() for x in lines[i : i + 12] if x.strip()]
            return ": " + " | ".join(detail)[:1200]
    return ""


def raise_for_result(result: RunResult, hint: str | None = None) -> None:
    """Raise StepFailed naming the first failing task and host and the full log's path; nothing if rc==0."""
    if result.rc == 0 and result.status == "successful":
        return
    if result.status == "timeout":
        what = "timed out"
    elif result.failures:
        first = result.failures[0]
        kind = "unreachable" if first.unreachable else "failed"
        what = f"task '{first.task}' {kind} on {first.host}: {first.message}"
        others = sorted({f.host for f in result.failures} - {first.host})
        if others:
            what += f" (also failed on {', '.join(others)})"
    else:
        what = f"ansible-playbook exited with {result.rc}" + _log_error(result.log)
    raise StepFailed(
        f"{result.label}: {what}",
        hint=(hint + "; " if hint else "") + f"full log: {result.log}",
    )
