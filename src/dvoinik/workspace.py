"""A double's folder and its `dvoinik.toml`, the single source of truth for its settings.

A workspace is a folder holding one double::

    my-double/
      dvoinik.toml   [double] name and language, [[sources]], and one table of settings per stage:
                     [corpus], [train], [generate], [check], [evaluate], [serve]
      corpus/        built by `dvoinik corpus`
      tokens/        built by the token stage
      runs/          one folder per training run

This module only reads and writes `dvoinik.toml`. Sources are never touched: the
workspace records their paths (relative to the workspace folder, so a workspace moved
together with its sources keeps working). Every user mistake raises `WorkspaceError`
with a one-line message naming the file or path and the problem.

Later stages keep their settings in their own tables (`[train]`, `[generate]`, ...);
`add_sources` edits the file with tomlkit, so those tables and the user's comments
survive every write.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array, Whitespace

from dvoinik.atomic import atomic_write_text
from dvoinik.paths import escaped_path, is_clean, shown, unescaped_path

CONFIG_NAME = "dvoinik.toml"
ROLES = ("target", "influence")
SECTIONS = ("auto", "works", "chapters")
DEFAULT_WEIGHTS = {"target": 10.0, "influence": 1.0}  # the story upsampled the target author x10
DEFAULT_LANGUAGE = "ru"

_DOUBLE_KEYS = ("name", "language")
S = TypeVar("S")
_SOURCE_KEYS = ("path", "path_bytes", "author", "role", "weight", "sections")


class WorkspaceError(Exception):
    """A user's mistake, with a one-line message naming the file/path and the problem."""


@dataclass(frozen=True)
class Source:
    path: Path  # absolute and resolved; stored in the toml relative to the workspace folder
    author: str
    role: str  # "target" | "influence"
    weight: float  # multiplier on the author's share of training tokens
    sections: str = "auto"  # "auto" | "works" | "chapters": how FB2/EPUB sections become works


def _setting(default: Any, help: str, check: Callable[[Any], bool] | None = None, rule: str = "") -> Any:
    """A CorpusSettings field whose comment in dvoinik.toml and whose range check live beside it."""
    return field(default=default, metadata={"help": help, "check": check, "rule": rule})


@dataclass(frozen=True)
class CorpusSettings:
    seed: int = _setting(1234, "random seed for the validation split and for MinHash")
    val_fraction: float = _setting(
        0.1, "share of each author's works held out for validation (by whole work)",
        lambda v: 0.0 <= v < 1.0, "at least 0 and below 1",
    )
    min_val_works: int = _setting(
        1, "hold out at least this many of the target author's works (when there are 2 or more)",
        lambda v: v >= 0, "0 or more",
    )
    near_duplicate_threshold: float = _setting(
        0.8, "estimated Jaccard similarity above which two works count as near duplicates",
        lambda v: 0.0 < v <= 1.0, "above 0 and at most 1",
    )
    shingle_words: int = _setting(
        5, "words per shingle when comparing works for near duplicates", lambda v: v >= 1, "1 or more",
    )
    containment_threshold: float = _setting(
        0.8, "share of a work's shingles found inside a longer work above which it is removed as an excerpt of it",
        lambda v: 0.0 < v <= 1.0, "above 0 and at most 1",
    )
    repeated_paragraph_min_words: int = _setting(
        12, "paragraphs at least this long that repeat elsewhere are removed as duplicates",
        lambda v: v >= 1, "1 or more",
    )
    boilerplate_min_docs: int = _setting(
        3, "a short paragraph near the start or end of at least this many works is boilerplate and removed",
        lambda v: v >= 2, "2 or more",
    )
    boilerplate_edge_paragraphs: int = _setting(
        12, "how many paragraphs at each end of a work count as its header and footer for boilerplate",
        lambda v: v >= 1, "1 or more",
    )
    min_document_words: int = _setting(
        20, "cleaned works shorter than this are dropped (and reported)", lambda v: v >= 0, "0 or more",
    )
    workers: int = _setting(0, "processes reading and cleaning files; 0 = number of CPU cores", lambda v: v >= 0, "0 or more")


