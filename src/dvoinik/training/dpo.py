"""`dvoinik train --method dpo`: learning from the writer's picks by direct preference optimisation.

    runs/<source>/checkpoint-N ──► the policy (trainable: every weight, or the run's LoRA adapter)
                               └─► reference log-probs of every pair, computed once before the first step
    pairs (studio picks or a JSONL file) ──► held-out share ┐
                                          └► training pairs ──► DPO loss ──► AdamW ──► runs/<run>/checkpoint-M

The loss is DPO's (Rafailov et al., 2023): for a context x, the chosen text y_w and the
rejected y_l, −log σ(β·[(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))]),
log-probabilities summed over the texts' tokens. The reference is the checkpoint the run
starts from, so its log-probs never change: they are computed once, in eval mode, and
kept in `runs/<run>/reference.pt` (no second model in memory, and resume needs no source).

The loop is the project's own, not TRL's `DPOTrainer`: a DPO run is a run like any other
(`run.json`, `metrics.jsonl`, `checkpoint-<step>/` with exact resume, the same LoRA and
Accelerate set-up), so `generate`, `evaluate` and `serve` read it as they read every run;
TRL's trainer would bring the transformers Trainer's own checkpoint layout, logging and
resume. The loss itself is a few lines. Preference accuracy, measured on held-out pairs
before and after: the share of pairs whose chosen text the model finds more likely, per
token, than the rejected one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.atomic import atomic_open, atomic_write_text
from dvoinik.preferences import (
    STUDIO_DATABASE,
    PreferenceError,
    PreferencePair,
    pairs_fingerprint,
    read_pairs_file,
    read_studio_picks,
    usable,
)
from dvoinik.runs import AUTO, RUN_FILE, RunError, find_run, resolve_checkpoint, run_names
from dvoinik.training import checkpoints as ckpt
from dvoinik.training.loop import TrainingError, check_run_name, resolve_precision
from dvoinik.training.metrics import MetricsLog, truncate_metrics
from dvoinik.training.models import (
    ModelError,
    adapter_base,
    count_parameters,
    from_folder_cache_or_hub,
    is_adapter_folder,
    load_checkpoint_model,
)
from dvoinik.training.schedule import build_optimizer, build_scheduler
from dvoinik.voices import markers_of
from dvoinik.workspace import DpoSettings, TrainSettings, Workspace, WorkspaceError, with_overrides

REFERENCE_FILE = "reference.pt"
DEFAULT_LEARNING_RATES = {"scratch": 1e-4, "full": 5e-6, "lora": 5e-5}
EVAL_BATCH = 16


# ---------------------------------------------------------------- what the caller hears


@dataclass(frozen=True)
class DpoStart:
    run_dir: Path
    source: str  # "<run>/<checkpoint>"
    method: str  # the source run's: full or lora
    pairs_train: int
    pairs_held_out: int
    max_steps: int
    start_step: int
    trainable_parameters: int
    total_parameters: int
    device: str
    precision: str
    beta: float
    learning_rate: float
    resumed_from: Path | None


@dataclass(frozen=True)
class DpoStep:
    step: int
    max_steps: int
    loss: float
    reward_accuracy: float  # share of the batch's pairs whose implicit reward prefers the chosen text
    margin: float  # mean implicit reward margin, chosen minus rejected
    lr: float
    elapsed_s: float


@dataclass
class DpoResult:
    run_dir: Path
    steps: int
    checkpoints: list[Path] = field(default_factory=list)
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    reward_accuracy_after: float | None = None


class DpoObserver:
    """What the CLI hears about a DPO run (main process only); every method may be left as is."""

    def started(self, start: DpoStart) -> None: ...
    def step(self, report: DpoStep) -> None: ...
    def evaluated(self, step: int, values: dict) -> None: ...
    def saved(self, path: Path) -> None: ...
    def warning(self, message: str) -> None: ...


# ---------------------------------------------------------------- pairs as token ids


@dataclass(frozen=True)
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def encode_pairs(pairs: list[PreferencePair], tokenizer: Any, settings: DpoSettings, limit: int | None,
                 prefix: list[int]) -> list[EncodedPair]:
    """Token ids of each pair: texts cut to `max_answer_tokens`, the context cut from the left to fit the rest.

    `prefix` (a voice's marker) goes first, as in generation; an empty context is end-of-text.
    """
    encoded = []
    for pair in pairs:
        ids = [tokenizer(text, add_special_tokens=False).input_ids for text in (pair.prompt, pair.chosen, pair.rejected)]
        prompt, chosen, rejected = ids[0], ids[1][: settings.max_answer_tokens], ids[2][: settings.max_answer_tokens]
        if not chosen or not rejected:
            continue
        keep = settings.max_prompt_tokens
        if limit is not None:
            keep = min(keep, limit - len(prefix) - max(len(chosen), len(rejected)))
        prompt = prompt[len(prompt) - keep:] if keep > 0 else []
        if not prompt and tokenizer.eos_token_id is not None:
            prompt = [tokenizer.eos_token_id]
        encoded.append(EncodedPair(prefix + prompt, chosen, rejected))
    return encoded


def split_held_out(pairs: list[PreferencePair], share: float, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training, held-out): whole generations go one way or the other, chosen by a seeded hash of their group."""
    import hashlib

    def held(pair: PreferencePair) -> bool:
        digest = hashlib.sha256(f"{seed}:{pair.group}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < share

    return [p for p in pairs if not held(p)], [p for p in pairs if held(p)]


# ---------------------------------------------------------------- log-probabilities


def answer_logps(model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """For each (context, text): the summed log-probability of the text's tokens after the context, and their count."""
    import torch
    import torch.nn.functional as F

    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width - 1), dtype=torch.bool)  # target positions that belong to the text
    for i, (prompt, answer) in enumerate(rows):
        ids[i, : len(prompt) + len(answer)] = torch.tensor(prompt + answer)
        mask[i, : len(prompt) + len(answer)] = 1
        scored[i, max(len(prompt) - 1, 0) : len(prompt) + len(answer) - 1] = True
    ids, mask, scored = ids.to(device), mask.to(device), scored.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    token_logps = -F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1),
                                   reduction="none").view(len(rows), -1)
    return (token_logps * scored).sum(dim=1), scored.sum(dim=1)


