"""The one step runner (kubeplay.steps), on steps that record what they did: skip-if-done, re-run on changed
inputs, --from/--only/--to, the wording of a bad selection, the JSON events, and the ledger left open on failure."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kubeplay.console import Output
from kubeplay.errors import BadInput, Interrupted, StepFailed
from kubeplay.state import Ledger, input_hash
from kubeplay.steps import ALWAYS, Selection, Step, StepRunner


@dataclass
class Work:
    """What the steps read (`inputs`) and what they did (`log`); `fail` names steps that raise."""

    inputs: dict[str, str] = field(default_factory=lambda: {"a": "1", "b": "1", "c": "1"})
    log: list[str] = field(default_factory=list)
    fail: dict[str, BaseException] = field(default_factory=dict)


def _step(name: str, check: bool = False) -> Step[Work]:
    def run(work: Work) -> str:
        if name in work.fail:
            raise work.fail[name]
        work.log.append(name)
        return f"did {name}"

    def inputs(work: Work) -> str:
        return input_hash(work.inputs[name])

    return Step(name, "check", run, check=True) if check else Step(name, f"step {name}", run, inputs)


STEPS = [_step("pre", check=True), _step("a"), _step("b"), _step("c")]


def make_runner(tmp_path: Path, command: str = "install", ledger: bool = True) -> tuple[StepRunner[Work], io.StringIO]:
    screen = io.StringIO()
    out = Output(json_events=True, console=Console(file=screen, width=200, force_terminal=False))
    return StepRunner(command, STEPS, out, Ledger(tmp_path / "ledger.json") if ledger else None), screen


def record_done(tmp_path: Path, names: list[str], work: Work) -> None:
    ledger = Ledger(tmp_path / "ledger.json")
    for name in names:
        ledger.mark_done(name, input_hash(work.inputs[name]))


@pytest.mark.parametrize(
    ("done", "changed", "selection", "ran"),
    [
        ([], None, Selection(), ["pre", "a", "b", "c"]),
        (["a", "b", "c"], None, Selection(), []),  # nothing to do: not even the check runs
        (["a", "b", "c"], "b", Selection(), ["pre", "b"]),  # a changed input re-runs that step only
        (["a"], None, Selection(), ["pre", "b", "c"]),  # resumes where the last run stopped
        (["a", "b", "c"], None, Selection(from_step="b"), ["pre", "b", "c"]),
        ([], None, Selection(from_step="b"), ["pre", "a", "b", "c"]),  # --from forgets; what is not done still runs
        (["a", "b", "c"], None, Selection(only="a"), ["pre", "a"]),  # --only runs it even if done
        ([], None, Selection(to_step="b"), ["pre", "a", "b"]),
        (["a", "b", "c"], None, Selection(from_step="b", to_step="b"), ["pre", "b"]),
        (["a", "b", "c"], None, Selection(only="pre"), ["pre"]),  # the check alone
        (["a", "b", "c"], None, Selection(to_step="pre"), ["pre"]),
    ],
)
def test_what_runs(tmp_path: Path, done: list[str], changed: str | None, selection: Selection, ran: list[str]) -> None:
    work = Work()
    record_done(tmp_path, done, work)
    if changed:
        work.inputs[changed] = "2"
    runner, screen = make_runner(tmp_path)
    results = runner.run(work, selection)
    assert work.log == ran
    assert [r.name for r in results if r.ran] == ran
    skipped = [r.name for r in results if not r.ran]
    for name in skipped:
        assert f"- {name}: done earlier, inputs unchanged" in screen.getvalue()
    # Afterwards every step that ran is recorded with its current inputs; --from forgot the later ones.
    ledger = Ledger(tmp_path / "ledger.json")
    for name in ran:
        expected = ALWAYS if name == "pre" else input_hash(work.inputs[name])
        assert ledger.steps[name]["hash"] == expected
    if selection.from_step == "b" and selection.to_step == "b":
        assert "c" not in ledger.steps, "--from forgets every step after it, even past --to"


@pytest.mark.parametrize("command", ["install", "deploy", "add-node"])
@pytest.mark.parametrize("option", ["from_step", "only", "to_step"])
def test_unknown_step_is_refused_in_the_same_words_for_every_command(tmp_path: Path, command: str, option: str) -> None:
    runner, _ = make_runner(tmp_path, command)
    work = Work()
    with pytest.raises(BadInput) as info:
        runner.run(work, Selection(**{option: "nginxx"}))
    flag = {"from_step": "--from", "only": "--only", "to_step": "--to"}[option]
    assert info.value.message == f"{flag} nginxx: no such {command} step"
    assert info.value.hint == f"{command} steps: pre, a, b, c"
    assert work.log == [] and not (tmp_path / "ledger.json").exists()


def test_selections_that_select_nothing_are_refused(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path)
    with pytest.raises(BadInput, match="--to a comes before --from c"):
        runner.run(Work(), Selection(from_step="c", to_step="a"))
    with pytest.raises(BadInput, match="--only runs one step"):
        runner.run(Work(), Selection(from_step="a", only="b"))


def events(captured: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_events_and_a_failed_step_left_open(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = Work()
    record_done(tmp_path, ["a", "b"], work)
    work.inputs["b"] = "2"
    work.fail["b"] = StepFailed("b broke", hint="fix b")
    runner, screen = make_runner(tmp_path, "deploy")
    with pytest.raises(StepFailed):
        runner.run(work)
    seen = events(capsys.readouterr().out)
    for e in seen:
        if "seconds" in e:
            assert isinstance(e.pop("seconds"), float)
    assert seen == [
        {
            "event": "step",
            "command": "deploy",
            "step": "a",
            "status": "skipped",
            "reason": "done earlier, inputs unchanged",
        },
        {"event": "step", "command": "deploy", "step": "pre", "status": "started"},
        {"event": "step", "command": "deploy", "step": "pre", "status": "done", "message": "did pre"},
        {"event": "step", "command": "deploy", "step": "b", "status": "started"},
        {"event": "step", "command": "deploy", "step": "b", "status": "failed", "error": "b broke", "hint": "fix b"},
    ]
    assert "✗ b: failed after 0s" in screen.getvalue()
    ledger = Ledger(tmp_path / "ledger.json")
    assert "b" not in ledger.steps and "a" in ledger.steps and "pre" in ledger.steps

    # The same command again resumes at b (its old entry, with other inputs, is gone), then c.
    del work.fail["b"]
    runner, _ = make_runner(tmp_path, "deploy")
    assert [r.name for r in runner.run(work) if r.ran] == ["pre", "b", "c"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), Interrupted("interrupted")])
def test_interrupted_step_stays_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interrupt: BaseException
) -> None:
    work = Work(fail={"b": interrupt})
    runner, screen = make_runner(tmp_path)
    with pytest.raises(type(interrupt)):
        runner.run(work)
    last = events(capsys.readouterr().out)[-1]
    assert last == {"event": "step", "command": "install", "step": "b", "status": "interrupted", "seconds": 0.0}
    assert "b: interrupted after 0s; run the same command again to resume" in screen.getvalue()
    assert sorted(Ledger(tmp_path / "ledger.json").steps) == ["a", "pre"]


def test_failed_check_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started: list[str] = []
    work = Work(fail={"pre": BadInput("preflight found 1 problem(s)")})
    runner, _ = make_runner(tmp_path)
    runner.on_start = lambda: started.append("state")
    with pytest.raises(BadInput):
        runner.run(work)
    assert started == [] and work.log == [] and not (tmp_path / "ledger.json").exists()
    assert events(capsys.readouterr().out)[-1]["status"] == "failed"


def test_without_a_ledger_every_step_runs_every_time(tmp_path: Path) -> None:
    work = Work()
    for _ in range(2):
        runner, _ = make_runner(tmp_path, "reset", ledger=False)
        runner.run(work)
    assert work.log == ["pre", "a", "b", "c"] * 2
    assert not (tmp_path / "ledger.json").exists()


def test_listing_says_what_is_done(tmp_path: Path) -> None:
    work = Work()
    record_done(tmp_path, ["a"], work)
    work.inputs["b"] = "2"
    runner, _ = make_runner(tmp_path)
    table = runner.listing(work)
    assert [tuple(row[:2]) for row in table.rows] == [("pre", "each run"), ("a", "yes"), ("b", "-"), ("c", "-")]