METHODS = ("full", "lora")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DECAYS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """[train]: what `dvoinik train` does unless a flag says otherwise."""

    base: str = _setting(
        "tiny", "a built-in configuration trained from scratch (tiny, small), a hub id or a local model folder",
        lambda v: bool(v.strip()), "not empty",
    )
    method: str = _setting("full", "full: train every weight; lora: a PEFT LoRA adapter on a frozen base",
                           lambda v: v in METHODS, "one of: " + ", ".join(METHODS))
    seed: int = _setting(1234, "random seed for initialisation, data order and dropout (a run is repeatable)")
    vocab_size: int = _setting(
        8000, "vocabulary of the byte-level BPE trained on the corpus (built-in configurations only)",
        lambda v: 300 <= v <= 1_000_000, "between 300 and 1000000",
    )
    block_size: int = _setting(512, "tokens per training sequence (packed across documents)", lambda v: v >= 8, "8 or more")
    batch_size: int = _setting(8, "sequences per device per forward pass", lambda v: v >= 1, "1 or more")
    grad_accum: int = _setting(1, "forward passes per optimizer step (gradient accumulation)", lambda v: v >= 1, "1 or more")
    learning_rate: float = _setting(
        0.0, "peak learning rate; 0 = by method (6e-4 from scratch, 5e-5 full fine-tune, 2e-4 LoRA)",
        lambda v: 0.0 <= v < 1.0, "at least 0 and below 1",
    )
    decay: str = _setting("cosine", "learning-rate decay after warmup: cosine, linear or constant",
                          lambda v: v in DECAYS, "one of: " + ", ".join(DECAYS))
    warmup_fraction: float = _setting(0.05, "share of max_steps spent warming the learning rate up from 0",
                                      lambda v: 0.0 <= v < 1.0, "at least 0 and below 1")
    min_lr_fraction: float = _setting(0.1, "the learning rate decays to this share of its peak",
                                      lambda v: 0.0 <= v <= 1.0, "between 0 and 1")
    weight_decay: float = _setting(0.1, "AdamW weight decay (not applied to norms, biases and LoRA-free 1-D weights)",
                                   lambda v: v >= 0.0, "0 or more")
    beta1: float = _setting(0.9, "AdamW beta1", lambda v: 0.0 <= v < 1.0, "at least 0 and below 1")
    beta2: float = _setting(0.95, "AdamW beta2", lambda v: 0.0 <= v < 1.0, "at least 0 and below 1")
    grad_clip: float = _setting(1.0, "clip the gradient norm to this; 0 = no clipping", lambda v: v >= 0.0, "0 or more")
    max_steps: int = _setting(2000, "stop after this many optimizer steps", lambda v: v >= 1, "1 or more")
    epochs: float = _setting(0.0, "stop after this many passes over the training tokens; 0 = use max_steps",
                             lambda v: v >= 0.0, "0 or more")
    time_budget_minutes: float = _setting(0.0, "stop (and save) after this many minutes of training; 0 = no limit",
                                          lambda v: v >= 0.0, "0 or more")
    target_train_ppl: float = _setting(
        0.0, "stop once training perplexity (mean over a logging window) falls to this; 0 = off (the story stopped at 3-5)",
        lambda v: v == 0.0 or v > 1.0, "0 or above 1",
    )
    save_every: int = _setting(500, "write a checkpoint every this many steps (and always at the end)", lambda v: v >= 1, "1 or more")
    keep_last: int = _setting(0, "keep only the newest this many checkpoints; 0 = keep every checkpoint", lambda v: v >= 0, "0 or more")
    eval_every: int = _setting(250, "measure validation perplexity every this many steps (and at the end)", lambda v: v >= 1, "1 or more")
    eval_blocks: int = _setting(32, "validation sequences per measure and per author group", lambda v: v >= 1, "1 or more")
    log_every: int = _setting(10, "write a metrics line every this many steps", lambda v: v >= 1, "1 or more")
    precision: str = _setting("auto", "auto (bf16 on GPUs that have it, else fp16; fp32 on CPU), fp32, bf16 or fp16",
                              lambda v: v in PRECISIONS, "one of: " + ", ".join(PRECISIONS))
    gradient_checkpointing: bool = _setting(False, "recompute activations in the backward pass: less memory, about 30% slower")
    compile: bool = _setting(False, "torch.compile the model (faster steps on GPUs after a slow first step)")
    lora_rank: int = _setting(16, "LoRA rank r", lambda v: v >= 1, "1 or more")
    lora_alpha: float = _setting(32.0, "LoRA alpha (the update is scaled by alpha / r)", lambda v: v > 0.0, "above 0")
    lora_dropout: float = _setting(0.05, "dropout on the LoRA input", lambda v: 0.0 <= v < 1.0, "at least 0 and below 1")
    lora_targets: str = _setting("", "comma-separated module names for LoRA; empty = chosen by architecture")
    voices: bool = _setting(False, "one model, many voices: every training block starts with its author's marker "
                                   "token, and `generate --voice NAME` (or A=0.7,B=0.3) picks or mixes them")


