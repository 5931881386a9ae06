"""Finding what a finished run left: its folder, a checkpoint by name, `best` or `last`, its token set.

Read-only: the stages after training (generate, check, evaluate) call these to name
what they work on. `best` is the checkpoint `dvoinik evaluate` recommended, read from
`runs/<run>/evaluation/report.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dvoinik.faults import read_json
from dvoinik.tokens import TokenSet, load_token_set, recorded_tokenizer
from dvoinik.training.checkpoints import list_checkpoints
from dvoinik.training.models import is_builtin
from dvoinik.workspace import Workspace

RUN_FILE = "run.json"
EVALUATION_DIR = "evaluation"
REPORT_JSON = "report.json"
AUTO = "auto"  # `best` when the run has been evaluated, else `last`


class RunError(Exception):
    """A user-facing problem finding a run or checkpoint (one line)."""


@dataclass(frozen=True)
class Run:
    name: str
    folder: Path
    record: dict  # run.json: settings, tokens key, parameters, device

    @property
    def tokens_key(self) -> str:
        return self.record["tokens"]

    @property
    def trained_length(self) -> int | None:
        """Positions the model learned: a built-in model trained here knows only its block size (None: the base's)."""
        settings = self.record.get("settings", {})
        return int(settings["block_size"]) if is_builtin(str(settings.get("base", ""))) else None

    @property
    def report_path(self) -> Path:
        return self.folder / EVALUATION_DIR / REPORT_JSON


def run_names(ws: Workspace) -> list[str]:
    if not ws.runs_dir.is_dir():
        return []
    return sorted(p.name for p in ws.runs_dir.iterdir() if (p / RUN_FILE).is_file())


def find_run(ws: Workspace, name: str | None = None) -> Run:
    """The run `name`; without a name, the workspace's most recently trained run."""
    names = run_names(ws)
    if not names:
        raise RunError(f"{ws.runs_dir}: no runs yet; train one with `dvoinik train`")
    if name is None:
        name = max(names, key=lambda n: (ws.runs_dir / n / RUN_FILE).stat().st_mtime)
    elif name not in names:
        raise RunError(f"{ws.runs_dir / name}: no such run (runs: {', '.join(names)})")
    folder = ws.runs_dir / name
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{folder / RUN_FILE}: unreadable ({exc})") from exc
    return Run(name, folder, record)


def recommended_checkpoint(run: Run) -> str | None:
    """The checkpoint name the run's evaluation recommends, if it has been evaluated."""
    if not run.report_path.is_file():
        return None
    report = read_json(run.report_path, f"rebuild it with `dvoinik evaluate --run {run.name}`")
    best = report.get("recommended") if isinstance(report, dict) else None
    return best if isinstance(best, str) else None


def resolve_checkpoint(run: Run, which: str = AUTO) -> Path:
    """A checkpoint folder of `run`: by name (`checkpoint-300` or `300`), `best`, `last`, or `auto`."""
    checkpoints = list_checkpoints(run.folder)
    if not checkpoints:
        raise RunError(f"{run.folder}: the run has no complete checkpoint yet")
    by_name = {c.path.name: c.path for c in checkpoints} | {str(c.step): c.path for c in checkpoints}
    if which in (AUTO, "best"):
        best = recommended_checkpoint(run)
        if best in by_name:
            return by_name[best]
        if which == "best":
            raise RunError(f"{run.report_path}: {_why_no_best(run, best)}; pass --checkpoint last or a checkpoint name")
        which = "last"
    if which == "last":
        return checkpoints[-1].path
    if which not in by_name:
        raise RunError(f"{run.folder / which}: no such checkpoint (checkpoints: "
                       f"{', '.join(c.path.name for c in checkpoints)}; or best, last)")
    return by_name[which]


def _why_no_best(run: Run, best: str | None) -> str:
    if not run.report_path.is_file():
        return f"no recommendation yet; run `dvoinik evaluate --run {run.name}`"
    if best is None:
        return "the evaluation recommends no checkpoint (none passes its copying limits)"
    return f"the recommended {best} no longer exists"


def run_token_set(ws: Workspace, run: Run) -> TokenSet:
    """The token set the run was trained on (its copy index answers what the run's model copies)."""
    folder = ws.tokens_dir / run.tokens_key
    token_set = load_token_set(folder)
    if token_set is None:
        raise RunError(f"{folder}: the run's token files are missing or from an older version; `dvoinik train` "
                       "rebuilds them")
    trained_with = run.record.get("tokenizer")
    if trained_with is not None and trained_with != recorded_tokenizer(folder):
        # A rebuilt corpus retrains the BPE under the same key: its ids are not this run's ids.
        raise RunError(f"{folder}: rebuilt with another tokenizer after run {run.name!r} was trained (the corpus "
                       "changed), so its copy index does not match the run's model; train a new run on this corpus")
    return token_set
