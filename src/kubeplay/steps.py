"""The one step runner: install, deploy, the day-2 commands and upgrade are each a list of steps run here.

A step is data: a name, a one-line summary, a function hashing what it reads (None: it runs every time)
and a function doing it, which returns one line saying what it did. The runner owns everything around
them, the same for every command:

- skip-if-done: a step whose hash matches the ledger is skipped; a changed input runs it again;
- the ledger: a step's entry is removed before it runs and written after it succeeds, so a failed or
  interrupted step stays open and running the same command again resumes there;
- `--from STEP` forgets STEP and every step after it, `--only STEP` runs just that step (done or not),
  `--to STEP` stops after it, and an unknown name is refused with the same words everywhere;
- checks (preflight) run once, right before the first step with work to do, whatever the selection,
  and not at all when nothing is to be done;
- one line per step on the Output (`Output.mark`) and one JSON event per change of state (README:
  "Steps and events (`--json-events`)").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from kubeplay.console import Output, Table
from kubeplay.errors import BadInput, Interrupted, KubeplayError
from kubeplay.state import Ledger

C = TypeVar("C")

ALWAYS = "always"  # the ledger hash of a step without inputs: recorded so `status` can say when it ran
DONE_EARLIER = "done earlier, inputs unchanged"


def no_inputs(ctx: object) -> str | None:
    """The inputs function of a step that runs every time."""
    return None


@dataclass(frozen=True)
class Step(Generic[C]):
    """One step of a command: `run(ctx)` does it and says what it did; `inputs(ctx)` hashes what it reads."""

    name: str
    summary: str
    run: Callable[[C], str]
    inputs: Callable[[C], str | None] = no_inputs
    check: bool = False  # a check (preflight): runs before the first step with work, whatever is selected
    own_progress: bool = False  # the step shows its own progress (a playbook's live table): no spinner


@dataclass(frozen=True)
class Selection:
    """What `--from`, `--only` and `--to` asked for (None: not given)."""

    from_step: str | None = None
    only: str | None = None
    to_step: str | None = None
    to_option: str = "--to"  # what the command calls its to_step option (upgrade: --until; --to is the version)


@dataclass(frozen=True)
class StepResult:
    name: str
    ran: bool
    seconds: float
    message: str


def check_selection(command: str, names: Sequence[str], selection: Selection) -> None:
    """Raise BadInput for a step name `command` does not have, or a selection that selects nothing."""
    hint = f"{command} steps: {', '.join(names)}"
    to = selection.to_option
    for option, value in (("--from", selection.from_step), ("--only", selection.only), (to, selection.to_step)):
        if value is not None and value not in names:
            raise BadInput(f"{option} {value}: no such {command} step", hint=hint)
    if selection.only is not None and (selection.from_step or selection.to_step):
        raise BadInput(f"--only runs one step: it does not go with --from or {to}", hint=hint)
    if selection.from_step and selection.to_step and names.index(selection.to_step) < names.index(selection.from_step):
        raise BadInput(f"{to} {selection.to_step} comes before --from {selection.from_step}", hint=hint)


def selected(names: Sequence[str], selection: Selection) -> list[str]:
    """The step names in scope, in order: `--only` alone, else up to `--to` (`--from` forgets, not hides)."""
    if selection.only is not None:
        return [selection.only]
    end = names.index(selection.to_step) + 1 if selection.to_step else len(names)
    return list(names[:end])


def failure_fields(exc: KubeplayError) -> dict[str, Any]:
    """The fields a failed step's event carries: the error and its hint."""
    return {"error": exc.message, **({"hint": exc.hint} if exc.hint else {})}