PRESETS = ("coherent", "nucleus", "greedy", "beam")  # their values are in generation/decoding.py


@dataclass(frozen=True)
class GenerateSettings:
    """[generate]: what `dvoinik generate` (and later the studio) does unless a flag says otherwise."""

    preset: str = _setting(
        "coherent", "decoding preset: coherent (low temperature, repetition penalty), nucleus (the story's top_p 0.9, "
        "temperature 1.0), greedy or beam", lambda v: v in PRESETS, "one of: " + ", ".join(PRESETS),
    )
    variants: int = _setting(1, "continuations per request (--n)", lambda v: 1 <= v <= 64, "between 1 and 64")
    max_new_tokens: int = _setting(200, "tokens to generate per continuation", lambda v: v >= 1, "1 or more")
    guard: int = _setting(
        10, "originality guard: never complete an n-gram of this many tokens that occurs in the training texts; "
        "0 = off", lambda v: v == 0 or v >= 2, "0 or at least 2",
    )


@dataclass(frozen=True)
class ServeSettings:
    """[serve]: how `dvoinik serve` runs the studio and the APIs (the API key is never kept here)."""

    host: str = _setting("127.0.0.1", "address to listen on; any other than loopback needs an API key",
                         lambda v: bool(v.strip()), "an address")
    port: int = _setting(5001, "port (5001 is KoboldAI's)", lambda v: 1 <= v <= 65535, "between 1 and 65535")
    queue_size: int = _setting(8, "generation requests that may wait for the model; beyond: 503 with Retry-After",
                               lambda v: 1 <= v <= 1000, "between 1 and 1000")
    max_variants: int = _setting(8, "the most variants one request may ask for", lambda v: 1 <= v <= 64,
                                 "between 1 and 64")
    max_new_tokens: int = _setting(1024, "the most tokens one request may ask to generate", lambda v: v >= 1,
                                   "1 or more")
    context_tokens: int = _setting(0, "the studio's context budget in tokens (prompt + continuation); 0 = the "
                                      "length the model was trained on", lambda v: v >= 0, "0 or more")
    max_text_chars: int = _setting(2_000_000, "the longest text a request may send (a document, a prompt)",
                                   lambda v: v >= 1000, "1000 or more")
    max_connections: int = _setting(100, "open connections at most; more are closed at once (and requests beyond "
                                         "it get 503)", lambda v: 2 <= v <= 100_000, "between 2 and 100000")
    header_timeout: float = _setting(10.0, "seconds a client has to send a request's headers (slow clients are cut "
                                           "off)", lambda v: 0 < v <= 3600, "above 0 and at most 3600")
    body_timeout: float = _setting(60.0, "seconds a client has to send a request's body", lambda v: 0 < v <= 3600,
                                   "above 0 and at most 3600")
    blind_readers: int = _setting(500, "readers one blind test takes at most", lambda v: v >= 1, "1 or more")
    blind_readers_per_address: int = _setting(
        20, "readers one blind test takes from one network address (one computer, or one network behind a router)",
        lambda v: v >= 1, "1 or more")


@dataclass(frozen=True)
class CheckSettings:
    """[check]: what counts as copied."""

    # 27 words ≈ 50 tokens: the built-in BPE (8,000) writes 1.87 tokens per word of the shared corpus's prose.
    min_words: int = _setting(27, "a span of at least this many words found in the training texts (compared as "
                                  "normalised words) counts as copied: `check` reports it and exits with status 1, "
                                  "copy scores and evaluate flag it", lambda v: v >= 1, "1 or more")
    min_tokens: int = _setting(50, "the same in tokens of the run's tokenizer, for what is still measured in tokens "
                                   "(`check --min-tokens`, evaluate's token figures)", lambda v: v >= 1, "1 or more")


