from __future__ import annotations

import math
from pathlib import Path

from dvoinik.training.metrics import METRICS_FILE, MetricsLog, perplexity, read_metrics, truncate_metrics


def test_lines_are_appended_and_cut_back_to_a_checkpoint(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=True)
    for step in (2, 4, 6):
        log.write({"step": step, "kind": "train", "loss": 1.0 / step})
    log.close()
    with open(tmp_path / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write('{"step": 8, "kind": "tra')  # a line cut by a kill
    assert [r["step"] for r in read_metrics(tmp_path)] == [2, 4, 6]
    truncate_metrics(tmp_path, 4)
    assert [r["step"] for r in read_metrics(tmp_path)] == [2, 4]
    assert (tmp_path / "tensorboard").is_dir()  # tensorboard is installed with the dev extra


def test_other_processes_write_nothing(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, enabled=False)
    log.write({"step": 1, "kind": "train"})
    log.close()
    assert not (tmp_path / METRICS_FILE).exists()


def test_perplexity_is_finite() -> None:
    assert perplexity(math.log(4.0)) == 4.0 and math.isfinite(perplexity(1e9))
