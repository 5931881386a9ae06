"""The loaded double: a checkpoint (full model or LoRA adapter) or a weighted mix of style adapters, with its copy index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvoinik.generation.copyindex import CopyIndex, open_copy_index
from dvoinik.generation.decoding import GenerationError
from dvoinik.generation.wordindex import WordIndex, open_word_index
from dvoinik.runs import AUTO, Run, find_run, resolve_checkpoint, run_token_set
from dvoinik.training.models import adapter_base, is_adapter_folder, load_base_model, load_checkpoint_model
from dvoinik.voices import markers_of
from dvoinik.workspace import Workspace


@dataclass
class Double:
    """A model ready to write: its tokenizer, where it came from, and the copy index of its training texts."""

    model: Any
    tokenizer: Any
    checkpoint: str  # what the user would name: "demo/checkpoint-300", or the style mix
    index: CopyIndex | None = None
    context_length: int | None = None  # positions the model has at all
    trained_length: int | None = None  # positions it was trained on, when fewer (a built-in model's block size)
    styles: dict[str, str] = field(default_factory=dict)  # a style mix: run name → its adapter's name in the model
    mix: dict[str, float] = field(default_factory=dict)  # the weights of the mix now active
    words: WordIndex | None = None  # the training texts as normalised words (copy scores' word measure)
    voices: dict[str, int] = field(default_factory=dict)  # a run with voices: author -> marker id (target first)

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def load_checkpoint(folder: Path, index: CopyIndex | None = None, label: str | None = None,
                    trained_length: int | None = None, words: WordIndex | None = None) -> Double:
    """A Double from a checkpoint folder (full model or LoRA adapter)."""
    from transformers import AutoTokenizer

    model = _ready(load_checkpoint_model(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    voices = markers_of(tokenizer)
    if voices:  # a marker starts a text; the double never writes one
        model.generation_config.suppress_tokens = list(voices.values())
    return Double(model, tokenizer, label or folder.name, index, _context_length(model), trained_length,
                  words=words, voices=voices)


def load_double(
    ws: Workspace, run: str | None = None, checkpoint: str = AUTO, style: dict[str, float] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Double:
    """The run's checkpoint (by name, `best`, `last`; `auto` = best if evaluated, else last), or a style mix."""
    if style:
        if run is not None:
            raise GenerationError("--style names its runs itself; leave out --run")
        return load_style_mix(ws, style, checkpoint, on_progress)
    chosen = find_run(ws, run)
    folder = resolve_checkpoint(chosen, checkpoint)
    index = open_copy_index(run_token_set(ws, chosen), on_progress)
    return load_checkpoint(folder, index, f"{chosen.name}/{folder.name}", chosen.trained_length,
                           open_word_index(ws.root, on_progress))


def weighted_names(text: str, malformed: Callable[[str], Exception],
                   accept: Callable[[float], bool] = lambda weight: True) -> list[tuple[str, float]]:
    """`"A=0.7,B=0.3"` → `[("A", 0.7), ("B", 0.3)]`; `malformed(item)` is raised for an item that is not
    NAME=WEIGHT with a number (not NaN) that `accept` takes."""
    items = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or weight != weight or not accept(weight):
            raise malformed(item)
        items.append((name.strip(), weight))
    return items


def parse_style(text: str) -> dict[str, float]:
    """`"A=0.7,B=0.3"` → `{"A": 0.7, "B": 0.3}`."""
    def malformed(item: str) -> GenerationError:
        return GenerationError(f"--style {item!r}: expected RUN=WEIGHT, e.g. --style early=0.7,late=0.3")

    weights = dict(weighted_names(text, malformed))
    if len(weights) < 1:
        raise GenerationError("--style: name at least one run, e.g. --style early=0.7,late=0.3")
    return weights


def load_style_mix(
    ws: Workspace, weights: dict[str, float], checkpoint: str = AUTO, on_progress: Callable[[str], None] | None = None,
) -> Double:
    """LoRA runs that share one base, combined by weight into one adapter (PEFT `add_weighted_adapter`, "cat").

    "cat" stacks the adapters' ranks, so the mix is exactly the weighted sum of their weight updates.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    runs: list[tuple[Run, Path]] = []
    for name in weights:
        chosen = find_run(ws, name)
        folder = resolve_checkpoint(chosen, checkpoint)
        if not is_adapter_folder(folder):
            raise GenerationError(f"{folder}: --style mixes LoRA adapters, and this run trained every weight "
                                  "(train the styles with --method lora)")
        runs.append((chosen, folder))
    bases = {adapter_base(folder) for _, folder in runs}
    if len(bases) > 1:
        raise GenerationError(f"--style: the runs have different base models ({', '.join(sorted(bases))}); "
                              "adapters mix only on one base")
    # Adapter names become module keys, so they are numbered rather than taken from run names.
    names = [f"style{i}" for i in range(len(runs))]
    model = PeftModel.from_pretrained(load_base_model(bases.pop()), runs[0][1], adapter_name=names[0])
    for name, (_, folder) in zip(names[1:], runs[1:]):
        model.load_adapter(folder, adapter_name=name)
    first, folder = runs[0]
    index = open_copy_index(run_token_set(ws, first), on_progress)
    double = Double(_ready(model), AutoTokenizer.from_pretrained(folder), "", index, _context_length(model),
                    styles=dict(zip(weights, names)), words=open_word_index(ws.root, on_progress))
    return set_style_mix(double, weights)


MIXES_KEPT = 8  # weighted adapters kept in memory for quick switching between recent mixes


def set_style_mix(double: Double, weights: dict[str, float]) -> Double:
    """Make `weights` (run → weight, over the runs the mix was loaded with) the active mix of `double`, in place.

    The studio's sliders call this between generations; a mix already built is reused.
    """
    unknown = sorted(set(weights) - set(double.styles))
    if unknown:
        raise GenerationError(f"style {', '.join(unknown)}: not among the loaded runs ({', '.join(double.styles)})")
    if not any(w != 0 for w in weights.values()):
        raise GenerationError("style: give at least one run a weight other than 0")
    runs = [run for run in double.styles if weights.get(run, 0.0) != 0]
    name = "mix-" + "-".join(f"{double.styles[r]}_{weights[r]:g}" for r in runs).replace(".", "p")
    model = double.model
    if name not in model.peft_config:
        built = [a for a in model.peft_config if a.startswith("mix-")]
        for old in built[: max(0, len(built) - MIXES_KEPT + 1)]:
            if old != model.active_adapter:
                model.delete_adapter(old)
        model.add_weighted_adapter([double.styles[r] for r in runs], [weights[r] for r in runs], name,
                                   combination_type="cat")
    model.set_adapter(name)
    model.eval()
    double.mix = {run: weights.get(run, 0.0) for run in double.styles}
    double.checkpoint = "+".join(f"{run}={weight:g}" for run, weight in double.mix.items())
    return double


def _ready(model: Any) -> Any:
    """In eval mode, on the GPU when there is one."""
    import torch

    model.eval()
    return model.to("cuda") if torch.cuda.is_available() else model


def _context_length(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