@dataclass
class StepRunner(Generic[C]):
    """Runs one command's steps against its context; see the module docstring for what it owns.

    `ledger` None: nothing is skipped or recorded (the day-2 commands). `on_start` runs once, after the
    checks passed and before the first step writes anything (install creates its state directory there).
    `details` adds fields to a failed step's event (deploy: the host, task and log of the stop).
    """

    command: str
    steps: Sequence[Step[C]]
    out: Output
    ledger: Ledger | None = None
    on_start: Callable[[], None] | None = None
    details: Callable[[KubeplayError], dict[str, Any]] | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def run(self, ctx: C, selection: Selection | None = None) -> list[StepResult]:
        """Run what `selection` asks for and is not done; return one result per step in scope, in the
        order they finished. Raises the first failure (BadInput for a bad selection, before anything runs)."""
        selection = selection or Selection()
        check_selection(self.command, self.names, selection)
        scope = selected(self.names, selection)
        checks = [s for s in self.steps if s.check and (s.name in scope or selection.only is not None)]
        work = [s for s in self.steps if s.name in scope and s not in checks]
        forced = set(self.names[self.names.index(selection.from_step) :]) if selection.from_step else set()
        if selection.only is not None:
            forced = {selection.only}
        if not work:  # `--only preflight`: the checks alone
            return self._start(ctx, checks, selection)
        results: list[StepResult] = []
        started = False
        for step in work:
            digest = step.inputs(ctx)
            done = self.ledger is not None and digest is not None and self.ledger.is_done(step.name, digest)
            if done and step.name not in forced:
                self.out.mark("skipped", f"{step.name}: {DONE_EARLIER}")
                self.out.event("step", command=self.command, step=step.name, status="skipped", reason=DONE_EARLIER)
                results.append(StepResult(step.name, False, 0.0, DONE_EARLIER))
                continue
            if not started:
                started = True
                results += self._start(ctx, checks, selection)
            results.append(self._run_one(ctx, step, digest))
        return results

    def _start(self, ctx: C, checks: list[Step[C]], selection: Selection) -> list[StepResult]:
        """The checks, then `on_start`, then what `--from` forgets: the first writes of the run."""
        results = [self._run_one(ctx, check, None, record=False) for check in checks]
        if self.on_start is not None:
            self.on_start()
        if self.ledger is not None:
            if selection.from_step:
                self.ledger.forget_from(self.names, selection.from_step)
            for result in results:
                self.ledger.mark_done(result.name, ALWAYS, seconds=result.seconds)
        return results

    def _run_one(self, ctx: C, step: Step[C], digest: str | None, record: bool = True) -> StepResult:
        out, name = self.out, step.name
        if record and self.ledger is not None:
            self.ledger.forget(name)  # open while it runs: a failure or a kill leaves it to resume
        out.event("step", command=self.command, step=name, status="started")
        began = time.monotonic()
        try:
            with nullcontext() if step.own_progress else out.status(f"{name}: {step.summary}"):
                message = step.run(ctx)
        except (KeyboardInterrupt, KubeplayError) as exc:
            self._stopped(name, time.monotonic() - began, exc)
            raise
        seconds = time.monotonic() - began
        if record and self.ledger is not None:
            self.ledger.mark_done(name, digest or ALWAYS, seconds=seconds)
        out.mark("ok", f"{name}: {message}")
        out.event("step", command=self.command, step=name, status="done", seconds=round(seconds, 1), message=message)
        return StepResult(name, True, seconds, message)

    def _stopped(self, name: str, seconds: float, exc: KeyboardInterrupt | KubeplayError) -> None:
        """The line and the event of a step that did not finish: interrupted (Ctrl-C) or failed."""
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            self.out.mark("stopped", f"{name}: interrupted after {seconds:.0f}s; run the same command again to resume")
            self.out.event("step", command=self.command, step=name, status="interrupted", seconds=round(seconds, 1))
            return
        fields = failure_fields(exc) | (self.details(exc) if self.details else {})
        self.out.mark("failed", f"{name}: failed after {seconds:.0f}s")
        self.out.event("step", command=self.command, step=name, status="failed", seconds=round(seconds, 1), **fields)

    def listing(self, ctx: C) -> Table:
        """The steps as a table: name, whether done with the current inputs ("yes", "-", "each run"), summary."""
        table = Table(columns=("step", "done", "what"), boxed=False)
        for step in self.steps:
            digest = None if step.check else step.inputs(ctx)
            if digest is None:
                state = "each run"
            else:
                state = "yes" if self.ledger is not None and self.ledger.is_done(step.name, digest) else "-"
            table.add(step.name, state, step.summary)
        return table