@dataclass(frozen=True)
class EvaluateSettings:
    """[evaluate]: how `dvoinik evaluate` measures every checkpoint of a run."""

    prompts: int = _setting(24, "prompts taken from the target author's held-out works (one sample each)",
                            lambda v: v >= 1, "1 or more")
    prompt_tokens: int = _setting(32, "tokens of held-out text in each prompt", lambda v: v >= 1, "1 or more")
    sample_tokens: int = _setting(192, "tokens generated per sample (and of real text compared with them)",
                                  lambda v: v >= 8, "8 or more")
    preset: str = _setting("nucleus", "decoding preset of the samples (the story's setting by default)",
                           lambda v: v in PRESETS, "one of: " + ", ".join(PRESETS))
    extraction_prompts: int = _setting(32, "extraction audit: 64-token prompts from the target's training works",
                                       lambda v: v >= 0, "0 or more")
    max_target_copy_share: float = _setting(
        0.0, "recommendation rule: the most samples allowed to hold a copied span of [check] min_words (a share)",
        lambda v: 0.0 <= v <= 1.0, "between 0 and 1",
    )
    max_extraction_share: float = _setting(
        0.05, "recommendation rule: the most extraction prompts allowed to be reproduced word for word (a share)",
        lambda v: 0.0 <= v <= 1.0, "between 0 and 1",
    )
    seed: int = _setting(0, "seed for the samples (every checkpoint gets the same draws)")


FRAMES = ("auto", "dialogue", "quotes", "letter", "diary")  # their texts are in generation/interview.py


@dataclass(frozen=True)
class InterviewSettings:
    """[interview]: how `dvoinik interview`, the studio's interview and the OpenAI chat API frame a question."""

    frame: str = _setting("auto", "how a question is put to the double: dialogue (lines led by dashes), quotes, "
                                  "letter, diary; auto = the target author's own dialogue layout",
                          lambda v: v in FRAMES, "one of: " + ", ".join(FRAMES))
    preamble: str = _setting("", "text before the conversation (who is asked, where); empty = none")
    question: str = _setting("", "how a question is written, with {question} in it; empty = the frame's own",
                             lambda v: not v or "{question}" in v, "empty or a text with {question} in it")
    answer: str = _setting("", "how the double's answer opens (it writes on from here); empty = the frame's own")
    end: str = _setting("", "where the answer's turn ends (the text is cut there); empty = the frame's own")
    max_new_tokens: int = _setting(120, "tokens an answer may take", lambda v: v >= 1, "1 or more")


@dataclass(frozen=True)
class DpoSettings:
    """[dpo]: preference optimisation on the writer's picks (`dvoinik train --method dpo`)."""

    beta: float = _setting(0.1, "DPO beta: how far the double may move from the checkpoint it starts from "
                                "(lower = further)", lambda v: v > 0.0, "above 0")
    learning_rate: float = _setting(0.0, "peak learning rate; 0 = by the source run's method (1e-4 from scratch, "
                                         "5e-6 full fine-tune, 5e-5 LoRA)", lambda v: 0.0 <= v < 1.0,
                                    "at least 0 and below 1")
    max_steps: int = _setting(200, "optimizer steps", lambda v: v >= 1, "1 or more")
    batch_size: int = _setting(8, "pairs per optimizer step", lambda v: v >= 1, "1 or more")
    held_out: float = _setting(0.2, "share of the pairs kept out of training to measure preference accuracy",
                               lambda v: 0.0 <= v < 1.0, "at least 0 and below 1")
    max_prompt_tokens: int = _setting(256, "a pair's context is cut from the left to this many tokens",
                                      lambda v: v >= 1, "1 or more")
    max_answer_tokens: int = _setting(256, "chosen and rejected texts are cut to this many tokens",
                                      lambda v: v >= 1, "1 or more")
    save_every: int = _setting(100, "write a checkpoint every this many steps (and always at the end)",
                               lambda v: v >= 1, "1 or more")
    seed: int = _setting(1234, "seed of the held-out split and the order of the pairs")


@dataclass(frozen=True)
class Workspace:
    root: Path
    name: str
    language: str  # default "ru"; nothing is tied to one language
    sources: tuple[Source, ...]
    corpus: CorpusSettings
    train: TrainSettings = TrainSettings()
    generate: GenerateSettings = GenerateSettings()
    check: CheckSettings = CheckSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    serve: ServeSettings = ServeSettings()
    interview: InterviewSettings = InterviewSettings()
    dpo: DpoSettings = DpoSettings()

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def target_author(self) -> str | None:
        return next((s.author for s in self.sources if s.role == "target"), None)

    def stored_path(self, source: Source) -> str:
        """The source's path as dvoinik.toml records it (relative to the workspace where possible)."""
        return stored_path(self.root, source.path)


# ---------------------------------------------------------------- paths


def normalize_path(path: Path | str) -> Path:
    """A user-given path as the workspace compares and records it: ~ expanded, absolute, resolved."""
    return Path(path).expanduser().resolve()


