"""A run's measurements: one JSON object per line in runs/<run>/metrics.jsonl, and TensorBoard if installed.

Every line has `step` and `kind` ("train" or "eval"). Train lines: loss, ppl, lr,
tokens_per_second, tokens (seen so far), epoch, elapsed_s. Eval lines: val_target_ppl
(the target author's held-out works) and val_influences_ppl (the other authors'), with
their losses. The file is appended line by line and flushed, so it can be followed
while the run goes on (`tail -f`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dvoinik.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # exp(50) is "not trained"; avoids inf in JSON


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Forget lines after `last_step` (written by a killed run past its last checkpoint)."""
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= last_step]
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))


class MetricsLog:
    """Appends records to metrics.jsonl (and TensorBoard scalars); a no-op on non-main processes."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self._file = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if enabled else None
        self._board: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._board = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._board = None

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._board is not None:
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)):
                    self._board.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._board is not None:
            self._board.close()
