"""The demo's two far-apart authors (package data) as a test workspace with equal weights, and small runs on it.

Equal weights give each voice as many training blocks as the other (the demo upsamples its
target ×10). The settings are the smallest that separate the two voices reliably on a CPU
(docs/voices.md): `tiny` for 40 steps of 8 × 64 tokens, about 13 s of one core.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dvoinik.corpus.build import build_corpus
from dvoinik.demo import AUTHORS, texts_folder
from dvoinik.workspace import Workspace, add_sources, init_workspace, write_settings

TARGET, INFLUENCE = AUTHORS[0].name, AUTHORS[1].name
SMALL = {"vocab_size": 2000, "block_size": 64, "batch_size": 8, "warmup_fraction": 0.05, "eval_blocks": 4,
         "log_every": 10, "time_budget_minutes": 0.0}
VOICES_RUN = {**SMALL, "base": "tiny", "learning_rate": 2e-3, "max_steps": 40, "save_every": 40, "eval_every": 40,
              "voices": True}
PLAIN_RUN = {**SMALL, "base": "micro", "learning_rate": 5e-3, "max_steps": 60, "save_every": 60, "eval_every": 60}


def demo_workspace(root: Path, train: dict) -> Workspace:
    """A workspace with both demo authors at weight 1, its corpus built, `train` as its [train] settings."""
    for author in AUTHORS:
        shutil.copytree(texts_folder() / author.folder, root / "texts" / author.folder)
    ws = init_workspace(root / "double", name="voices")
    for author in AUTHORS:
        ws, _ = add_sources(ws, [root / "texts" / author.folder], author=author.name, role=author.role, weight=1.0)
    ws = write_settings(ws, "corpus", {"workers": 1})
    ws = write_settings(ws, "train", train)
    build_corpus(ws)
    return ws


def short_style_model(ws: Workspace):
    """The workspace's stylometry model, taking texts of any length (samples here are a few dozen words)."""
    from dataclasses import replace

    from dvoinik.evaluation.stylometry import load_or_fit_workspace_model

    style = load_or_fit_workspace_model(ws)
    return replace(style, settings=replace(style.settings, min_words=1))
