"""`dvoinik train`: the training loop, on Accelerate, readable in one sitting.

The same function runs on one CPU, one GPU, or many processes under `accelerate launch`
(DDP; FSDP and DeepSpeed by an Accelerate config). Every process builds the same model
and draws its own batches (seed + rank); gradients are averaged by Accelerate. Only the
main process writes metrics and reports progress; every process takes part in saving.

    tokens/<key>/ ──► BlockSampler ──► forward/backward × grad_accum ──► clip ──► AdamW ──► LR schedule
                                                       │ every log_every: metrics.jsonl, progress, stop checks
                                                       │ every eval_every: validation perplexity (target / influences)
                                                       └ every save_every and at the end: checkpoint-<step>/
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dvoinik.atomic import atomic_write_text
from dvoinik.faults import disk_full, is_disk_full, read_json
from dvoinik.runs import RUN_FILE, run_names
from dvoinik.tokens import TokenSet, prepare_tokens, recorded_tokenizer
from dvoinik.training import checkpoints as ckpt
from dvoinik.training.data import BlockSampler, validation_blocks
from dvoinik.training.distributed import DistributedError, Engine, check_launch, configure_deepspeed, describe
from dvoinik.training.metrics import MetricsLog, perplexity, truncate_metrics
from dvoinik.training.models import (
    ModelError,
    apply_lora,
    check_combination,
    count_parameters,
    is_builtin,
    load_base_model,
    load_base_tokenizer,
    load_checkpoint_model,
    new_model,
)
from dvoinik.training.schedule import build_optimizer, build_scheduler, peak_learning_rate
from dvoinik.voices import add_marker_rows, add_markers, marker
from dvoinik.workspace import TrainSettings, Workspace, WorkspaceError, with_overrides


class TrainingError(Exception):
    """A user-facing training problem (one line): no corpus, run exists, out of memory, ..."""


@dataclass(frozen=True)
class RunStart:
    run_dir: Path
    settings: TrainSettings
    max_steps: int
    start_step: int
    trainable_parameters: int
    total_parameters: int
    device: str
    processes: int
    precision: str
    tokens_per_step: int
    train_tokens: int
    tokens_reused: bool
    resumed_from: Path | None
    engine: str = ""  # "DDP (nccl)", "FSDP2 (full shard)", "DeepSpeed ZeRO-3", "single process"


@dataclass(frozen=True)
class StepReport:
    step: int
    max_steps: int
    loss: float
    ppl: float
    lr: float
    tokens_per_second: float
    elapsed_s: float


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    stop_reason: str  # "max_steps", "epochs", "time_budget", "target_ppl"
    checkpoints: list[Path] = field(default_factory=list)
    train_ppl: float | None = None
    val_target_ppl: float | None = None
    val_influences_ppl: float | None = None
    tokens_per_second: float | None = None


class TrainObserver:
    """What the caller (the CLI) hears about; every method may be left as is. Main process only."""

    def tokens_progress(self, stage: str, done: int, total: int) -> None: ...
    def started(self, start: RunStart) -> None: ...
    def step(self, report: StepReport) -> None: ...
    def evaluated(self, step: int, values: dict) -> None: ...
    def saved(self, path: Path) -> None: ...
    def warning(self, message: str) -> None: ...


# ---------------------------------------------------------------- settings and the run folder


def check_run_name(name: str) -> str:
    name = name.strip()
    if not name or name.startswith(".") or any(c in name for c in "/\\:") or name != Path(name).name:
        raise TrainingError(f"run name {name!r} must be a plain folder name (no slashes, not starting with a dot)")
    return name


def default_run_name(settings: TrainSettings) -> str:
    base = Path(settings.base.rstrip("/")).name or "model"
    return check_run_name(f"{base}-{settings.method}")


def resolve_settings(ws: Workspace, run_dir: Path, overrides: dict, resume: bool) -> TrainSettings:
    """The run's settings: dvoinik.toml [train] for a new run, the run's own record when resuming; then the flags."""
    where = "command-line flags"
    if resume and (run_dir / RUN_FILE).is_file():
        record = read_json(run_dir / RUN_FILE, "its settings are lost: train a new run (--run NAME)")
        recorded = record.get("settings") if isinstance(record, dict) else None
        if not isinstance(recorded, dict):
            raise TrainingError(f"{run_dir / RUN_FILE}: damaged file (no settings); train a new run (--run NAME)")
        try:
            return with_overrides(with_overrides(ws.train, recorded, f"{run_dir / RUN_FILE}"), overrides, where)
        except WorkspaceError as exc:
            raise TrainingError(str(exc)) from exc
    return with_overrides(ws.train, overrides, where)


def planned_steps(settings: TrainSettings, train_tokens: int, tokens_per_step: int) -> tuple[int, str]:
    """Steps to run and the reason they end: `epochs` (when set) turns into steps."""
    if settings.epochs > 0:
        return max(1, math.ceil(settings.epochs * train_tokens / tokens_per_step)), "epochs"
    return settings.max_steps, "max_steps"


def resolve_precision(setting: str) -> str:
    """Accelerate's mixed_precision value: "no", "bf16" or "fp16"."""
    import torch

    if setting == "auto":
        if not torch.cuda.is_available():
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and not torch.cuda.is_available():
        raise TrainingError("precision fp16 needs a CUDA GPU; on a CPU use fp32 or bf16")
    return {"fp32": "no"}.get(setting, setting)


