"""Training progress on the terminal (rich): a step bar with loss, perplexity, tokens/s and ETA."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from dvoinik.training.dpo import DpoObserver, DpoStart, DpoStep
from dvoinik.training.loop import RunStart, StepReport, TrainObserver


class _RichRun:
    """What both kinds of run share on the terminal: the step bar on stderr, lines printed above it."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out, self.err = out, err
        self.progress: Progress | None = None
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _start_bar(self, name: str, fields: str, total: int, completed: int, **values: float) -> None:
        """A transient step bar with `fields` (a rich format of the task's fields), elapsed time and ETA."""
        self.progress = Progress(
            TextColumn("[bold]step"), BarColumn(), MofNCompleteColumn(), TextColumn(fields),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.err, transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(name, total=total, completed=completed, **values)

    def saved(self, path: Path) -> None:
        self._line(f"saved {path}")

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}", style="yellow")

    def _line(self, message: str, style: str | None = None) -> None:
        console = self.progress.console if self.progress is not None else self.out
        console.print(Text(message, style=style), soft_wrap=True)


class RichTrainObserver(_RichRun, TrainObserver):
    """Prints what a run does; the bar lives on stderr so stdout stays the run's summary."""

    def tokens_progress(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                     TimeRemainingColumn(), console=self.err, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(stage, total=max(total, 1))
        self.progress.update(self.task, description=stage, completed=done, total=max(total, 1))

    def started(self, start: RunStart) -> None:
        if self.progress is not None:  # the token stage's bar
            self.progress.stop()
        s = start.settings
        what = "resumed from " + start.resumed_from.name if start.resumed_from else "new run"
        self.out.print(Text.assemble(("Training ", "bold"), (str(start.run_dir), "bold"), f" ({what})"))
        self.out.print(
            f"  {s.base} · {s.method} · {start.trainable_parameters:,} trainable of {start.total_parameters:,} weights · "
            f"{start.device} × {start.processes} · precision {start.precision}"
            + (f" · {start.engine}" if start.engine else "")
        )
        self.out.print(
            f"  {start.train_tokens:,} training tokens{' (reused)' if start.tokens_reused else ''} · "
            f"{start.tokens_per_step:,} tokens per step · steps {start.start_step}→{start.max_steps}"
        )
        self._start_bar("train", "loss {task.fields[loss]:.3f} · ppl {task.fields[ppl]:.2f} · "
                        "{task.fields[speed]:,.0f} tok/s", start.max_steps, start.start_step,
                        loss=float("nan"), ppl=float("nan"), speed=0.0)

    def step(self, report: StepReport) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=report.step, loss=report.loss, ppl=report.ppl,
                             speed=report.tokens_per_second)

    def evaluated(self, step: int, values: dict) -> None:
        parts = [f"{label} {values[key]:.2f}" for key, label in
                 (("val_target_ppl", "target"), ("val_influences_ppl", "influences")) if key in values]
        if parts:
            self._line(f"step {step}: validation perplexity " + ", ".join(parts))


class RichDpoObserver(_RichRun, DpoObserver):
    """A DPO run on the terminal: its start, a step bar with loss and reward accuracy, held-out accuracy."""

    def started(self, start: DpoStart) -> None:
        what = "resumed from " + start.resumed_from.name if start.resumed_from else "new run"
        self.out.print(Text.assemble(("Preference training (DPO) ", "bold"), (str(start.run_dir), "bold"), f" ({what})"))
        self.out.print(f"  from {start.source} ({start.method}) · {start.trainable_parameters:,} trainable of "
                       f"{start.total_parameters:,} weights · {start.device} · precision {start.precision}")
        self.out.print(f"  {start.pairs_train} training pairs, {start.pairs_held_out} held out · beta {start.beta:g} · "
                       f"learning rate {start.learning_rate:g} · steps {start.start_step}→{start.max_steps}")
        self._start_bar("dpo", "loss {task.fields[loss]:.3f} · rewards prefer chosen {task.fields[accuracy]:.0%}",
                        start.max_steps, start.start_step, loss=float("nan"), accuracy=0.0)

    def step(self, report: DpoStep) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=report.step, loss=report.loss, accuracy=report.reward_accuracy)

    def evaluated(self, step: int, values: dict) -> None:
        accuracy = values.get("held_out_accuracy")
        if accuracy is not None:
            self._line(f"step {step}: held-out preference accuracy {accuracy:.0%}")
