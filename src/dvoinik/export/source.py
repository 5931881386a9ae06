"""What is exported: the run's checkpoint, why it was chosen, its evaluation, its base's hub id; the model itself.

Read-only over the run: the checkpoint folder is never modified. A LoRA checkpoint is
merged into its base here (PEFT `merge_and_unload`), so the formats downstream see one
plain model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvoinik.export.options import ExportError, is_hub_id
from dvoinik.runs import AUTO, Run, find_run, recommended_checkpoint, resolve_checkpoint
from dvoinik.training.models import adapter_base, is_adapter_folder, is_builtin
from dvoinik.workspace import Workspace

_CACHE_SNAPSHOT = re.compile(r"models--([^/\\]+)--([^/\\]+)[/\\]snapshots[/\\]")


@dataclass(frozen=True)
class ExportSource:
    """A checkpoint chosen for export, with what the model card says about it."""

    run: Run
    checkpoint: Path
    why: str  # one sentence: how this checkpoint was chosen
    evaluation: dict | None  # this checkpoint's entry in the run's evaluation report
    report: dict | None  # the run's whole evaluation report (rule, ceiling, recommended)
    base: str  # what the run trained on: a built-in name, a hub id or a local folder
    base_hub_id: str | None  # the base's hub id, when known (None for built-in models)

    @property
    def is_adapter(self) -> bool:
        return is_adapter_folder(self.checkpoint)

    @property
    def builtin(self) -> bool:
        return is_builtin(self.base)

    @property
    def trained_length(self) -> int | None:
        return self.run.trained_length

    @property
    def settings(self) -> dict:
        return self.run.record.get("settings", {})


def hub_id_of(base: str) -> str | None:
    """The hub id of a base model as the run named it: the id itself, or read off a hub cache folder's path."""
    if is_builtin(base):
        return None
    local = Path(base).expanduser()
    if local.exists():
        match = _CACHE_SNAPSHOT.search(str(local.resolve()))
        return f"{match.group(1)}/{match.group(2)}" if match else None
    return base if is_hub_id(base) else None


def choose_source(ws: Workspace, run: str | None = None, checkpoint: str = AUTO, base_id: str | None = None) -> ExportSource:
    """The checkpoint to export (a name, `best`, `last`, or `auto`) and what is known about it."""
    chosen = find_run(ws, run)
    folder = resolve_checkpoint(chosen, checkpoint)
    report = _report(chosen)
    recommended = recommended_checkpoint(chosen)
    entry = next((c for c in (report or {}).get("checkpoints", []) if c.get("name") == folder.name), None)
    return ExportSource(chosen, folder, _why(checkpoint, folder.name, report, recommended), entry, report,
                        *_base(chosen, folder, base_id))


def _why(asked: str, name: str, report: dict | None, recommended: str | None) -> str:
    """How the checkpoint was chosen, in one sentence for the model card."""
    if name == recommended:
        return f"recommended by `dvoinik evaluate`: {report.get('reason', '') if report else ''}".rstrip(": ")
    why = "the run's last checkpoint" if asked in (AUTO, "last") else "chosen by name"
    if report is None:
        return why + " (the run has not been evaluated)"
    return why + (f"; the evaluation recommends {recommended}" if recommended else
                  "; the evaluation recommends no checkpoint (none passes its copying limits)")


def _base(run: Run, folder: Path, base_id: str | None) -> tuple[str, str | None]:
    base = str(run.record.get("settings", {}).get("base", ""))
    if not base and is_adapter_folder(folder):
        base = adapter_base(folder)
    return base, base_id or hub_id_of(base)


def _report(run: Run) -> dict | None:
    try:
        return json.loads(run.report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_merged_model(source: ExportSource) -> Any:
    """The checkpoint as one plain transformers model on the CPU: a LoRA adapter merged into its base."""
    from dvoinik.training.models import ModelError, load_checkpoint_model

    try:
        model = load_checkpoint_model(source.checkpoint)
    except ModelError as exc:
        raise ExportError(str(exc)) from exc
    if source.is_adapter:
        model = model.merge_and_unload()
    model.eval()
    return model


def load_tokenizer(source: ExportSource) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.checkpoint)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{source.checkpoint}: its tokenizer does not load ({exc})") from exc