def pair_logps(model: Any, pairs: list[EncodedPair], pad_id: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """(chosen log-probs, rejected log-probs, chosen lengths, rejected lengths), chosen and rejected in one batch."""
    rows = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    logps, counts = answer_logps(model, rows, pad_id, device)
    k = len(pairs)
    return logps[:k], logps[k:], counts[:k], counts[k:]


def all_logps(model: Any, pairs: list[EncodedPair], pad_id: int, device: Any) -> dict[str, Any]:
    """Log-probs of every pair, in eval mode, without gradients (the reference, and preference accuracy)."""
    import torch

    was_training = model.training
    model.eval()
    parts: dict[str, list] = {"chosen": [], "rejected": [], "chosen_tokens": [], "rejected_tokens": []}
    with torch.no_grad():
        for first in range(0, len(pairs), EVAL_BATCH):
            values = pair_logps(model, pairs[first : first + EVAL_BATCH], pad_id, device)
            for key, value in zip(parts, values):
                parts[key].append(value.float().cpu())
    model.train(was_training)
    return {key: torch.cat(value) if value else torch.zeros(0) for key, value in parts.items()}


def preference_accuracy(logps: dict[str, Any]) -> float | None:
    """Share of pairs whose chosen text is more likely per token than the rejected one."""
    if len(logps["chosen"]) == 0:
        return None
    chosen = logps["chosen"] / logps["chosen_tokens"].clamp(min=1)
    rejected = logps["rejected"] / logps["rejected_tokens"].clamp(min=1)
    return float((chosen > rejected).float().mean())


def reward_accuracy(policy: dict[str, Any], reference: dict[str, Any], beta: float) -> float | None:
    """Share of pairs whose implicit DPO reward prefers the chosen text (0 at the start, when policy = reference)."""
    if len(policy["chosen"]) == 0:
        return None
    margin = beta * ((policy["chosen"] - reference["chosen"]) - (policy["rejected"] - reference["rejected"]))
    return float((margin > 0).float().mean())


def dpo_loss(policy_chosen: Any, policy_rejected: Any, reference_chosen: Any, reference_rejected: Any,
             beta: float) -> tuple[Any, Any]:
    """DPO's loss (mean over the batch) and each pair's implicit reward margin."""
    import torch.nn.functional as F

    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()


# ---------------------------------------------------------------- synthetic picks (a check of the method)


def synthetic_pairs(token_set: Any, tokenizer: Any, count: int, prompt_tokens: int, answer_tokens: int,
                    split: str = "train", seed: int = 0) -> list[PreferencePair]:
    """Pairs that prefer the target author: a context from the target's text, the target's real continuation
    chosen, a passage of an influence's text of the same length rejected.

    Not the writer's picks: a way to see, on any corpus, that preference training moves the
    double towards what is preferred (tests and `benchmarks/dpo_synthetic.py` use it).
    """
    target = token_set.target
    others = [a for a in token_set.authors if a.role != "target" and (a.train_tokens if split == "train" else a.val_tokens)]
    if target is None or not others:
        raise PreferenceError("synthetic pairs need a target author and an influence")
    rng = np.random.default_rng(seed)
    mine = token_set.open(split, target)
    theirs = [token_set.open(split, a) for a in others]
    need = prompt_tokens + answer_tokens
    pairs = []
    for i in range(count):
        start = int(rng.integers(0, len(mine) - need))
        window = np.asarray(mine[start : start + need]).tolist()
        other = theirs[i % len(theirs)]
        at = int(rng.integers(0, len(other) - answer_tokens))
        rejected = np.asarray(other[at : at + answer_tokens]).tolist()
        pairs.append(PreferencePair(tokenizer.decode(window[:prompt_tokens]), tokenizer.decode(window[prompt_tokens:]),
                                    tokenizer.decode(rejected), generation_id=f"synthetic-{split}-{i}"))
    return pairs


# ---------------------------------------------------------------- the run


def context_limit(trained_length: int | None, folder: Path) -> int | None:
    """Positions a pair may take: what a built-in model was trained on, else the model's own context."""
    if trained_length:
        return trained_length
    from transformers import AutoConfig

    where = adapter_base(folder) if is_adapter_folder(folder) else str(folder)
    try:
        config = from_folder_cache_or_hub(AutoConfig.from_pretrained, where)
    except ModelError as exc:
        raise TrainingError(str(exc)) from None
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def load_pairs(ws: Workspace, preferences: Path | None) -> tuple[list[PreferencePair], str]:
    """The pairs and where they came from: a JSONL file, else the studio's picks."""
    if preferences is not None:
        return read_pairs_file(preferences), str(preferences)
    database = ws.root / STUDIO_DATABASE
    return read_studio_picks(database), f"studio picks ({database})"


def dpo_settings(ws: Workspace, overrides: dict) -> DpoSettings:
    try:
        return with_overrides(ws.dpo, overrides, "command-line flags")
    except WorkspaceError as exc:
        raise TrainingError(str(exc)) from None


def train_dpo(
    ws: Workspace,
    run: str | None = None,
    source: str | None = None,
    checkpoint: str = AUTO,
    preferences: Path | None = None,
    overrides: dict | None = None,
    resume: bool = False,
    observer: DpoObserver | None = None,
    pairs: list[PreferencePair] | None = None,
) -> DpoResult:
    """Preference-train a new run `run` from `source`'s checkpoint on `pairs` (default: read from `preferences`,
    else the studio's picks); `overrides` are [dpo] settings from flags."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    observer = observer or DpoObserver()
    recorded: dict = {}
    if resume:  # a resumed run keeps the source, checkpoint and settings it began with
        if run is None or not (ws.runs_dir / run / RUN_FILE).is_file():
            raise TrainingError(f"{ws.runs_dir / (run or '?')}: no such run to resume (runs: "
                                f"{', '.join(run_names(ws)) or 'none'}); name it with --run")
        recorded = json.loads((ws.runs_dir / run / RUN_FILE).read_text(encoding="utf-8"))
        source, checkpoint = recorded["from"]["run"], recorded["from"]["checkpoint"]
    known = {f for f in asdict(ws.dpo)}
    settings = dpo_settings(ws, {**{k: v for k, v in recorded.get("dpo", {}).items() if k in known}, **(overrides or {})})
    try:
        origin = find_run(ws, source)
        folder = resolve_checkpoint(origin, checkpoint)
    except RunError as exc:
        raise TrainingError(str(exc)) from None
    run_dir = ws.runs_dir / check_run_name(run or f"{origin.name}-dpo")
    if run_dir.exists() and (run_dir / RUN_FILE).exists() and not resume:
        raise TrainingError(f"{run_dir} already exists: pass --resume to continue it, or --run NAME for a new run")
    if pairs is None:
        try:
            pairs, where = load_pairs(ws, preferences)
        except PreferenceError as exc:
            raise TrainingError(str(exc)) from None
    else:
        where = "given by the caller"
    pairs = usable(pairs)
    if recorded and recorded.get("pairs", {}).get("sha256") != pairs_fingerprint(pairs):
        raise TrainingError(f"{where}: the pairs changed since run {run_dir.name!r} began; train a new run on them")
    train_pairs, held_out = split_held_out(pairs, settings.held_out, settings.seed)
    if not train_pairs:
        raise TrainingError(f"{where}: no preference pairs to learn from ({len(pairs)} usable in all); pick variants "
                            "in the studio (or give --preferences FILE)")

    source_settings = with_overrides(ws.train, origin.record.get("settings", {}), f"{origin.folder / RUN_FILE}")
    accelerator = Accelerator(mixed_precision=resolve_precision(source_settings.precision))
    main = accelerator.is_main_process
    report = observer if main else DpoObserver()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    voices = markers_of(tokenizer)
    prefix = [next(iter(voices.values()))] if voices else []  # a run with voices learns in its target's voice
    limit = context_limit(origin.trained_length, folder)
    pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    encoded_train = encode_pairs(train_pairs, tokenizer, settings, limit, prefix)
    encoded_held = encode_pairs(held_out, tokenizer, settings, limit, prefix)
    if not held_out:
        report.warning("no held-out pairs (too few pairs, or [dpo] held_out = 0): preference accuracy is not measured")

    method = "lora" if is_adapter_folder(folder) else "full"
    base_dtype = None
    if method == "lora" and accelerator.mixed_precision in ("bf16", "fp16"):
        base_dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16
    resume_from = ckpt.latest_checkpoint(run_dir) if resume else None
    device = accelerator.device
    torch.manual_seed(settings.seed)

    # The reference: the source checkpoint's log-probs, once (kept beside the run for a resume).
    reference_file = run_dir / REFERENCE_FILE
    if resume and reference_file.is_file():
        reference = torch.load(reference_file, map_location="cpu", weights_only=True)
        before = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8")).get("preference_accuracy", {}).get("before")
    else:
        source_model = load_checkpoint_model(folder, dtype=base_dtype).to(device)
        reference = {"train": all_logps(source_model, encoded_train, pad_id, device),
                     "held_out": all_logps(source_model, encoded_held, pad_id, device)}
        before = preference_accuracy(reference["held_out"])
        del source_model
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_open(reference_file, "wb") as handle:
                torch.save(reference, handle)
    accelerator.wait_for_everyone()

    model = load_checkpoint_model(resume_from.path if resume_from else folder, trainable=True, dtype=base_dtype)
    model.config.use_cache = False
    trainable, total = count_parameters(model)
    learning_rate = settings.learning_rate or DEFAULT_LEARNING_RATES[
        "scratch" if method == "full" and origin.trained_length else method]
    schedule = TrainSettings(**{**asdict(source_settings), "learning_rate": learning_rate})
    optimizer = build_optimizer(model, schedule, learning_rate, fused=device.type in ("cuda", "cpu"))
    scheduler = build_scheduler(optimizer, settings.max_steps, schedule)
    model, optimizer = accelerator.prepare(model, optimizer)
    set_seed(settings.seed, device_specific=True)

    order = np.random.Generator(np.random.PCG64([settings.seed, accelerator.process_index]))
    step, train_time = 0, 0.0
    if resume_from is not None:
        trainer_state, order_state = ckpt.load_resume_state(accelerator, resume_from.path, optimizer, scheduler)
        order.bit_generator.state = order_state
        step, train_time = trainer_state["step"], trainer_state["train_time_s"]
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            truncate_metrics(run_dir, step)
        _write_record(run_dir, origin, folder, source_settings, settings, learning_rate, where, pairs, train_pairs,
                      held_out, before, method, accelerator, trainable, total, resume_from)
    metrics = MetricsLog(run_dir, enabled=main)
    report.started(DpoStart(run_dir, f"{origin.name}/{folder.name}", method, len(encoded_train), len(encoded_held),
                            settings.max_steps, step, trainable, total, str(device), accelerator.mixed_precision,
                            settings.beta, learning_rate, resume_from.path if resume_from else None))
    result = DpoResult(run_dir, step, accuracy_before=before)
    if main and not resume:
        metrics.write({"step": 0, "kind": "dpo_eval", "held_out_accuracy": before})

    def measure() -> dict:
        policy = all_logps(accelerator.unwrap_model(model), encoded_held, pad_id, device)
        values = {"held_out_accuracy": preference_accuracy(policy),
                  "held_out_reward_accuracy": reward_accuracy(policy, reference["held_out"], settings.beta)}
        metrics.write({"step": step, "kind": "dpo_eval", **values})
        report.evaluated(step, values)
        return values

    def save() -> None:
        state = {"step": step, "tokens": 0, "train_time_s": train_time}
        path = ckpt.save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, state,
                                    order.bit_generator.state, run_dir, step)
        result.checkpoints.append(path)
        report.saved(path)

    queue: list[int] = []
    batch_size = min(settings.batch_size, len(encoded_train))
    clock = time.perf_counter() - train_time
    model.train()
    values: dict = {}
    try:
        while step < settings.max_steps:
            if len(queue) < batch_size:  # a fresh pass over the pairs, in a new order
                queue += order.permutation(len(encoded_train)).tolist()
            chosen_ids, queue = queue[:batch_size], queue[batch_size:]
            mine = chosen_ids[accelerator.process_index :: accelerator.num_processes] or chosen_ids[:1]
            batch = [encoded_train[i] for i in mine]
            index = torch.tensor(mine)
            policy_c, policy_r, _, _ = pair_logps(model, batch, pad_id, device)
            loss, margin = dpo_loss(policy_c, policy_r, reference["train"]["chosen"][index].to(device),
                                    reference["train"]["rejected"][index].to(device), settings.beta)
            accelerator.backward(loss)
            if schedule.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), schedule.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            train_time = time.perf_counter() - clock
            record = {"step": step, "kind": "dpo", "loss": float(loss.detach()), "reward_accuracy": float((margin > 0).float().mean()),
                      "margin": float(margin.mean()), "lr": scheduler.get_last_lr()[0], "elapsed_s": train_time}
            metrics.write(record)
            report.step(DpoStep(step, settings.max_steps, record["loss"], record["reward_accuracy"], record["margin"],
                                record["lr"], train_time))
            if not math.isfinite(record["loss"]):
                raise TrainingError(f"the DPO loss is {record['loss']} at step {step}: lower [dpo] learning_rate")
            if step % settings.save_every == 0 or step == settings.max_steps:
                values = measure()
                save()
    except torch.OutOfMemoryError as exc:
        raise TrainingError(f"out of GPU memory at DPO step {step + 1}: lower [dpo] batch_size, max_prompt_tokens or "
                            "max_answer_tokens") from exc
    finally:
        metrics.close()
    result.steps = step
    result.accuracy_after = values.get("held_out_accuracy")
    result.reward_accuracy_after = values.get("held_out_reward_accuracy")
    if main:
        _record_outcome(run_dir, result)
    accelerator.end_training()
    return result


def _write_record(run_dir: Path, origin: Any, folder: Path, source_settings: TrainSettings, settings: DpoSettings,
                  learning_rate: float, where: str, pairs: list, train_pairs: list, held_out: list,
                  before: float | None, method: str, accelerator: Any, trainable: int, total: int,
                  resumed_from: ckpt.Checkpoint | None) -> None:
    path = run_dir / RUN_FILE
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resumes": [],
    }
    record.update({
        "method": "dpo",
        # The source run's settings: what later stages read (base, block size) is the model's, not DPO's.
        "settings": asdict(source_settings),
        "dpo": {**asdict(settings), "learning_rate": learning_rate, "method": method},
        "from": {"run": origin.name, "checkpoint": folder.name},
        "reference": f"{origin.name}/{folder.name} (its log-probs of every pair, computed once: {REFERENCE_FILE})",
        "pairs": {"source": where, "total": len(pairs), "train": len(train_pairs), "held_out": len(held_out),
                  "sha256": pairs_fingerprint(pairs)},
        "preference_accuracy": {"before": before, "after": record.get("preference_accuracy", {}).get("after")},
        "tokens": origin.record.get("tokens"),
        "tokenizer": origin.record.get("tokenizer"),
        "parameters": {"trainable": trainable, "total": total},
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "precision": accelerator.mixed_precision,
    })
    if "voices" in origin.record:
        record["voices"] = origin.record["voices"]
    if resumed_from is not None:
        record.setdefault("resumes", []).append({
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from": resumed_from.path.name,
        })
    atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=2))


def _record_outcome(run_dir: Path, result: DpoResult) -> None:
    path = run_dir / RUN_FILE
    record = json.loads(path.read_text(encoding="utf-8"))
    record["preference_accuracy"] = {"before": result.accuracy_before, "after": result.accuracy_after,
                                     "reward_after": result.reward_accuracy_after}
    atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=2))


__all__ = ["DpoObserver", "DpoResult", "DpoStart", "DpoStep", "train_dpo"]
