"""The optimizer and the learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

from dvoinik.workspace import TrainSettings

DEFAULT_LEARNING_RATES = {"scratch": 6e-4, "full": 5e-5, "lora": 2e-4}


def peak_learning_rate(settings: TrainSettings, from_scratch: bool) -> float:
    if settings.learning_rate > 0:
        return settings.learning_rate
    return DEFAULT_LEARNING_RATES["scratch" if from_scratch else settings.method]


def lr_factor(step: int, max_steps: int, settings: TrainSettings) -> float:
    """Multiplier on the peak learning rate for optimizer step `step` (0-based): linear warmup, then decay."""
    warmup = int(settings.warmup_fraction * max_steps)
    if step < warmup:
        return (step + 1) / warmup
    if settings.decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    floor = settings.min_lr_fraction
    if settings.decay == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: Any, settings: TrainSettings, learning_rate: float, fused: bool) -> Any:
    """AdamW over the trainable weights; matrices decay, vectors (norms, biases) do not (as in GPT-2)."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(settings.beta1, settings.beta2), fused=fused or None)


def build_scheduler(optimizer: Any, max_steps: int, settings: TrainSettings) -> Any:
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, max_steps, settings))
