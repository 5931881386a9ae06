from __future__ import annotations

import pytest
import torch

from dvoinik.training.schedule import build_optimizer, lr_factor, peak_learning_rate
from dvoinik.workspace import TrainSettings


def test_warmup_then_cosine_to_the_floor() -> None:
    s = TrainSettings(warmup_fraction=0.1, min_lr_fraction=0.1, decay="cosine")
    factors = [lr_factor(step, 100, s) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.55, abs=0.02)
    assert lr_factor(100, 100, s) == pytest.approx(0.1) and lr_factor(500, 100, s) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_linear_and_constant() -> None:
    linear = TrainSettings(warmup_fraction=0.0, min_lr_fraction=0.0, decay="linear")
    assert [lr_factor(s, 4, linear) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert lr_factor(3, 4, TrainSettings(warmup_fraction=0.0, decay="constant")) == 1.0


def test_default_learning_rate_by_method() -> None:
    assert peak_learning_rate(TrainSettings(), from_scratch=True) == 6e-4
    assert peak_learning_rate(TrainSettings(method="lora"), from_scratch=False) == 2e-4
    assert peak_learning_rate(TrainSettings(method="full"), from_scratch=False) == 5e-5
    assert peak_learning_rate(TrainSettings(learning_rate=1e-3), from_scratch=False) == 1e-3


def test_matrices_decay_and_vectors_do_not() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    model[1].weight.requires_grad_(False)
    optimizer = build_optimizer(model, TrainSettings(weight_decay=0.1), 1e-3, fused=False)
    decays = {p.dim(): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decays == {2: 0.1, 1: 0.0}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 3  # the frozen norm weight is left out
