"""`dvoinik train --plan`: the GPU memory a run will need, from the model's shape alone, before it starts.

    [train] settings + the base's config.json ──► ModelFigures (the model built on the meta device:
                                                  exact weight counts, no weight allocated)
                                     │
                     memory_plan(figures, Setup) ── pure arithmetic, per GPU:
                        weights      fp32 master weights (+ their 16-bit casts under autocast) for a full
                                     fine-tune; the frozen base in 16 bits and the adapter in fp32 for LoRA
                        gradients    fp32, of the trained weights only
                        optimizer    AdamW's two fp32 moments of the trained weights
                        activations  what autograd keeps per token per layer (below), × batch × block
                        logits       the last layer's scores, in 16 bits, their fp32 copy and log-softmax
                        overhead     CUDA context, kernel workspaces, allocator slack: 1 GiB + 10%
                     FSDP over N GPUs divides weights, gradients and optimizer by N, and adds the
                     two layers it holds gathered at a time.
                                     │
                     plan_run: the fit on the visible GPU(s) (or --gpu-memory), and what to change
                     when it does not fit, each change planned again before it is suggested.

Activations per token and decoder layer, in bytes, with c the compute width (2 for bf16/fp16,
4 for fp32) and the residual stream in fp32 as under autocast (counted from the tensors
autograd saves in transformers' Llama, Qwen2, Mistral, Gemma, GPT-2 and GPT-NeoX layers; the
tests compare it with a count of saved tensors):

    2 × 8·h (RMSNorm) or 2 × 4·h (LayerNorm)   the norms' fp32 inputs (and RMSNorm's normalised
                                  outputs); one norm's worth where both read one input (GPT-NeoX)
    c·h × (projections reading a normalised input: q, k, v, gate, up; each casts it again)
    c·(3·q + 2·kv)                what attention keeps: q, k, v, its output, the output projection's input
    m·c·i                         the MLP: m = 4 gated (gate, up, activation, product), 2 with GELU
                                  or ReLU (input and output), 5 with GPT-2's tanh GELU
    2·h                           dropout masks, where the model has residual dropout

With gradient checkpointing, a layer keeps only its input (4·h) and one layer at a time is
recomputed whole during the backward pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dvoinik.workspace import TrainSettings

GIB = 1024**3
OVERHEAD_FIXED = 1 * GIB
OVERHEAD_SHARE = 0.10
FSDP_SIZES = (2, 4, 8, 16, 32, 64)


class PlanError(Exception):
    """A plan that cannot be made: an unreadable size, a base whose config cannot be read (one line)."""


@dataclass(frozen=True)
class ModelFigures:
    """What the plan needs of a model: exact weight counts and the widths of one decoder layer."""

    name: str
    model_type: str
    parameters: int
    lora_per_rank: int  # LoRA weights per unit of rank on the default targets (0: LoRA does not apply)
    layers: int
    hidden: int
    attention: int  # width of the queries (heads × head dim)
    kv: int  # width of the keys (= the values)
    intermediate: int
    gated: bool  # a gated MLP (gate and up projections: Llama, Qwen2, Mistral, Gemma)
    fused_qkv: bool  # one projection makes q, k and v (GPT-2, GPT-NeoX)
    dropout: bool  # residual dropout during training
    vocab: int
    largest_unit: int  # weights of the largest piece FSDP gathers at once (a layer, or the embeddings)
    norm_bytes: int = 8  # per token and unit of width, what one norm keeps: 8 RMSNorm, 4 LayerNorm
    norms: int = 2  # norms per layer with inputs of their own (1 with a parallel residual)
    mlp_saved: int = 4  # intermediate-wide tensors the MLP keeps


@dataclass(frozen=True)
class Setup:
    """The settings of a run that decide its memory."""

    method: str  # "full" or "lora"
    batch_size: int
    block_size: int
    half: bool  # bf16/fp16 compute (mixed precision) rather than fp32
    gradient_checkpointing: bool
    lora_rank: int
    shards: int = 1  # FSDP2 full shard over this many GPUs

    @classmethod
    def of(cls, settings: TrainSettings, gpu: bool, shards: int = 1) -> Setup:
        half = settings.precision in ("bf16", "fp16") or (settings.precision == "auto" and gpu)
        return cls(settings.method, settings.batch_size, settings.block_size, half, settings.gradient_checkpointing,
                   settings.lora_rank, shards)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU for one setup."""

    setup: Setup
    parameters: int
    trainable: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int

    @property
    def overhead(self) -> int:
        return int(OVERHEAD_FIXED + OVERHEAD_SHARE * self.counted)

    @property
    def counted(self) -> int:
        """What torch.cuda.max_memory_allocated would show: everything but the overhead."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.logits

    @property
    def total(self) -> int:
        return self.counted + self.overhead


@dataclass(frozen=True)
class Hardware:
    gpus: int
    memory: int  # bytes per GPU
    name: str  # "NVIDIA H200"; "GPU" for one described by --gpu-memory


@dataclass(frozen=True)
class Suggestion:
    change: str  # what to type: "--set gradient_checkpointing=true"
    plan: MemoryPlan


@dataclass(frozen=True)
class Plan:
    figures: ModelFigures
    plan: MemoryPlan
    hardware: Hardware | None
    suggestions: tuple[Suggestion, ...] = ()
    largest_batch: int | None = None  # the largest batch_size that fits, when the setup fits

    @property
    def fits(self) -> bool | None:
        return None if self.hardware is None else self.plan.total <= self.hardware.memory


# ---------------------------------------------------------------- the arithmetic (pure)


def trainable_weights(figures: ModelFigures, setup: Setup) -> int:
    return figures.parameters if setup.method == "full" else figures.lora_per_rank * setup.lora_rank


def layer_activation_bytes(figures: ModelFigures, half: bool) -> int:
    """Bytes autograd keeps per token for one decoder layer (see the module's docstring)."""
    c = 2 if half else 4
    h = figures.hidden
    casts = (1 if figures.fused_qkv else 3) + (2 if figures.gated else 1) if half else 0
    saved = figures.norms * figures.norm_bytes * h + c * h * casts
    saved += c * (3 * figures.attention + 2 * figures.kv) + figures.mlp_saved * c * figures.intermediate
    return saved + (2 * h if figures.dropout else 0)


def memory_plan(figures: ModelFigures, setup: Setup) -> MemoryPlan:
    """Bytes per GPU of `setup` on the model `figures` describes."""
    n = figures.parameters
    trained = trainable_weights(figures, setup)
    shards = max(1, setup.shards)
    c = 2 if setup.half else 4
    if setup.method == "full":
        weights = 4 * n / shards
        # Autocast's 16-bit copies of the weights live until the backward pass has used them;
        # under FSDP only the gathered layers have them (two at a time: one computing, one prefetched).
        weights += (2 * n if shards == 1 else 2 * 2 * figures.largest_unit) if setup.half else 0
        gradients = 4 * n / shards
    else:
        weights = c * n / shards + 4 * trained + (2 * c * figures.largest_unit if shards > 1 else 0)
        gradients = 4 * trained
    optimizer = 8 * trained / (shards if setup.method == "full" else 1)
    tokens = setup.batch_size * setup.block_size
    h = figures.hidden
    outside = 4 * h + 8 * h + c * h  # the embeddings' output, the final norm and the lm_head's input cast
    per_layer = layer_activation_bytes(figures, setup.half)
    if setup.gradient_checkpointing:
        activations = tokens * (figures.layers * 4 * h + per_layer + outside)
    else:
        activations = tokens * (figures.layers * per_layer + outside)
    logits = tokens * figures.vocab * (c + 8)  # the scores, their fp32 copy, the loss's log-softmax
    return MemoryPlan(setup, n, trained, int(weights), int(gradients), int(optimizer), int(activations), int(logits))


def fits(plan: MemoryPlan, hardware: Hardware) -> bool:
    return plan.total <= hardware.memory


def largest_batch(figures: ModelFigures, setup: Setup, hardware: Hardware, limit: int = 1024) -> int:
    """The largest batch_size that fits (0 when not even 1 does); memory grows with the batch, so bisect."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if fits(memory_plan(figures, replace(setup, batch_size=middle)), hardware):
            low = middle
        else:
            high = middle - 1
    return low


def _flags(changes: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(changes.items(), key=lambda item: item[0] == "shards"):  # the launch last
        if key == "shards":
            parts.append(f"FSDP2 over {value} GPUs (accelerate launch --config_file examples/accelerate/fsdp2.yaml "
                         f"--num_processes {value} -m dvoinik train …)")
        elif key == "method":
            parts.append(f"--method {value}")
        else:
            parts.append(f"--set {key}={str(value).lower() if isinstance(value, bool) else value}")
    return " ".join(parts)


def suggestions(figures: ModelFigures, setup: Setup, hardware: Hardware, settings: TrainSettings) -> list[Suggestion]:
    """Changes that make the run fit, each planned again: every single change that is enough, else a
    combination, in the order to try them: gradient checkpointing, a smaller batch (with more
    accumulation, so a step trains on as many tokens), LoRA, a lower LoRA rank, FSDP2 over more
    GPUs, a shorter block."""

    def planned(changes: dict[str, Any]) -> MemoryPlan:
        return memory_plan(figures, replace(setup, **{k: v for k, v in changes.items() if k != "grad_accum"}))

    def with_batch(changes: dict[str, Any]) -> dict[str, Any] | None:
        """`changes` with the largest batch dividing the present one that then fits (accumulation raised so
        that a step trains on as many tokens), or None when not even a batch of 1 fits."""
        for batch in range(setup.batch_size, 0, -1):
            if setup.batch_size % batch == 0 and fits(planned({**changes, "batch_size": batch}), hardware):
                if batch == setup.batch_size:
                    return changes
                return {**changes, "batch_size": batch,
                        "grad_accum": settings.grad_accum * (setup.batch_size // batch)}
        return None

    singles: list[dict[str, Any]] = []
    if not setup.gradient_checkpointing:
        singles.append({"gradient_checkpointing": True})
    smaller = with_batch({})
    if smaller:
        singles.append(smaller)
    if setup.method == "full" and figures.lora_per_rank:
        singles.append({"method": "lora"})
    elif setup.method == "lora" and setup.lora_rank > 8:
        singles.append({"lora_rank": 8})
    fsdp = next((n for n in FSDP_SIZES if n > setup.shards and fits(planned({"shards": n}), hardware)), None)
    if fsdp:
        singles.append({"shards": fsdp})
    singles += [{"block_size": b} for b in (setup.block_size // 2, setup.block_size // 4) if b >= 128]
    found = [Suggestion(_flags(c), planned(c)) for c in singles if fits(planned(c), hardware)]
    if found:
        return found
    # No one change is enough: gradient checkpointing with a smaller batch; else, beside it, LoRA
    # (for a full fine-tune) and the fewest GPUs that hold the method asked for under FSDP2.
    checkpointed = {"gradient_checkpointing": True}
    together = with_batch(checkpointed)
    if together is not None:
        return [Suggestion(_flags(together), planned(together))]
    combined = []
    if setup.method == "full" and figures.lora_per_rank:
        combined.append(with_batch({**checkpointed, "method": "lora"}))
    combined += [next((c for n in FSDP_SIZES if n > setup.shards
                       for c in [with_batch({**checkpointed, "shards": n})] if c is not None), None)]
    return [Suggestion(_flags(c), planned(c)) for c in combined if c is not None]


# ---------------------------------------------------------------- the model and the machine


def parse_size(text: str) -> int:
    """'24GB', '24 GiB', '80G', '24' (GiB) → bytes. GPU makers' "GB" are GiB in practice (a 24 GB card has 24 GiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(g|gb|gib|m|mb|mib|t|tb|tib)?\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise PlanError(f"--gpu-memory {text!r}: expected a size such as 24GB, 80GiB or 16000MB")
    unit = (match.group(2) or "g")[0]
    return int(float(match.group(1)) * {"m": 1024**2, "g": GIB, "t": 1024**4}[unit])


def visible_hardware() -> Hardware | None:
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return None
    props = torch.cuda.get_device_properties(0)
    return Hardware(torch.cuda.device_count(), int(props.total_memory), props.name)


def _config_of(base: str, settings: TrainSettings) -> Any:
    from dvoinik.training.models import builtin_config, from_folder_cache_or_hub, is_builtin

    if is_builtin(base):
        return builtin_config(base, settings.vocab_size, 0, settings.block_size)
    from transformers import AutoConfig

    return from_folder_cache_or_hub(AutoConfig.from_pretrained, base)


def figures_from_model(name: str, model: Any, lora_per_rank: int) -> ModelFigures:
    """The figures of a model (built on the meta device) and its config."""
    config = model.config.get_text_config()
    get = lambda *names, default=None: next((getattr(config, n) for n in names if getattr(config, n, None)), default)  # noqa: E731
    hidden = get("hidden_size", "n_embd")
    heads = get("num_attention_heads", "n_head")
    head_dim = get("head_dim", default=hidden // heads)
    kv_heads = get("num_key_value_heads", default=heads)
    names = [module_name for module_name, _ in model.named_modules()]
    layers = [m for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "Block", "Layer"))]
    decoder_layers = get("num_hidden_layers", "n_layer", default=len(layers))
    layer_weights = max((sum(p.numel() for p in layer.parameters()) for layer in layers), default=0)
    embedding = model.get_input_embeddings().weight.numel()
    dropout = any(float(get(n, default=0.0) or 0.0) > 0 for n in ("resid_pdrop", "hidden_dropout", "hidden_dropout_prob"))
    gated = any(n.endswith(("gate_proj", "gate_up_proj")) for n in names)
    norm_kinds = {type(m).__name__ for layer in layers[:1] for m in layer.modules() if "Norm" in type(m).__name__}
    activation = str(get("hidden_act", "activation_function", default="gelu"))
    return ModelFigures(
        name=name, model_type=getattr(config, "model_type", "?"),
        parameters=sum(p.numel() for p in model.parameters()), lora_per_rank=lora_per_rank,
        layers=decoder_layers, hidden=hidden, attention=heads * head_dim, kv=kv_heads * head_dim,
        intermediate=get("intermediate_size", "n_inner", default=4 * hidden),
        gated=gated,
        fused_qkv=any(n.endswith(("c_attn", "query_key_value", "qkv_proj", "Wqkv")) for n in names),
        dropout=dropout, vocab=get("vocab_size"), largest_unit=max(layer_weights, embedding),
        norm_bytes=4 if norm_kinds and not any("RMS" in kind for kind in norm_kinds) else 8,
        norms=1 if getattr(config, "use_parallel_residual", False) else 2,
        mlp_saved=4 if gated else (5 if activation == "gelu_new" else 2),
    )