# ---------------------------------------------------------------- evaluation


def evaluate(model: Any, accelerator: Any, token_set: TokenSet, settings: TrainSettings,
             markers: dict[str, int] | None = None) -> dict:
    """Validation loss and perplexity on the target's held-out works and on the influences', separately.

    In a run with voices, each author's blocks start with their marker, as in training.
    """
    import torch

    groups = {
        "target": [a for a in token_set.authors if a.role == "target"],
        "influences": [a for a in token_set.authors if a.role != "target"],
    }
    model.eval()
    values: dict[str, float] = {}
    with torch.no_grad():
        for group, authors in groups.items():
            blocks = [b for a in authors for b in validation_blocks(token_set.open("val", a), settings.block_size,
                                                                      settings.eval_blocks,
                                                                      markers.get(a.name) if markers else None)]
            totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # loss sum, token count
            # Every process runs the same number of forward passes (a sharded model gathers its weights
            # in each one, with all processes); a process short of blocks repeats one and does not count it.
            rounds = -(-len(blocks) // accelerator.num_processes)
            for i in range(rounds):
                index = i * accelerator.num_processes + accelerator.process_index
                counted = index < len(blocks)
                ids = torch.from_numpy(blocks[index if counted else 0]).unsqueeze(0).to(accelerator.device)
                loss = next_token_loss(model, ids)
                if counted:
                    totals[0] += float(loss) * (ids.shape[1] - 1)
                    totals[1] += ids.shape[1] - 1
            totals = accelerator.reduce(totals, reduction="sum")
            if totals[1] > 0:
                loss = float(totals[0] / totals[1])
                values[f"val_{group}_loss"] = loss
                values[f"val_{group}_ppl"] = perplexity(loss)
    model.train()
    return values


def next_token_loss(model: Any, ids: Any) -> Any:
    """Mean cross-entropy of predicting ids[:, 1:] from ids[:, :-1]."""
    import torch.nn.functional as F

    logits = model(input_ids=ids[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


# ---------------------------------------------------------------- the run


def train(
    ws: Workspace,
    run: str | None = None,
    overrides: dict | None = None,
    resume: bool = False,
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train (or resume) the run `run` of workspace `ws`; `overrides` are [train] settings from flags."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bar is the one the user watches
    observer = observer or TrainObserver()
    overrides = overrides or {}
    provisional = with_overrides(ws.train, overrides, "command-line flags")
    run_dir = ws.runs_dir / check_run_name(run or default_run_name(provisional))
    if run_dir.exists() and not resume and (run_dir / RUN_FILE).exists():
        raise TrainingError(f"{run_dir} already exists: pass --resume to continue it, or --run NAME for a new run")
    if resume and not (run_dir / RUN_FILE).exists():
        raise TrainingError(f"{run_dir}: no such run to resume (runs: {', '.join(run_names(ws)) or 'none'})")
    settings = resolve_settings(ws, run_dir, overrides, resume)
    try:
        check_combination(settings.base, settings.method)
    except ModelError as exc:
        raise TrainingError(str(exc)) from exc

    # Accelerate treats a multi-process launch as CPU-distributed (gloo) only when told it is on the CPU,
    # and then drops an FSDP or DeepSpeed config without a word: such a launch is refused first.
    try:
        check_launch(os.environ, torch.cuda.is_available())
    except DistributedError as exc:
        raise TrainingError(str(exc)) from exc
    cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        accelerator = Accelerator(
            cpu=cpu_processes,
            mixed_precision=resolve_precision(settings.precision),
            gradient_accumulation_steps=settings.grad_accum,
            # The setting decides, not the environment: Accelerate would otherwise also obey an
            # ACCELERATE_DYNAMO_BACKEND left by a launcher or by Trainer(torch_compile=True).
            dynamo_backend="inductor" if settings.compile else "no",
        )
    except ImportError as exc:  # DeepSpeed asked for and not installed, or too old
        raise TrainingError(f"cannot start the engine the launcher asked for: {str(exc).splitlines()[0]}") from exc
    engine = describe(accelerator)
    if engine.distributed_type == "DEEPSPEED":
        try:  # before `prepare`, which reads the micro-batch from the config
            configure_deepspeed(accelerator, settings.batch_size, settings.grad_accum, settings.grad_clip)
        except DistributedError as exc:
            raise TrainingError(str(exc)) from exc
        engine = describe(accelerator)
    main = accelerator.is_main_process
    report = observer if main else TrainObserver()
    from_scratch = is_builtin(settings.base)

    # Tokens: the main process builds them (or finds them current); the others then read them.
    with accelerator.main_process_first():
        token_set, tokenizer = prepare_tokens(
            ws.corpus_dir, ws.tokens_dir, None if from_scratch else settings.base, settings.vocab_size,
            load_base_tokenizer=load_base_tokenizer, on_progress=report.tokens_progress,
        )
    # Voices: one marker token per author, added after the vocabulary (the token files keep their ids).
    markers = add_markers(tokenizer, [a.name for a in token_set.authors]) if settings.voices else None
    sampler = BlockSampler(token_set, settings.block_size, settings.batch_size, settings.seed, accelerator.process_index,
                           markers)
    for author in token_set.authors:
        if author.name not in sampler.shares:
            report.warning(f"{author.name}: {author.train_tokens} training tokens, fewer than one block "
                           f"({settings.block_size + 1}); not sampled")
    if token_set.target is None or token_set.target.val_tokens == 0:
        report.warning("no held-out text of the target author: val_target_ppl cannot be measured")

    # The model: a checkpoint when resuming, else new or loaded from the base.
    if main:
        ckpt.remove_leftovers(run_dir)
    accelerator.wait_for_everyone()
    resume_from, passed_over = ckpt.resumable_checkpoint(run_dir) if resume else (None, [])
    for note in passed_over:  # a half-deleted checkpoint: the previous complete one serves
        report.warning(f"{note}; resuming from {resume_from.path.name if resume_from else 'step 0'}")
    if resume and resume_from is None:
        report.warning(f"{run_dir} has no complete checkpoint yet: starting it again from step 0")
    # Trained weights are kept in fp32 (mixed precision computes in 16 bits from them): transformers would
    # otherwise load a bf16 base as bf16, and AdamW updates below bf16's resolution would be lost.
    base_dtype = torch.float32
    if settings.method == "lora" and accelerator.mixed_precision in ("bf16", "fp16"):
        base_dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16  # frozen base
    torch.manual_seed(settings.seed)  # the same LoRA initialisation on every process and in every repeat
    try:
        if resume_from is not None:
            model = load_checkpoint_model(resume_from.path, trainable=True, dtype=base_dtype)
        elif from_scratch:
            model = new_model(settings.base, len(tokenizer), token_set.eos_id, settings.block_size, settings.seed)
        else:
            model = load_base_model(settings.base, dtype=base_dtype)
            if markers:
                add_marker_rows(model, len(tokenizer))
            if settings.method == "lora":  # with voices, the markers' embeddings are trained beside the adapter
                model = apply_lora(model, settings, trainable_tokens=list(markers.values()) if markers else None)
    except ModelError as exc:
        raise TrainingError(str(exc)) from exc
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None and settings.block_size > limit:
        raise TrainingError(f"block_size {settings.block_size} is longer than the model's context ({limit} tokens); "
                            f"set train.block_size to {limit} or less")
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if settings.method == "lora":
            model.enable_input_require_grads()
    model.config.use_cache = False
    trainable, total = count_parameters(model)

    tokens_per_step = settings.batch_size * settings.block_size * settings.grad_accum * accelerator.num_processes
    max_steps, end_reason = planned_steps(settings, token_set.train_tokens, tokens_per_step)
    learning_rate = peak_learning_rate(settings, from_scratch)
    optimizer = build_optimizer(model, settings, learning_rate, fused=accelerator.device.type in ("cuda", "cpu"))
    scheduler = build_scheduler(optimizer, max_steps, settings)  # stepped once per optimizer step, by us
    model, optimizer = accelerator.prepare(model, optimizer)  # compiles the model when settings.compile

    set_seed(settings.seed, device_specific=True)  # dropout: repeatable, and different on each process
    step, tokens_seen, train_time = 0, 0, 0.0
    if resume_from is not None:
        trainer_state, sampler_state = ckpt.load_resume_state(accelerator, resume_from.path, optimizer, scheduler)
        sampler.load_state(sampler_state)
        step, tokens_seen, train_time = trainer_state["step"], trainer_state["tokens"], trainer_state["train_time_s"]
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            truncate_metrics(run_dir, step)
        _write_run_record(run_dir, settings, token_set, trainable, total, accelerator, resume_from, engine, markers)
    metrics = MetricsLog(run_dir, enabled=main)
    report.started(RunStart(
        run_dir=run_dir, settings=settings, max_steps=max_steps, start_step=step, trainable_parameters=trainable,
        total_parameters=total, device=str(accelerator.device), processes=accelerator.num_processes,
        precision=accelerator.mixed_precision, tokens_per_step=tokens_per_step, train_tokens=token_set.train_tokens,
        tokens_reused=token_set.reused, resumed_from=resume_from.path if resume_from else None,
        engine=engine.label(),
    ))

    result = TrainResult(run_dir=run_dir, steps=step, stop_reason=end_reason)

    def save() -> None:
        state = {"step": step, "tokens": tokens_seen, "train_time_s": train_time}
        path = ckpt.save_checkpoint(accelerator, model, tokenizer, optimizer, scheduler, state, sampler.state(),
                                    run_dir, step)
        if main:
            ckpt.prune_checkpoints(run_dir, settings.keep_last)
        result.checkpoints.append(path)
        report.saved(path)

    def measure() -> None:
        values = evaluate(model, accelerator, token_set, settings, markers)
        metrics.write({"step": step, "kind": "eval", **values})
        result.val_target_ppl = values.get("val_target_ppl")
        result.val_influences_ppl = values.get("val_influences_ppl")
        report.evaluated(step, values)

    model.train()
    window_loss = torch.zeros((), device=accelerator.device)
    window_steps = 0
    # Wall-clock time: since the run began (plus the time before a resume), and since the speed window
    # began (reset after each log line, evaluation and save, so tokens/s measures training alone).
    clock_origin = time.perf_counter() - train_time
    speed_start, speed_tokens = time.perf_counter(), 0
    try:
        while step < max_steps:
            for _ in range(settings.grad_accum):
                batch = torch.from_numpy(sampler.next_batch()).to(accelerator.device, non_blocking=True)
                with accelerator.accumulate(model):
                    loss = next_token_loss(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and settings.grad_clip > 0:
                        accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                window_loss += loss.detach() / settings.grad_accum
            scheduler.step()
            step += 1
            tokens_seen += tokens_per_step
            speed_tokens += tokens_per_step
            window_steps += 1

            stop = None
            if step % settings.log_every == 0 or step == max_steps:
                mean_loss = float(accelerator.reduce(window_loss, reduction="mean")) / window_steps  # waits for the GPU
                now = time.perf_counter()
                ppl = perplexity(mean_loss)
                speed = speed_tokens / (now - speed_start)
                record = {"step": step, "kind": "train", "loss": mean_loss, "ppl": ppl,
                          "lr": scheduler.get_last_lr()[0], "tokens_per_second": speed, "tokens": tokens_seen,
                          "epoch": tokens_seen / max(1, token_set.train_tokens), "elapsed_s": now - clock_origin}
                metrics.write(record)
                report.step(StepReport(step, max_steps, mean_loss, ppl, record["lr"], speed, record["elapsed_s"]))
                result.train_ppl, result.tokens_per_second = ppl, speed
                window_loss.zero_()
                window_steps = 0
                speed_start, speed_tokens = time.perf_counter(), 0
                if settings.target_train_ppl and ppl <= settings.target_train_ppl:
                    stop = "target_ppl"
            train_time = time.perf_counter() - clock_origin
            if stop is None and settings.time_budget_minutes and _over_budget(accelerator, train_time, settings):
                stop = "time_budget"
            if step % settings.eval_every == 0 or step == max_steps or stop:
                measure()
                speed_start, speed_tokens = time.perf_counter(), 0
            if step % settings.save_every == 0 or step == max_steps or stop:
                save()
                speed_start, speed_tokens = time.perf_counter(), 0
            if stop:
                result.stop_reason = stop
                break
    except torch.OutOfMemoryError as exc:
        raise TrainingError(_out_of_memory_message(settings, step + 1, run_dir)) from exc
    except OSError as exc:  # metrics.jsonl on a full disk (a checkpoint says so itself)
        if is_disk_full(exc, run_dir):
            raise disk_full(run_dir, ckpt.FREE_CHECKPOINT_SPACE) from exc
        raise
    finally:
        metrics.close()
    result.steps = step
    accelerator.end_training()
    return result


def _over_budget(accelerator: Any, train_time: float, settings: TrainSettings) -> bool:
    """Whether the time budget is spent, decided once for all processes (they must stop together)."""
    import torch

    flag = torch.tensor(float(train_time >= settings.time_budget_minutes * 60), device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum") > 0)


def _out_of_memory_message(settings: TrainSettings, step: int, run_dir: Path) -> str:
    last = ckpt.latest_checkpoint(run_dir)
    kept = f"the last complete checkpoint is {last.path.name}" if last else "no checkpoint was written yet"
    return (
        f"out of GPU memory at step {step} (batch_size {settings.batch_size} × block_size {settings.block_size}); "
        f"lower train.batch_size (and raise grad_accum to keep the tokens per step), set gradient_checkpointing "
        f"= true, shorten block_size, or use --method lora; {kept}, and `dvoinik train --resume` continues from it"
    )


def _write_run_record(run_dir: Path, settings: TrainSettings, token_set: TokenSet, trainable: int, total: int,
                      accelerator: Any, resumed_from: ckpt.Checkpoint | None, engine: Engine | None = None,
                      markers: dict[str, int] | None = None) -> None:
    path = run_dir / RUN_FILE
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resumes": [],
    }
    record.update({
        "settings": asdict(settings),
        "tokens": token_set.key,
        # Later stages check it: a rebuilt tokenizer under the same key would give this run's model other ids.
        "tokenizer": recorded_tokenizer(token_set.folder),
        "parameters": {"trainable": trainable, "total": total},
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "precision": accelerator.mixed_precision,
    })
    if engine is not None:
        record["distributed"] = {"type": engine.distributed_type, "processes": engine.processes,
                                 "engine": engine.label()}
    if markers:
        record["voices"] = [{"author": author, "marker": marker(author), "id": token_id}
                            for author, token_id in markers.items()]
    if resumed_from is not None:
        record.setdefault("resumes", []).append({
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from": resumed_from.path.name,
        })
    atomic_write_text(path, json.dumps(record, ensure_ascii=False, indent=2))


__all__ = ["RunStart", "StepReport", "TrainObserver", "TrainResult", "TrainingError", "train"]