def stored_path(root: Path, path: Path) -> str:
    """`path` relative to the workspace folder `root` (forward slashes); absolute if on another drive."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # Windows: another drive
        return Path(path).as_posix()
    return Path(rel).as_posix()


# ---------------------------------------------------------------- init


def _settings_lines(cls: type) -> list[str]:
    return [f"{f.name} = {tomlkit.item(f.default).as_string()}    # {f.metadata['help']}" for f in fields(cls)]


def render_config(name: str, language: str) -> str:
    """The text of a fresh dvoinik.toml: every [corpus] default spelled out with its comment."""
    lines = [
        "# dvoinik workspace: the settings of one neural double.",
        "# This file is the single source of truth; edit it freely (comments are kept).",
        "# Paths in [[sources]] are relative to this folder.",
        "",
        "[double]",
        f"name = {tomlkit.string(name).as_string()}",
        f"language = {tomlkit.string(language).as_string()}    # language of the texts",
        "",
        "# How `dvoinik corpus` cleans, deduplicates and splits the sources.",
        "[corpus]",
    ]
    lines += _settings_lines(CorpusSettings)
    lines += [
        "",
        "# How `dvoinik train` trains the double (a flag such as --base or --set KEY=VALUE overrides one run).",
        "[train]",
    ]
    lines += _settings_lines(TrainSettings)
    for table, cls, comment in (
        ("generate", GenerateSettings, "How `dvoinik generate` decodes (flags such as --preset or --guard override one call)."),
        ("check", CheckSettings, "What `dvoinik check` and the copy scores count as copied."),
        ("evaluate", EvaluateSettings, "How `dvoinik evaluate` measures checkpoints and picks one."),
        ("serve", ServeSettings, "How `dvoinik serve` runs the studio and the KoboldAI/OpenAI APIs."),
        ("interview", InterviewSettings, "How `dvoinik interview` and the studio's interview put questions to the double."),
        ("dpo", DpoSettings, "How `dvoinik train --method dpo` learns from the writer's picks."),
    ):
        lines += ["", f"# {comment}", f"[{table}]"] + _settings_lines(cls)
    lines += [
        "",
        "# Sources are added with `dvoinik add PATH... --author NAME [--role target|influence] [--weight W]`:",
        "# [[sources]]",
        '# path = "../books/author"    # a file or a folder (read recursively)',
        '# author = "Author"',
        '# role = "target"             # one target author per double; others are "influence"',
        "# weight = 10.0               # multiplier on the author's share of training tokens",
        '# sections = "auto"           # auto | works | chapters: how FB2/EPUB sections become works',
        "",
    ]
    return "\n".join(lines)


def init_workspace(root: Path, name: str | None = None, language: str = DEFAULT_LANGUAGE) -> Workspace:
    """Create a workspace in `root` (created if missing); error if it already holds dvoinik.toml."""
    root = normalize_path(root)
    config = root / CONFIG_NAME
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a folder")
    if config.exists():
        raise WorkspaceError(f"{config} already exists: {root} is already a dvoinik workspace")
    name = (name if name is not None else root.name or "double").strip()
    if not name:
        raise WorkspaceError(f"{config}: the double's name must not be empty")
    language = language.strip()
    if not language:
        raise WorkspaceError(f"{config}: the language must not be empty")
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config, render_config(name, language))
    except OSError as exc:
        raise WorkspaceError(f"{config}: cannot write: {exc.strerror or exc}") from exc
    return load_workspace(root)


# ---------------------------------------------------------------- load


def find_workspace(start: Path) -> Path:
    """The nearest folder at or above `start` holding dvoinik.toml, like git finds its repository."""
    start = normalize_path(start)
    here = start if start.is_dir() else start.parent
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise WorkspaceError(
        f"{start} is not inside a dvoinik workspace (no {CONFIG_NAME} here or in any parent folder); "
        "run `dvoinik init` or pass -w DIR"
    )


def _read_document(config: Path) -> tomlkit.TOMLDocument:
    try:
        text = config.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(f"{config}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise WorkspaceError(f"{config}: cannot read: {exc.strerror or exc}") from exc
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        line, col = getattr(exc, "line", None), getattr(exc, "col", None)
        where = f"{config}:{line}:{col}" if line is not None else str(config)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkspaceError(f"{where}: TOML syntax error: {message}") from exc


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _check_type(where: str, key: str, value: Any, kind: type) -> Any:
    """`value` as `kind` (an int is accepted where a float is expected); WorkspaceError otherwise."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise WorkspaceError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WorkspaceError(f"{where}: {key} must be {_type_name(kind())}, got {value!r}")
    return value


