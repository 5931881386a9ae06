"""`dvoinik export`: one checkpoint → a folder to share or to run at home.

    exports/<name>-<checkpoint>/
      README.md                 the model card (hub metadata, corpus, training, evaluation, copying)
      config.json, model.safetensors, generation_config.json, tokenizer files     (--format hf|both)
        or adapter_config.json, adapter_model.safetensors                           (--adapter)
      <name>-<type>.gguf, Modelfile, RUNNING.md                                    (--format gguf|both)
      export.json               what was exported, from where, each file's SHA-256

The folder is built under a temporary name and renamed when every file is written, so
a killed export leaves nothing that looks complete. An existing destination is replaced
only when it is an earlier dvoinik export (it has export.json) or empty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dvoinik import __version__
from dvoinik.atomic import building_folder
from dvoinik.export.card import AuthorShare, CardFacts, write_card
from dvoinik.export.gguf_file import GGUFSummary, gguf_architecture, gguf_vocabulary, write_gguf
from dvoinik.export.hf import FILE_MODE, write_adapter_folder, write_model_folder
from dvoinik.export.options import ExportError, ExportOptions, slug
from dvoinik.export.runners import modelfile, running_notes
from dvoinik.export.source import ExportSource, choose_source, load_merged_model, load_tokenizer
from dvoinik.generation.decoding import Decoding, decoding_for
from dvoinik.runs import RunError, run_token_set
from dvoinik.tokens import TokenSet
from dvoinik.training.checkpoints import CHECKPOINT_PATTERN
from dvoinik.workspace import Workspace

EXPORTS_DIR = "exports"
RECORD = "export.json"
EXAMPLE_PROMPTS = {"ru": "В то утро она вышла из дома и"}

ProgressCallback = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    source: ExportSource
    name: str
    ollama_name: str
    files: dict[str, int]  # file name → bytes
    gguf: GGUFSummary | None
    context_length: int | None


def export_double(ws: Workspace, options: ExportOptions, on_progress: ProgressCallback | None = None) -> ExportResult:
    """Export a run's checkpoint as `options` say; return where it went and what it holds."""
    def step(what: str, done: int = 0, total: int = 0) -> None:
        if on_progress:
            on_progress(what, done, total)

    options.check()
    source = choose_source(ws, options.run, options.checkpoint, options.base_id)
    _check_adapter_options(options, source)
    name = (options.name or ws.name).strip()
    stem = slug(name)
    folder = (options.to or ws.root / EXPORTS_DIR / f"{stem}-{source.checkpoint.name}").expanduser().resolve()
    _check_destination(folder, source)
    context = source.trained_length
    # A built-in model knows only its block: half of it is left for the prompt.
    new_tokens = min(ws.generate.max_new_tokens, context // 2) if context else ws.generate.max_new_tokens
    decoding = decoding_for(options.preset or ws.generate.preset, max_new_tokens=new_tokens)

    step("loading the checkpoint")
    tokenizer = load_tokenizer(source)
    model = load_merged_model(source) if options.writes_gguf or not options.adapter else None
    if options.writes_gguf:  # refuse an architecture or tokenizer llama.cpp cannot take before writing anything
        gguf_architecture(model.config, type(model).__name__)
        gguf_vocabulary(tokenizer, int(model.config.vocab_size))
    gguf_name = f"{stem}-{options.gguf_type}.gguf" if options.writes_gguf else None
    summary = None

    with building_folder(folder) as staging:
        if options.writes_hf:
            step("writing the Hugging Face folder")
            if options.adapter:
                write_adapter_folder(source.checkpoint, tokenizer, staging, decoding, str(source.base_hub_id), context)
            else:
                write_model_folder(model, tokenizer, staging, decoding, context)
        if gguf_name is not None:
            summary = write_gguf(
                staging / gguf_name, model, tokenizer, name, context, options.gguf_type,
                description=f"The neural double of {ws.target_author or name}, made with dvoinik "
                            f"({source.run.name}/{source.checkpoint.name}); a completion model without a chat template",
                on_progress=lambda done, total: step("writing the GGUF tensors", done, total),
            )
            context_gguf = summary.context_length
            example = EXAMPLE_PROMPTS.get(ws.language, "That morning she left the house and")
            (staging / "Modelfile").write_text(modelfile(gguf_name, decoding, context_gguf), encoding="utf-8")
            (staging / "RUNNING.md").write_text(
                running_notes(name, gguf_name, decoding, context_gguf, stem, example, ws.generate.guard), encoding="utf-8")
        step("writing the model card")
        write_card(staging, card_facts(ws, source, options, name, stem, decoding, model, gguf_name))
        files = _record(staging, source, options, name, decoding, context)
    if summary is not None:
        summary = replace(summary, path=folder / summary.path.name)
    return ExportResult(folder, source, name, stem, files, summary, context)


def _check_adapter_options(options: ExportOptions, source: ExportSource) -> None:
    if not options.adapter:
        return
    if not source.is_adapter:
        raise ExportError(f"{source.checkpoint}: --adapter keeps a LoRA adapter, but this run trained every weight; "
                          "leave --adapter out")
    if not options.writes_hf:
        raise ExportError("--adapter shapes the HF folder; a GGUF always holds the merged model (use --format hf or both)")
    if source.base_hub_id is None:
        raise ExportError(f"{source.checkpoint}: the adapter's base is the local folder {Path(source.base).name!r}, which "
                          "no one else has; name its hub id with --base-id ORG/NAME, or export merged (no --adapter)")


def _check_destination(folder: Path, source: ExportSource) -> None:
    """Write only where nothing of the user's is lost: a new, empty, or earlier export's folder."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder; choose another --to")
    if source.run.folder.resolve() in (folder, *folder.parents):
        raise ExportError(f"{folder}: inside the run's folder; choose a --to outside {source.run.folder}")
    if any(folder.iterdir()) and not (folder / RECORD).is_file():
        raise ExportError(f"{folder}: exists and is not a dvoinik export (no {RECORD}); choose another --to "
                          "(nothing was written)")


# ---------------------------------------------------------------- the card's facts


def card_facts(ws: Workspace, source: ExportSource, options: ExportOptions, name: str, stem: str, decoding: Decoding,
               model: Any, gguf_name: str | None) -> CardFacts:
    """What the model card says, read from the corpus report, the token set, run.json and metrics.jsonl."""
    record = source.run.record
    settings = source.settings
    report = _json(ws.corpus_dir / "report.json") or {}
    token_set = _token_set(ws, source)
    authors, words, chars = _authors(report, token_set)
    step = _step(source.checkpoint)
    train_ppl, val_ppl = _logged_perplexities(source.run.folder / "metrics.jsonl", step)
    parameters = int(record.get("parameters", {}).get("total", 0)) or \
        (sum(p.numel() for p in model.parameters()) if model is not None else 0)
    train_works = sum(1 for d in token_set.documents if d.split == "train") if token_set else \
        sum(a.works for a in authors)
    return CardFacts(
        name=name, language=ws.language, target=ws.target_author or (token_set.target.name if token_set and
                                                                     token_set.target else None),
        authors=authors, corpus_words=words, corpus_chars=chars, train_works=train_works,
        train_tokens=token_set.train_tokens if token_set else 0, base=_shown_base(source),
        base_hub_id=source.base_hub_id, builtin=source.builtin, method=str(settings.get("method", "full")),
        adapter_kept=options.adapter, settings=settings, parameters=parameters, step=step,
        checkpoint=source.checkpoint.name, run=source.run.name, why=source.why, evaluation=source.evaluation,
        report=source.report, train_ppl=train_ppl, val_ppl=val_ppl, context_length=source.trained_length,
        decoding=decoding, guard=ws.generate.guard, min_tokens=ws.check.min_tokens, hf_files=options.writes_hf,
        gguf_file=gguf_name, gguf_type=options.gguf_type if gguf_name else None, ollama_name=stem,
        device=str(record.get("device", "")),
    )


def _shown_base(source: ExportSource) -> str:
    if source.builtin:
        return f"the built-in `{source.base}` configuration (Llama architecture)"
    if source.base_hub_id:
        return source.base_hub_id
    return f"a local model folder ({Path(source.base).name})"


def _authors(report: dict, token_set: TokenSet | None) -> tuple[list[AuthorShare], int, int]:
    """Each author's works, words and shares (corpus report), target first; total words and characters."""
    authors_info = report.get("authors", {})
    mix = report.get("mix", {})
    names = [a.name for a in token_set.authors] if token_set else \
        sorted(authors_info, key=lambda a: (authors_info[a].get("role") != "target", a))
    shares = []
    for author in names:
        info, mixed = authors_info.get(author, {}), mix.get(author, {})
        shares.append(AuthorShare(
            name=author, role=info.get("role", "influence"), works=int(info.get("train_works", 0)),
            words=int(info.get("train_words", 0)), raw_share=float(mixed.get("raw_share", 0.0)),
            effective_share=float(mixed.get("effective_share", 0.0)), weight=float(mixed.get("weight", 1.0)),
        ))
    totals = report.get("totals", {})
    return shares, int(totals.get("words", 0)), int(totals.get("chars", 0))


def _token_set(ws: Workspace, source: ExportSource) -> TokenSet | None:
    try:
        return run_token_set(ws, source.run)
    except RunError:
        return None  # the card then gives the corpus report's figures only


def _step(checkpoint: Path) -> int:
    match = CHECKPOINT_PATTERN.match(checkpoint.name)
    return int(match.group(1)) if match else 0


def _logged_perplexities(metrics: Path, step: int) -> tuple[float | None, float | None]:
    """Training perplexity and the target's validation perplexity last logged at or before `step`."""
    train = val = None
    try:
        lines = metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None, None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("step", step + 1) > step:
            continue
        if entry.get("kind") == "train" and entry.get("ppl") is not None:
            train = float(entry["ppl"])
        elif entry.get("kind") == "eval" and entry.get("val_target_ppl") is not None:
            val = float(entry["val_target_ppl"])
    return train, val


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the record


def _record(staging: Path, source: ExportSource, options: ExportOptions, name: str, decoding: Decoding,
            context: int | None) -> dict[str, int]:
    """Write export.json (each file's size and SHA-256) last, and make every file world-readable."""
    files: dict[str, dict] = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        files[path.relative_to(staging).as_posix()] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    record = {
        "dvoinik": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "name": name,
        "run": source.run.name,
        "checkpoint": source.checkpoint.name,
        "why": source.why,
        "format": options.format,
        "gguf_type": options.gguf_type if options.writes_gguf else None,
        "adapter": options.adapter,
        "base": source.base_hub_id if not source.builtin else source.base,
        "preset": decoding.preset,
        "context_length": context,
        "files": files,
    }
    (staging / RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for path in staging.rglob("*"):
        if path.is_file():
            path.chmod(FILE_MODE)
    return {n: f["bytes"] for n, f in files.items()} | {RECORD: (staging / RECORD).stat().st_size}