def model_figures(base: str, settings: TrainSettings) -> ModelFigures:
    """The figures of `base` (built-in, folder or hub id in the cache), built on the meta device: no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from dvoinik.training.models import ModelError, is_builtin, lora_target_modules

    config = _config_of(base, settings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    try:  # a built-in configuration is trained from scratch: LoRA would adapt random weights
        targets = [] if is_builtin(base) else lora_target_modules(model, settings.lora_targets)
    except ModelError:
        targets = []
    per_rank = 0
    if targets:  # LoRA adds rank × (in + out) weights to each targeted linear layer
        for module_name, module in model.named_modules():
            if module_name.split(".")[-1] in targets and hasattr(module, "weight") and module.weight.dim() == 2:
                out_features, in_features = module.weight.shape
                per_rank += in_features + out_features
    return figures_from_model(base, model, per_rank)


def plan_run(settings: TrainSettings, hardware: Hardware | None = None, gpus: int | None = None,
             shards: int = 1) -> Plan:
    """The plan of `settings` per GPU of `hardware` (default: the visible GPUs; `gpus` of them when given),
    each process holding the whole model (one GPU, or DDP), or FSDP2 over `shards` GPUs."""
    figures = model_figures(settings.base, settings)
    hardware = hardware or visible_hardware()
    if hardware is not None and gpus:
        hardware = replace(hardware, gpus=gpus)
    setup = Setup.of(settings, gpu=hardware is not None, shards=shards)
    plan = memory_plan(figures, setup)
    if hardware is None:
        return Plan(figures, plan, None)
    if fits(plan, hardware):
        return Plan(figures, plan, hardware, largest_batch=largest_batch(figures, setup, hardware))
    return Plan(figures, plan, hardware, tuple(suggestions(figures, setup, hardware, settings)))


# ---------------------------------------------------------------- in words


def _gib(value: int) -> str:
    return f"{value / GIB:,.1f} GiB"


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the terminal shows it."""
    f, p, s = plan.figures, plan.plan, plan.plan.setup
    compute = "bf16/fp16" if s.half else "fp32"
    method = "full fine-tune" if s.method == "full" else f"LoRA r{s.lora_rank}"
    lines = [
        f"Plan for {f.name} ({f.model_type}, {f.layers} layers, width {f.hidden}, vocabulary {f.vocab:,}): "
        f"{method} · batch {s.batch_size} × block {s.block_size} · {compute} · gradient checkpointing "
        f"{'on' if s.gradient_checkpointing else 'off'}" + (f" · FSDP2 over {s.shards} GPUs" if s.shards > 1 else ""),
        f"  weights: {p.parameters:,} ({p.parameters / 1e9:.2f}B); trained: {p.trainable:,} "
        f"({p.trainable / max(1, p.parameters):.2%})",
        "  memory per GPU:",
    ]
    weights_note = ("fp32 master weights" + (" + their 16-bit casts" if s.half else "")) if s.method == "full" else \
        f"the frozen base in {'16' if s.half else '32'} bits, the adapter in fp32"
    rows = [
        ("weights", p.weights, weights_note + (f", sharded over {s.shards}" if s.shards > 1 else "")),
        ("gradients", p.gradients, "fp32, trained weights only"),
        ("optimizer", p.optimizer, "AdamW: two fp32 moments per trained weight"),
        ("activations", p.activations, f"{s.batch_size * s.block_size:,} tokens × {f.layers} layers"
         + (", checkpointed" if s.gradient_checkpointing else "")),
        ("logits", p.logits, f"{s.batch_size * s.block_size:,} tokens × {f.vocab:,} scores"),
        ("overhead", p.overhead, "CUDA context, workspaces, allocator: 1 GiB + 10%"),
        ("total", p.total, ""),
    ]
    lines += [f"    {label:<12}{_gib(value):>12}  {note}".rstrip() for label, value, note in rows]
    hardware = plan.hardware
    if hardware is None:
        lines.append("  no CUDA GPU is visible: pass --gpu-memory 24GB (and --gpus N) to check a card you plan to use")
        return lines
    where = f"{hardware.gpus} × {hardware.name} ({_gib(hardware.memory)} each)"
    if plan.fits:
        lines.append(f"  fits on {where}: {_gib(hardware.memory - p.total)} to spare; the largest batch_size that "
                     f"fits is {plan.largest_batch}")
        return lines
    lines.append(f"  does NOT fit on {where}: {_gib(p.total - hardware.memory)} short")
    if plan.suggestions:
        lines.append("  what fits instead (each planned again):")
        lines += [f"    {sug.change}  → {_gib(sug.plan.total)}" for sug in plan.suggestions]
    else:
        lines.append("  nothing tried fits (gradient checkpointing, batch 1, LoRA, FSDP over up to 64 GPUs); "
                     "a smaller base model is needed")
    return lines