def _check_unknown(where: str, table: dict, known: Sequence[str]) -> None:
    unknown = [k for k in table if k not in known]
    if unknown:
        raise WorkspaceError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(known)})")


def parse_settings(cls: type[S], where: str, table: Any) -> S:
    """`cls` (CorpusSettings, TrainSettings) from a TOML table; WorkspaceError naming `where` on a bad value."""
    if not isinstance(table, dict):
        raise WorkspaceError(f"{where} must be a table, got {table!r}")
    known = [f.name for f in fields(cls)]
    _check_unknown(where, table, known)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in table:
            continue
        kind = type(f.default)
        value = _check_type(where, f.name, table[f.name], kind)
        if kind is float and not math.isfinite(value):
            raise WorkspaceError(f"{where}: {f.name} must be a finite number, got {value!r}")
        check = f.metadata["check"]
        if check is not None and not check(value):
            raise WorkspaceError(f"{where}: {f.name} must be {f.metadata['rule']}, got {value!r}")
        values[f.name] = value
    return cls(**values)


def _check_weight(where: str, weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise WorkspaceError(f"{where}: weight must be a number, got {weight!r}")
    weight = float(weight)
    if not math.isfinite(weight) or weight <= 0:
        raise WorkspaceError(f"{where}: weight must be a positive finite number, got {weight!r}")
    return weight


def _check_role(where: str, role: Any) -> str:
    if role not in ROLES:
        raise WorkspaceError(f"{where}: unknown role {role!r} (expected one of: {', '.join(ROLES)})")
    return role


def _check_sections(where: str, sections: Any) -> str:
    if sections not in SECTIONS:
        raise WorkspaceError(f"{where}: unknown sections mode {sections!r} (expected one of: {', '.join(SECTIONS)})")
    return sections


def _parse_source(config: Path, root: Path, index: int, table: Any) -> Source:
    where = f"{config}: [[sources]] #{index}"
    if not isinstance(table, dict):
        raise WorkspaceError(f"{where}: each source must be a table, got {table!r}")
    _check_unknown(where, table, _SOURCE_KEYS)
    if ("path" in table) == ("path_bytes" in table):
        raise WorkspaceError(f"{where}: give path (or, for a name that is not UTF-8, path_bytes), not "
                             f"{'both' if 'path' in table else 'neither'}")
    if "author" not in table:
        raise WorkspaceError(f"{where}: missing author")
    key = "path" if "path" in table else "path_bytes"
    raw_path = _check_type(where, key, table[key], str)
    if not raw_path.strip():
        raise WorkspaceError(f"{where}: {key} must not be empty")
    if key == "path_bytes":  # the name's bytes, the undecodable ones %-escaped (see dvoinik.paths)
        raw_path = os.fspath(unescaped_path(raw_path))
    where = f"{where} ({shown(raw_path)})"
    author = _check_type(where, "author", table["author"], str).strip()
    if not author:
        raise WorkspaceError(f"{where}: author must not be empty")
    role = _check_role(where, table.get("role", "influence"))
    weight = _check_weight(where, table.get("weight", DEFAULT_WEIGHTS[role]))
    sections = _check_sections(where, table.get("sections", "auto"))
    path = Path(raw_path).expanduser()
    if not path.is_absolute():
        path = root / path
    return Source(path=path.resolve(), author=author, role=role, weight=weight, sections=sections)


def _check_consistency(where: str, sources: Sequence[Source]) -> None:
    """One role per author, and at most one target author per double."""
    roles: dict[str, str] = {}
    for s in sources:
        known = roles.setdefault(s.author, s.role)
        if known != s.role:
            raise WorkspaceError(f"{where}: author {s.author!r} is recorded both as {known} and as {s.role}")
    targets = [a for a, r in roles.items() if r == "target"]
    if len(targets) > 1:
        raise WorkspaceError(
            f"{where}: more than one target author ({', '.join(targets)}); a double has one target author"
        )


def parse_workspace(root: Path, doc: dict) -> Workspace:
    """A Workspace from the plain contents of dvoinik.toml (pure: reads no files)."""
    config = root / CONFIG_NAME
    double = doc.get("double", {})
    if not isinstance(double, dict):
        raise WorkspaceError(f"{config}: double must be a table ([double]), got {double!r}")
    _check_unknown(f"{config}: [double]", double, _DOUBLE_KEYS)
    name = _check_type(f"{config}: [double]", "name", double.get("name", root.name or "double"), str).strip()
    language = _check_type(f"{config}: [double]", "language", double.get("language", DEFAULT_LANGUAGE), str).strip()
    if not name:
        raise WorkspaceError(f"{config}: [double] name must not be empty")
    if not language:
        raise WorkspaceError(f"{config}: [double] language must not be empty")
    corpus = parse_settings(CorpusSettings, f"{config}: [corpus]", doc.get("corpus", {}))
    train = parse_settings(TrainSettings, f"{config}: [train]", doc.get("train", {}))
    generate = parse_settings(GenerateSettings, f"{config}: [generate]", doc.get("generate", {}))
    check = parse_settings(CheckSettings, f"{config}: [check]", doc.get("check", {}))
    evaluate = parse_settings(EvaluateSettings, f"{config}: [evaluate]", doc.get("evaluate", {}))
    serve = parse_settings(ServeSettings, f"{config}: [serve]", doc.get("serve", {}))
    interview = parse_settings(InterviewSettings, f"{config}: [interview]", doc.get("interview", {}))
    dpo = parse_settings(DpoSettings, f"{config}: [dpo]", doc.get("dpo", {}))
    raw_sources = doc.get("sources", [])
    if not isinstance(raw_sources, list):
        raise WorkspaceError(f"{config}: sources must be an array of tables ([[sources]]), got {raw_sources!r}")
    sources = tuple(_parse_source(config, root, i, t) for i, t in enumerate(raw_sources, start=1))
    _check_consistency(str(config), sources)
    return Workspace(root=root, name=name, language=language, sources=sources, corpus=corpus, train=train,
                     generate=generate, check=check, evaluate=evaluate, serve=serve, interview=interview, dpo=dpo)


def load_workspace(root: Path) -> Workspace:
    """Read and validate `root/dvoinik.toml` (`root` may also be the dvoinik.toml file itself)."""
    root = normalize_path(root)
    if root.is_file() and root.name == CONFIG_NAME:
        root = root.parent
    config = root / CONFIG_NAME
    if not config.is_file():
        raise WorkspaceError(
            f"{root} is not a dvoinik workspace (no {CONFIG_NAME}); run `dvoinik init` or pass -w DIR"
        )
    return parse_workspace(root, _read_document(config).unwrap())


# ---------------------------------------------------------------- settings overrides


def parse_assignments(assignments: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """`["lr=3e-4", "base=gpt2"]` → `{"lr": 0.0003, "base": "gpt2"}`: each value read as TOML, else as a string."""
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise WorkspaceError(f"{where} {item!r}: expected KEY=VALUE")
        try:
            values[key] = tomlkit.parse(f"value = {raw}").unwrap()["value"]
        except TOMLKitError:
            values[key] = raw  # a bare word such as gpt2 or ./models/base
    return values


def with_overrides(settings: S, overrides: dict[str, Any], where: str) -> S:
    """`settings` with `overrides` applied and validated like the file's own values."""
    merged = {f.name: getattr(settings, f.name) for f in fields(settings)}  # type: ignore[arg-type]
    merged.update(overrides)
    return parse_settings(type(settings), where, merged)


def write_settings(ws: Workspace, table_name: str, values: dict[str, Any]) -> Workspace:
    """Set `values` in `[table_name]` of dvoinik.toml (validated first; comments kept); return the new workspace."""
    config = ws.config_path
    doc = _read_document(config)
    if table_name not in doc:
        doc.append(table_name, tomlkit.table())
    table = doc[table_name]
    for key, value in values.items():
        table[key] = value
    return _validate_and_write(ws.root, doc)


def _validate_and_write(root: Path, doc: tomlkit.TOMLDocument) -> Workspace:
    """Write the edited dvoinik.toml `doc` atomically, only if it is a valid workspace; return that workspace."""
    text = tomlkit.dumps(doc)
    updated = parse_workspace(root, tomlkit.parse(text).unwrap())
    try:
        atomic_write_text(root / CONFIG_NAME, text)
    except OSError as exc:
        raise WorkspaceError(f"{root / CONFIG_NAME}: cannot write: {exc.strerror or exc}") from exc
    return updated


# ---------------------------------------------------------------- add


def _append_table(aot: AoT, item: dict) -> None:
    """Append `item` as a [[table]] with a blank line before it, moving the blank lines that
    ended the previous element (before a following [train], say) to the end of the new one."""
    table = tomlkit.table()
    table.update(item)
    table.trivia.indent = "\n"
    if len(aot):
        try:  # cosmetic only; relies on tomlkit's container layout
            body = aot.body[-1].value.body
            trailing = []
            while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace):
                trailing.insert(0, body.pop()[1])
            for ws_item in trailing:
                table.add(ws_item)
        except AttributeError:
            pass
    aot.append(table)


def add_sources(
    ws: Workspace,
    paths: Sequence[Path],
    author: str,
    role: str | None = None,
    weight: float | None = None,
    sections: str = "auto",
) -> tuple[Workspace, list[Source]]:
    """Record `paths` as sources by `author`; return the updated workspace and the sources added.

    `role` defaults to the author's recorded role, else "influence"; `weight` to the author's
    recorded weight, else DEFAULT_WEIGHTS[role]. A path already recorded for this author is
    skipped (it is absent from the returned list); a path that is, holds or lies inside one
    recorded for another author is an error (a text has one author). dvoinik.toml is re-read, validated, edited
    in place (comments and other tables kept) and written atomically; nothing is written when
    nothing is added or anything is wrong.
    """
    current = load_workspace(ws.root)  # the file, not a possibly stale `ws`, is the truth
    config = current.config_path
    author = (author or "").strip()
    if not author:
        raise WorkspaceError(f"{config}: the author's name must not be empty (pass --author NAME)")
    if not paths:
        raise WorkspaceError(f"{config}: no paths given to add")
    recorded = [s for s in current.sources if s.author == author]
    if role is None:
        role = recorded[0].role if recorded else "influence"
    _check_role(f"author {author!r}", role)
    if weight is None:
        weight = recorded[-1].weight if recorded else DEFAULT_WEIGHTS[role]
    weight = _check_weight(f"author {author!r}", weight)
    _check_sections(f"author {author!r}", sections)
    if recorded and recorded[0].role != role:
        raise WorkspaceError(
            f"{config}: author {author!r} is already recorded as {recorded[0].role}, not {role}; "
            "one author has one role"
        )
    target = current.target_author
    if role == "target" and target is not None and target != author:
        raise WorkspaceError(
            f"{config}: the target author is already {target!r}; a double has one target author "
            f"(add {author!r} with --role influence, or edit {CONFIG_NAME})"
        )

    seen = {s.path for s in recorded}
    others = [s for s in current.sources if s.author != author]
    added: list[Source] = []
    for given in paths:
        path = normalize_path(given)
        if not path.exists():
            raise WorkspaceError(f"{shown(given)}: no such file or folder")
        for other in others:
            if path == other.path or path.is_relative_to(other.path) or other.path.is_relative_to(path):
                raise WorkspaceError(
                    f"{shown(given)}: overlaps {shown(stored_path(current.root, other.path))}, already recorded for "
                    f"author {other.author!r}; each text has one author"
                )
        if path in seen:
            continue
        seen.add(path)
        added.append(Source(path=path, author=author, role=role, weight=weight, sections=sections))
    if not added:
        return current, []

    doc = _read_document(config)
    entries = doc.get("sources")
    for source in added:
        recorded_path = stored_path(current.root, source.path)
        # TOML holds Unicode only: a name that is not UTF-8 is recorded byte for byte, %-escaped.
        where = {"path": recorded_path} if is_clean(recorded_path) else {
            "path_bytes": tomlkit.item(escaped_path(recorded_path)).comment(
                f"not UTF-8: {shown(recorded_path)} (bytes %-escaped)")}
        item = {
            **where,
            "author": source.author,
            "role": source.role,
            "weight": source.weight,
            "sections": source.sections,
        }
        if entries is None:
            entries = tomlkit.aot()
            doc.append("sources", entries)
        if isinstance(entries, AoT):
            _append_table(entries, item)
        elif isinstance(entries, Array):
            inline = tomlkit.inline_table()
            inline.update(item)
            entries.append(inline)
        else:  # load_workspace accepted it, so it is a list of some other kind; be safe
            raise WorkspaceError(f"{config}: sources must be an array of tables ([[sources]])")
    return _validate_and_write(current.root, doc), added


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_WEIGHTS",
    "ROLES",
    "SECTIONS",
    "CorpusSettings",
    "METHODS",
    "PRECISIONS",
    "Source",
    "TrainSettings",
    "Workspace",
    "WorkspaceError",
    "add_sources",
    "find_workspace",
    "init_workspace",
    "load_workspace",
    "normalize_path",
    "parse_assignments",
    "parse_settings",
    "parse_workspace",
    "render_config",
    "stored_path",
    "with_overrides",
    "write_settings",
]
