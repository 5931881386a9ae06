"""The `dvoinik` command line: a thin Typer app that parses, calls one function, and prints.

No logic lives here. Each command finds its workspace with `open_workspace(ctx)` (the
global `-w DIR`, else the nearest dvoinik.toml at or above the current folder), calls
one function of the stage's module, and prints the result with rich.

User mistakes never show a traceback: they print one red line "error: ..." to stderr
and exit with code 2. `WorkspaceError` (and any other exception type a command names
in `@user_errors(...)`) is turned into that line by the `user_errors` decorator; click's
own usage errors (a missing option, a value that is not a number, an unknown command)
are turned into it by `DvoinikGroup`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on click
    from click.exceptions import UsageError

try:
    from typer._click.exceptions import NoArgsIsHelpError
except ImportError:  # pragma: no cover - click < 8.2 prints the help without raising
    class NoArgsIsHelpError(Exception):  # type: ignore[no-redef]
        pass

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from dvoinik import __version__, demo
from dvoinik.corpus.build import DOCUMENTS_FILE, CorpusError, FileOutcome, build_corpus
from dvoinik.corpus.report import authors_table, summary_line
from dvoinik.evaluation.evaluate import EvaluationError, evaluate_run
from dvoinik.evaluation.report import copy_threshold
from dvoinik.evaluation.stylometry import StyleError, load_or_fit_workspace_model, style_file, style_notes
from dvoinik.export.build import ExportResult, export_double
from dvoinik.export.options import ExportError, ExportOptions
from dvoinik.faults import FileFault
from dvoinik.generation.check import CheckReport, CopiedSpan, check_file
from dvoinik.generation.copyindex import CopyIndexError
from dvoinik.generation.decoding import GenerationError, decoding_for, with_seed
from dvoinik.generation.double import load_double, parse_style
from dvoinik.generation.variants import Generation, Variant, generate
from dvoinik.generation.voices import describe, parse_voice
from dvoinik.paths import shown
from dvoinik.runs import AUTO, RunError
from dvoinik.serve.launch import ServeError
from dvoinik.tokens import TokensError
from dvoinik.training.data import DataError
from dvoinik.training.loop import TrainingError, train
from dvoinik.training.models import ModelError
from dvoinik.training.plan import Hardware, PlanError, parse_size, plan_lines, plan_run
from dvoinik.training.progress import RichTrainObserver
from dvoinik.workspace import (
    CONFIG_NAME,
    ROLES,
    SECTIONS,
    Workspace,
    WorkspaceError,
    add_sources,
    find_workspace,
    init_workspace,
    load_workspace,
    normalize_path,
    parse_assignments,
    with_overrides,
)

USER_ERROR_EXIT_CODE = 2

F = TypeVar("F", bound=Callable[..., Any])


def _console(stderr: bool = False) -> Console:
    # Made per call, so output goes to whatever sys.stdout/sys.stderr are now (tests swap them).
    return Console(stderr=stderr, highlight=False)


# ---------------------------------------------------------------- user errors


def fail(message: str) -> NoReturn:
    """Print one red line "error: MESSAGE" to stderr and exit with code 2."""
    line = "error: " + " ".join(shown(str(message)).split())  # one line, whatever the message holds (a file name too)
    _console(stderr=True).print(Text(line, style="red"), soft_wrap=True)
    raise typer.Exit(USER_ERROR_EXIT_CODE)


def user_errors(*kinds: Any) -> Any:
    """Decorate a command so that WorkspaceError, FileFault (a damaged file, a full disk) and `kinds` become
    `fail(message)`.

    Use as `@user_errors` or `@user_errors(CorpusError, ...)`, below `@app.command()`.
    """
    if len(kinds) == 1 and callable(kinds[0]) and not isinstance(kinds[0], type):
        return user_errors()(kinds[0])
    caught = (WorkspaceError, FileFault, *kinds)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except caught as exc:
                fail(str(exc))

        return wrapper  # type: ignore[return-value]

    return decorate


class DvoinikGroup(TyperGroup):
    """Typer's group, with click's usage errors printed as one "error: ..." line (exit code 2)."""

    @staticmethod
    def _usage_error(exc: Exception, ctx: Any) -> NoReturn:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_ctx = getattr(exc, "ctx", None) or ctx
        hint = f" (see `{err_ctx.command_path} --help`)" if err_ctx is not None else ""
        fail(message + hint)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            self._usage_error(exc, None)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            self._usage_error(exc, ctx)


app = typer.Typer(
    name="dvoinik",
    help="Build the neural double of a writer: corpus, training, evaluation and a studio.",
    cls=DvoinikGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts name settings as [table] key; as markup, rich would delete them
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---------------------------------------------------------------- global options


@dataclass(frozen=True)
class CliState:
    workspace: Path | None  # -w/--workspace, if given


def open_workspace(ctx: typer.Context) -> Workspace:
    """The workspace a command works on: -w DIR if given, else found by walking up from here."""
    state = ctx.find_object(CliState)
    chosen = state.workspace if state is not None else None
    return load_workspace(chosen if chosen is not None else find_workspace(Path.cwd()))


def _version(value: bool) -> None:
    if value:
        _console().print(f"dvoinik {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "-w", "--workspace", metavar="DIR",
            help=f"The workspace folder (holding {CONFIG_NAME}); default: found by walking up from here.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Build the neural double of a writer: corpus, training, evaluation and a studio."""
    ctx.obj = CliState(workspace=workspace)


# ---------------------------------------------------------------- init


def _shown(path: Path) -> str:
    """A path as the user would type it from here: relative to the current folder if below it."""
    try:
        return str(path.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


@app.command()
@user_errors
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(metavar="DIR", help="Folder to create the workspace in (default: -w DIR, else here)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The double's name (default: the folder's name).")] = None,
    language: Annotated[str, typer.Option("--language", help="Language of the texts.")] = "ru",
) -> None:
    """Create a workspace: a folder with dvoinik.toml."""
    state = ctx.find_object(CliState)
    target = directory if directory is not None else (state.workspace if state and state.workspace else Path("."))
    ws = init_workspace(target, name=name, language=language)
    out = _console()
    out.print(Text.assemble("Created workspace ", (ws.name, "bold"), f" in {ws.root}"))
    out.print(f"  {_shown(ws.config_path)}  settings of the double (comments explain each; edit freely)")
    here = ws.root == Path.cwd().resolve()
    prefix = "dvoinik" if here else f"dvoinik -w {_shown(ws.root)}"
    out.print("Next: record the author's texts, then the writers who influenced them:")
    out.print(Text(f"  {prefix} add PATH… --author NAME --role target"))
    out.print(Text(f"  {prefix} add PATH… --author OTHER"))


# ---------------------------------------------------------------- add


def _sources_table(ws: Workspace) -> Table:
    table = Table(title=f"Sources of {ws.name}", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("author")
    table.add_column("role")
    table.add_column("weight", justify="right")
    table.add_column("sections")
    for s in ws.sources:
        table.add_row(
            Text(shown(ws.stored_path(s))), Text(s.author), s.role, f"{s.weight:g}", s.sections,
            style="bold" if s.role == "target" else None,
        )
    return table


@app.command()
@user_errors
def add(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Files or folders (read recursively).")],
    author: Annotated[str, typer.Option("--author", "-a", help="The author of these texts.")],
    role: Annotated[
        str | None,
        typer.Option(
            "--role", "-r", metavar="|".join(ROLES),
            help="target: the writer whose double this is (one per double); influence: writers who "
            "shaped them. Default: the author's recorded role, else influence.",
        ),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(
            "--weight", help="Multiplier on the author's share of training tokens "
            "(default: the author's recorded weight, else 10 for target, 1 for influence).",
        ),
    ] = None,
    sections: Annotated[
        str, typer.Option("--sections", metavar="|".join(SECTIONS), help="How FB2/EPUB sections become works.")
    ] = "auto",
) -> None:
    """Record texts by one author as sources of the double (the files are only referenced)."""
    ws = open_workspace(ctx)
    ws, added = add_sources(ws, paths, author=author, role=role, weight=weight, sections=sections)
    out = _console()
    added_paths = {s.path for s in added}
    for given in paths:
        if normalize_path(given) not in added_paths:
            out.print(Text(f"already recorded for {author.strip()}, skipped: {shown(given)}", style="yellow"), soft_wrap=True)
    if added:
        first = added[0]
        out.print(Text(f"Added {len(added)} source(s) by {first.author} ({first.role}, weight {first.weight:g})"))
    out.print(_sources_table(ws))
    out.print(f"{ws.config_path}")
    out.print("Next: add more writers, or build the corpus with `dvoinik corpus`.")


# ---------------------------------------------------------------- corpus


@app.command("corpus")
@user_errors(CorpusError)
def corpus_command(ctx: typer.Context) -> None:
    """Build the corpus: read, clean, deduplicate, split by work and mix the sources."""
    ws = open_workspace(ctx)
    out = _console()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[mb]:.1f} MB, {task.fields[rate]:.1f} MB/s"),
        TimeRemainingColumn(),
        console=_console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("reading and cleaning", total=None, mb=0.0, rate=0.0)

        def on_start(files: int) -> None:
            progress.update(task, total=files)

        def on_file(outcome: FileOutcome) -> None:
            mb = progress.tasks[0].fields["mb"] + outcome.raw_bytes / 1e6
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(task, advance=1, mb=mb, rate=mb / elapsed)

        def on_stage(name: str) -> None:
            progress.update(task, description=name)

        result = build_corpus(ws, on_start=on_start, on_file=on_file, on_stage=on_stage)
    report = result.report
    out.print(authors_table(report))
    out.print(summary_line(report))
    for warning in report["warnings"]:
        out.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)
    for skipped in report["files"]["skipped"]:
        out.print(Text(f"skipped {skipped['source']}: {skipped['reason']}", style="yellow"), soft_wrap=True)
    out.print(f"Wrote {result.corpus_dir / DOCUMENTS_FILE} and report.md / report.json beside it.")


# ---------------------------------------------------------------- train


@app.command("train")
@user_errors(TrainingError, TokensError, DataError, ModelError, PlanError, RunError)
def train_command(
    ctx: typer.Context,
    base: Annotated[str | None, typer.Option("--base", help="Built-in configuration (tiny, small, medium), hub id or local model folder.")] = None,
    method: Annotated[str | None, typer.Option("--method", metavar="full|lora|dpo", help="Train every weight, a LoRA adapter, or learn from the writer's picks (dpo).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps.")] = None,
    save_every: Annotated[int | None, typer.Option("--save-every", help="Write a checkpoint every N steps.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run name: the folder under runs/ (default: BASE-METHOD).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last complete checkpoint.")] = False,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Stop after this many passes over the training tokens.")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", metavar="MINUTES", help="Stop and save after this many minutes.")] = None,
    target_ppl: Annotated[float | None, typer.Option("--target-ppl", help="Stop once training perplexity falls to this (the story: 3-5).")] = None,
    assignments: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Any [train] setting for this run, e.g. --set batch_size=4 (repeatable); with --method dpo, any [dpo] setting.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Do not train: print the GPU memory the run needs, whether it fits, and what to change if not.")] = False,
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="With --plan: GPUs at hand (default: the visible ones).")] = None,
    gpu_memory: Annotated[str | None, typer.Option("--gpu-memory", metavar="SIZE", help="With --plan: memory of each GPU to plan for, e.g. 24GB (default: the visible GPU's).")] = None,
    fsdp: Annotated[int, typer.Option("--fsdp", min=1, metavar="N", help="With --plan: plan FSDP2 over N GPUs (default 1: each GPU holds the whole model).")] = 1,
    from_picks: Annotated[bool, typer.Option("--from-picks", help="--method dpo: learn from the picks logged by the studio (studio/studio.sqlite3).")] = False,
    preferences: Annotated[Path | None, typer.Option("--preferences", metavar="FILE", help="--method dpo: learn from these pairs (the studio's preferences.jsonl format).")] = None,
    source: Annotated[str | None, typer.Option("--from", metavar="RUN", help="--method dpo: the run to start from (default: the latest).")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="--method dpo: the checkpoint to start from (checkpoint-N, best, last; default: best if evaluated, else last).")] = AUTO,
) -> None:
    """Train the double: from scratch, a full fine-tune or a LoRA adapter, with checkpoints and resume; or learn from
    the writer's picks (--method dpo)."""
    ws = open_workspace(ctx)
    if method == "dpo":
        if plan:
            fail("--plan plans a full or LoRA run; a DPO run takes the memory of the run it starts from, twice its logits")
        _train_dpo(ws, run, resume, assignments, max_steps, save_every, from_picks, preferences, source, checkpoint)
        return
    if from_picks or preferences is not None or source is not None:
        fail("--from-picks, --preferences and --from belong to --method dpo")
    overrides = parse_assignments(assignments or [])
    flags = {"base": base, "method": method, "max_steps": max_steps, "save_every": save_every, "epochs": epochs,
             "time_budget_minutes": time_budget, "target_train_ppl": target_ppl}
    overrides.update({key: value for key, value in flags.items() if value is not None})
    if plan:
        settings = with_overrides(ws.train, overrides, "command-line flags")
        hardware = Hardware(gpus or 1, parse_size(gpu_memory), "GPU") if gpu_memory else None
        for line in plan_lines(plan_run(settings, hardware, gpus, fsdp)):
            _console().print(Text(line), soft_wrap=True)
        return
    with RichTrainObserver(_console(), _console(stderr=True)) as observer:
        result = train(ws, run=run, overrides=overrides, resume=resume, observer=observer)
    if observer.progress is None:
        return  # not the main process of a multi-process run
    out = _console()
    values = [f"train ppl {result.train_ppl:.2f}" if result.train_ppl else None,
              f"val ppl target {result.val_target_ppl:.2f}" if result.val_target_ppl else None,
              f"influences {result.val_influences_ppl:.2f}" if result.val_influences_ppl else None,
              f"{result.tokens_per_second:,.0f} tokens/s" if result.tokens_per_second else None]
    out.print(Text(f"Stopped at step {result.steps} ({result.stop_reason.replace('_', ' ')}): "
                   + " · ".join(v for v in values if v)), soft_wrap=True)
    out.print(f"Checkpoints in {result.run_dir}; metrics in {result.run_dir / 'metrics.jsonl'}")


def _train_dpo(ws: Workspace, run: str | None, resume: bool, assignments: list[str] | None, max_steps: int | None,
               save_every: int | None, from_picks: bool, preferences: Path | None, source: str | None,
               checkpoint: str) -> None:
    from dvoinik.training.dpo import train_dpo
    from dvoinik.training.progress import RichDpoObserver

    if from_picks == (preferences is not None):
        fail("--method dpo learns from pairs: give --from-picks (the studio's) or --preferences FILE, one of the two")
    overrides = parse_assignments(assignments or [])
    overrides.update({key: value for key, value in (("max_steps", max_steps), ("save_every", save_every))
                      if value is not None})
    with RichDpoObserver(_console(), _console(stderr=True)) as observer:
        result = train_dpo(ws, run, source, checkpoint, preferences, overrides, resume, observer)
    if observer.progress is None:
        return
    before, after = result.accuracy_before, result.accuracy_after
    accuracy = f"held-out preference accuracy {before:.0%} → {after:.0%}" if before is not None and after is not None \
        else "no held-out pairs: preference accuracy not measured"
    _console().print(Text(f"Stopped at step {result.steps}: {accuracy}"), soft_wrap=True)
    _console().print(f"Checkpoints in {result.run_dir}; metrics in {result.run_dir / 'metrics.jsonl'}")


# ---------------------------------------------------------------- demo


@app.command("demo")
@user_errors(TrainingError, TokensError, DataError, ModelError, CorpusError)
def demo_command(
    directory: Annotated[Path, typer.Argument(metavar="[DIR]", help="A new (or empty) folder for the demo workspace.")] = Path("dvoinik-demo"),
) -> None:
    """The whole pipeline on built-in sample texts: corpus, tokenizer, a tiny model from scratch, continuations."""
    out = _console()
    out.print(Text.assemble(("dvoinik demo", "bold"), f": two sample authors, target {demo.AUTHORS[0].name}, "
                            f"influence {demo.AUTHORS[1].name}; workspace {directory}"))
    with RichTrainObserver(out, _console(stderr=True)) as observer:
        result = demo.run_demo(directory, observer=observer)
    out.print(summary_line(result.corpus.report))
    out.print(Text.assemble("\nPrompt: ", (result.prompt, "bold")))
    for number, continuation in enumerate(result.continuations, start=1):
        scores = ", ".join(f"{author} {value:.2f}" for author, value in continuation.similarity.items())
        verdict = "target's voice" if continuation.nearest == result.target else "NOT the target's voice"
        out.print(Text.assemble((f"\n{number}. ", "bold"), result.prompt, (continuation.text, "cyan")))
        out.print(Text(f"   closer to {continuation.nearest} ({verdict}); trigram similarity: {scores}", style="dim"))
        if continuation.copy is not None:
            copy = continuation.copy
            guard = f"the originality guard bans {demo.GUARD} tokens"
            longest = f"{copy.words} words (in tokens: {copy.tokens}; {guard})" if copy.words is not None else \
                f"{copy.tokens} tokens ({guard})"
            out.print(Text(f"   copied: the longest span found in the training texts is {longest}", style="dim"))
    out.print(f"\nWorkspace: {result.workspace.root} (dvoinik.toml, corpus/, tokens/, runs/{demo.RUN}/)")
    out.print(f"Next: dvoinik -w {directory} generate \"{result.prompt}\" --n 3 · dvoinik -w {directory} evaluate · "
              f"dvoinik -w {directory} serve (the studio in your browser)")


# ---------------------------------------------------------------- generate


def _copy_line(variant: Variant) -> str:
    copy = variant.copy
    if copy is None:
        return ""
    if copy.words is not None:
        if copy.words == 0:
            return "nothing found in the training texts"
        missed = " — a copy the guard could not see (its layout or sub-word split differs)" if copy.missed_by_guard else ""
        return (f"longest span found in the training texts: {copy.words} words ({copy.words_tokens} tokens), from "
                f"«{copy.words_work}» ({copy.words_author}); as token ids: {copy.tokens} tokens{missed}")
    if copy.tokens == 0:
        return "nothing found in the training texts"
    return f"longest span found in the training texts: {copy.tokens} tokens, from «{copy.work}» ({copy.author})"


@app.command("generate")
@user_errors(GenerationError, RunError, CopyIndexError, TokensError, ModelError)
def generate_command(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The text to continue; - reads it from standard input.")],
    preset: Annotated[str | None, typer.Option("--preset", help="coherent, nucleus (top_p 0.9, temperature 1), greedy or beam; default: [generate] preset.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Variants, written in one batch.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the sampling; default: a fresh one (printed with --json).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Tokens to write per variant.")] = None,
    guard: Annotated[int | None, typer.Option("--guard", metavar="N", help="Never copy N tokens in a row from the training texts; 0 = off.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The run (default: the latest).")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint-N, best (the evaluation's pick), last; default: best if evaluated, else last.")] = AUTO,
    style: Annotated[str | None, typer.Option("--style", metavar="RUN=W,...", help="Mix the LoRA adapters of several runs by weight.")] = None,
    voice: Annotated[str | None, typer.Option("--voice", metavar="NAME|A=W,...", help="A run with voices: write in this author's voice, or a mix (A=0.7,B=0.3); default: the target's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the variants as JSON (text, tokens, finish reason, copy score).")] = False,
    temperature: Annotated[float | None, typer.Option("--temperature")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="0 = off.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="1 = off.")] = None,
    typical_p: Annotated[float | None, typer.Option("--typical-p", help="1 = off.")] = None,
    min_p: Annotated[float | None, typer.Option("--min-p", help="0 = off.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option("--repetition-penalty", help="1 = off.")] = None,
    no_repeat_ngram_size: Annotated[int | None, typer.Option("--no-repeat-ngram-size", help="0 = off.")] = None,
    num_beams: Annotated[int | None, typer.Option("--num-beams", help="Beam search with this many beams (no sampling).")] = None,
    stop: Annotated[list[str] | None, typer.Option("--stop", help="Stop a variant at this string (repeatable).")] = None,
) -> None:
    """Continue PROMPT with the double: presets, every sampling setting, N variants, the originality guard."""
    ws = open_workspace(ctx)
    if prompt == "-":
        import sys

        prompt = sys.stdin.read()
    settings = ws.generate
    decoding = with_seed(decoding_for(
        preset or settings.preset,
        max_new_tokens=max_new_tokens if max_new_tokens is not None else settings.max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, typical_p=typical_p, min_p=min_p, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, num_beams=num_beams, stop=tuple(stop) if stop else None,
    ), seed)
    variants = n if n is not None else settings.variants
    err = _console(stderr=True)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the spinner below says what is loading; the text stays clean
    with err.status("loading the double") as status:
        double = load_double(ws, run, checkpoint, parse_style(style) if style else None,
                             on_progress=lambda message: status.update(message))
    guard_n = settings.guard if guard is None else guard
    chosen_voice = parse_voice(voice, double.voices) if voice is not None else None
    out = _console()
    if as_json:
        with err.status(f"writing {variants} variant(s) with {double.checkpoint}"):
            result = generate(double, prompt, decoding, variants, guard_n, voice=chosen_voice)
        import json

        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    if variants == 1 and decoding.num_beams == 1:
        out.print(Text(prompt, style="bold"), end="")
        result = generate(double, prompt, decoding, 1, guard_n, voice=chosen_voice,
                          on_text=lambda _, piece: out.print(Text(piece, style="cyan"), end="", soft_wrap=True))
        out.print()
    else:
        with err.status(f"writing {variants} variants with {double.checkpoint}"):
            result = generate(double, prompt, decoding, variants, guard_n, voice=chosen_voice)
        for number, variant in enumerate(result.variants, start=1):
            out.print(Text.assemble((f"\n{number}. ", "bold"), (prompt, "bold"), (variant.text, "cyan")), soft_wrap=True)
            out.print(Text(f"   {_copy_line(variant)}", style="dim"), soft_wrap=True)
    _generation_footer(out, result)


def _generation_footer(out: Console, result: Generation) -> None:
    guard = f"guard {result.guard}" if result.guard else "guard off"
    voice = f" · voice {describe(result.voice)}" if result.voice else ""
    out.print(Text(f"{result.checkpoint}{voice} · preset {result.decoding.preset} · seed {result.decoding.seed} · {guard}",
                   style="dim"), soft_wrap=True)
    if len(result.variants) == 1:
        out.print(Text(_copy_line(result.variants[0]), style="dim"), soft_wrap=True)


# ---------------------------------------------------------------- interview


@app.command("interview")
@user_errors(GenerationError, RunError, CopyIndexError, TokensError, ModelError)
def interview_command(
    ctx: typer.Context,
    questions: Annotated[list[str] | None, typer.Option("--question", "-q", help="Ask this (repeatable) and end; without it, questions are read from the terminal (or standard input), one per line, until an empty line.")] = None,
    frame: Annotated[str | None, typer.Option("--frame", metavar="dialogue|quotes|letter|diary", help="How questions are put; default: [interview] frame (auto: the target author's own dialogue layout).")] = None,
    voice: Annotated[str | None, typer.Option("--voice", metavar="NAME|A=W,...", help="A run with voices: answer in this voice (default: the target's).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The run (default: the latest).")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint-N, best, last; default: best if evaluated, else last.")] = AUTO,
    preset: Annotated[str | None, typer.Option("--preset", help="Decoding preset; default: [generate] preset.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the first answer (the next ones count up from it).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Tokens an answer may take; default: [interview] max_new_tokens.")] = None,
    guard: Annotated[int | None, typer.Option("--guard", metavar="N", help="Never copy N tokens in a row from the training texts; 0 = off.")] = None,
    save: Annotated[Path | None, typer.Option("--save", metavar="FILE", help="Keep the conversation, in its frame, in FILE (rewritten after every answer).")] = None,
) -> None:
    """A conversation with the double: each question in the author's prose frame, each answer cut at its turn's end."""
    import sys
    from dataclasses import replace

    from dvoinik.atomic import atomic_write_text
    from dvoinik.generation.interview import Turn, answer_length, ask, frame_from_settings, transcript
    from dvoinik.workspace import with_overrides

    ws = open_workspace(ctx)
    settings = with_overrides(ws.interview, {"frame": frame} if frame else {}, "--frame")
    chosen_frame, detection = frame_from_settings(settings, ws.language, ws.corpus_dir)
    first_seed = with_seed(decoding_for("greedy"), seed).seed
    err, out = _console(stderr=True), _console()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    with err.status("loading the double") as status:
        double = load_double(ws, run, checkpoint, on_progress=lambda message: status.update(message))
    decoding = decoding_for(preset or ws.generate.preset, max_new_tokens=max_new_tokens if max_new_tokens is not None
                            else answer_length(double, settings.max_new_tokens))
    chosen_voice = parse_voice(voice, double.voices) if voice is not None else None
    why = f" (the target's texts: {detection.dash_paragraphs} of {detection.paragraphs} paragraphs open with a " \
          f"dash, {detection.quote_paragraphs} with a quote)" if detection else ""
    err.print(Text(f"{double.checkpoint} · frame {chosen_frame.name}{why}"
                   + (f" · voice {describe(chosen_voice)}" if chosen_voice else ""), style="dim"), soft_wrap=True)
    interactive = questions is None and sys.stdin.isatty()
    if interactive:
        err.print(Text("Ask a question (an empty line ends the interview).", style="dim"))
    pending = iter(questions) if questions is not None else None
    turns: list[Turn] = []
    guard_n = ws.generate.guard if guard is None else guard
    while True:
        if pending is not None:
            question = next(pending, "")
        else:
            line = input("? ") if interactive else sys.stdin.readline()
            question = line.strip()
        if not question.strip():
            break
        out.print(Text(chosen_frame.asked(question).rstrip(" "), style="bold"), end="", soft_wrap=True)
        answer = ask(double, chosen_frame, turns, question, replace(decoding, seed=first_seed + len(turns)), guard_n,
                     chosen_voice, on_text=lambda _, piece: out.print(Text(piece, style="cyan"), end="", soft_wrap=True))
        out.print()
        out.print(Text(_copy_line(answer.variant), style="dim"), soft_wrap=True)
        turns.append(Turn(question, answer.text))
        if save is not None:
            atomic_write_text(save, transcript(chosen_frame, turns))
    if save is not None and turns:
        err.print(Text(f"{len(turns)} turn(s) kept in {save}", style="dim"))


# ---------------------------------------------------------------- check


def _span_row(number: int, span: CopiedSpan) -> list[str]:
    words = span.text if len(span.text) <= 160 else span.text[:120] + " … " + span.text[-30:]
    return [str(number), str(span.words), "—" if span.tokens is None else str(span.tokens), f"{span.start}–{span.end}",
            f"{span.author} — «{span.work}», {span.work_share:.0%} in", " ".join(words.split())]


def _check_summary(report: CheckReport) -> str:
    longest = report.longest
    tokens = f" ({report.tokens:,} tokens)" if report.tokens is not None else ""
    if longest:
        in_tokens = f", {longest.tokens} tokens" if longest.tokens is not None else ""
        where = f"longest {longest.words} words{in_tokens} (from «{longest.work}», {longest.author}, {longest.work_share:.0%} in)"
    else:
        where = "no word found in the training texts"
    return (f"{report.words:,} words{tokens}; {len(report.spans)} span(s) of {report.threshold}; {where}; "
            f"{report.copied_share:.1%} of the text in copied spans")


@app.command("check")
@user_errors(RunError, CopyIndexError, CorpusError, TokensError)
def check_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A text in any format and encoding the corpus reads.")],
    min_words: Annotated[int | None, typer.Option("--min-words", help="Report spans of at least this many words; default: [check] min_words (27).")] = None,
    min_tokens: Annotated[int | None, typer.Option("--min-tokens", help="Report spans of at least this many tokens instead (the run's tokenizer).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Whose tokenizer counts tokens (default: the latest run's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Find the spans of FILE copied from the training texts (as normalised words); exit status 1 when there is one."""
    ws = open_workspace(ctx)
    for flag, value in (("--min-words", min_words), ("--min-tokens", min_tokens)):
        if value is not None and value < 1:
            fail(f"{flag} {value}: must be 1 or more")
    if min_words is not None and min_tokens is not None:
        fail("--min-words and --min-tokens: give the threshold in one unit")
    with _console(stderr=True).status(f"checking {file}") as status:
        report = check_file(ws, file, run, min_tokens, min_words, on_progress=status.update)
    out = _console()
    if as_json:
        import json

        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        if report.spans:
            table = Table("#", "words", "tokens", "chars", "source", "text", title=f"Copied spans in {file}",
                          title_justify="left")
            for number, span in enumerate(report.spans, start=1):
                table.add_row(*_span_row(number, span))
            out.print(table)
        out.print(Text(_check_summary(report), style="red" if report.over_threshold else "green"), soft_wrap=True)
        for note in report.notes:
            out.print(Text(f"note: {note}", style="dim"), soft_wrap=True)
    if report.over_threshold:
        raise typer.Exit(1)


# ---------------------------------------------------------------- style


@app.command("style")
@user_errors(StyleError, CorpusError)
def style_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A text in any format and encoding the corpus reads.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the ranking as JSON.")] = False,
) -> None:
    """Which of the corpus's authors FILE reads like (or none of them): n-gram SVMs and Cosine Delta, calibrated."""
    ws = open_workspace(ctx)
    with _console(stderr=True).status("loading the stylometry model") as status:
        model = load_or_fit_workspace_model(
            ws, on_progress=lambda what, done, total: status.update(f"fitting the stylometry model: {what} {done}/{total}"))
        attribution = style_file(ws, file, model=model)
    if as_json:
        import json
        from dataclasses import asdict

        typer.echo(json.dumps({"file": str(file), **asdict(attribution), "best": attribution.best.author,
                               "confidence": attribution.confidence, "attributed_to": attribution.author,
                               "agreement": attribution.agreement}, ensure_ascii=False, indent=2))
        return
    out = _console()
    views = f"{round(attribution.agreement * len(attribution.views))} of {len(attribution.views)} views agree"
    if attribution.outsider:
        out.print(Text(f"{file}: {attribution.words:,} words · reads like none of the corpus authors (nearest: "
                       f"{attribution.best.author}, {views})", style="bold yellow"), soft_wrap=True)
        out.print(Text(f"why: {attribution.open_set.reason}", style="yellow"), soft_wrap=True)
    else:
        out.print(Text(f"{file}: {attribution.words:,} words · reads most like {attribution.best.author} "
                       f"(confidence {attribution.confidence:.0%}; {views})", style="bold"), soft_wrap=True)
    table = Table("author", "probability", "characters (SVM)", "words (SVM)", "Delta words", "Delta characters")
    for score in attribution.ranking:
        table.add_row(score.author, f"{score.probability:.1%}", f"{score.char_score:+.3f}", f"{score.word_score:+.3f}",
                      f"{score.word_distance:.3f}", f"{score.char_distance:.3f}")
    out.print(table)
    for note in style_notes(model, attribution):
        out.print(Text(note, style="dim"), soft_wrap=True)


# ---------------------------------------------------------------- evaluate


@app.command("evaluate")
@user_errors(EvaluationError, RunError, CopyIndexError, StyleError, TokensError, ModelError)
def evaluate_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="The run to evaluate (default: the latest).")] = None,
) -> None:
    """Measure every checkpoint of a run (perplexity, style, copying, extraction, diversity); recommend one."""
    ws = open_workspace(ctx)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("checkpoints"),
        TimeRemainingColumn(), console=_console(stderr=True), transient=True,
    )
    with progress:
        task = progress.add_task("starting", total=None)

        def on_progress(what: str, done: int, total: int) -> None:
            progress.update(task, description=what, completed=done, total=total)

        result = evaluate_run(ws, run, on_progress)
    out = _console()
    report = result.report
    threshold, unit = copy_threshold(report)
    table = Table("checkpoint", "ppl target", "read as target (95%)", f"longest span ({unit})",
                  f"{threshold}+ {unit} spans",
                  "extraction exact", title=f"Run {result.run}", title_justify="left")
    blind = Table("checkpoint", "pairs", "n-gram reader (95%)", "surprisal reader (95%)",
                  title="Machine blind test: real continuation or the checkpoint's?", title_justify="left")
    for c in report["checkpoints"]:
        exact = c["extraction"]["exact_share"]
        share = c["samples"]["target_share"]
        ppl = c.get("val_target_ppl")
        table.add_row(("→ " if c["name"] == result.recommended else "") + c["name"],
                      f"{ppl:.1f}" if ppl else "—", _share_cell(share, c.get("intervals", {}).get("target_share")),
                      f"{c['samples']['longest_span']['mean']:.1f} / {c['samples']['longest_span']['max']:.0f}",
                      f"{c['samples']['share_with_copied_span']:.0%}", f"{exact:.0%}" if exact is not None else "—")
        test = c.get("blind_test") or {}
        blind.add_row(c["name"], str(test.get("pairs", "—")), _blind_cell(test.get("ngrams")),
                      _blind_cell(test.get("surprisal")))
    ceiling = report["ceiling"]["target_share"]
    table.add_row("real held-out text", "", f"{ceiling:.0%}" if ceiling is not None else "—",
                  f"{report['ceiling']['longest_span']['mean']:.1f} / {report['ceiling']['longest_span']['max']:.0f}",
                  "", "", style="dim")
    out.print(table)
    out.print(blind)
    for c in report.get("damaged_checkpoints", []):
        out.print(Text(f"not measured: {c['problem']}", style="yellow"), soft_wrap=True)
    if "voices" in report:
        _print_voice_matrices(out, report["voices"])
    verdict = f"Recommended: {result.recommended} ({report['reason']})" if result.recommended else \
        f"No recommendation: {report['reason']}"
    out.print(Text(verdict, style="bold green" if result.recommended else "bold red"), soft_wrap=True)
    out.print(Text(f"Rule: {report['rule']}", style="dim"), soft_wrap=True)
    out.print(Text("Blind test: the cross-validated accuracy of a reader telling the author's continuations from the "
                   "checkpoint's; 50% = it cannot tell them apart.", style="dim"), soft_wrap=True)
    out.print(f"Report: {result.folder / 'report.html'} (and report.json, plots/)")


def _print_voice_matrices(out: Console, voices: dict) -> None:
    """The attribution matrix of a run with voices, beside the same matrix for real held-out text."""
    from dvoinik.evaluation.voices import AttributionMatrix, matrix_rows

    tables = []
    for key, title in (("samples", f"Voices of {voices['checkpoint']}: whose text each voice reads like"),
                       ("real", "Real held-out text: the same measure")):
        matrix = AttributionMatrix(**voices[key])
        table = Table("voice" if key == "samples" else "author", *matrix.authors, "texts", title=title,
                      title_justify="left")
        for row in matrix_rows(matrix):
            table.add_row(*row, str(matrix.samples[row[0]]))
        tables.append(table)
    from rich.columns import Columns

    out.print(Columns(tables))


def _share_cell(share: float | None, interval: list | None) -> str:
    if share is None:
        return "—"
    return f"{share:.0%} ({100 * interval[0]:.0f}–{100 * interval[1]:.0f})" if interval else f"{share:.0%}"


def _blind_cell(test: dict | None) -> str:
    if not test or test.get("accuracy") is None:
        return "—"
    return f"{test['accuracy']:.0%} ({100 * test['low']:.0f}–{100 * test['high']:.0f})"


# ---------------------------------------------------------------- serve


@app.command("serve")
@user_errors(ServeError, GenerationError, RunError, CopyIndexError, TokensError, ModelError)
def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default: [serve] host, 127.0.0.1). Any other than loopback needs --api-key.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default: [serve] port, 5001).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="The run (default: the latest).")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint-N, best, last; default: best if evaluated, else last.")] = AUTO,
    style: Annotated[str | None, typer.Option("--style", metavar="RUN=W,...", help="Serve a mix of the LoRA adapters of several runs.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="DVOINIK_API_KEY", show_envvar=True, help="Require Authorization: Bearer KEY on every API call.")] = None,
    queue_size: Annotated[int | None, typer.Option("--queue-size", help="Requests that may wait for the model (default: [serve] queue_size).")] = None,
) -> None:
    """The studio in the browser, and KoboldAI- and OpenAI-compatible APIs, over one loaded double."""
    from dvoinik.serve.launch import check_binding, check_port, open_server, run_server  # FastAPI loads only here

    ws = open_workspace(ctx)
    if port is not None and not 1 <= port <= 65535:
        fail(f"--port {port}: must be between 1 and 65535")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    check_binding(host or ws.serve.host, api_key)  # the cheap refusals first, before a minute of loading
    check_port(host or ws.serve.host, port or ws.serve.port)
    err = _console(stderr=True)
    with err.status("loading the double") as status:
        server = open_server(ws, run, checkpoint, parse_style(style) if style else None, api_key, host, queue_size,
                             on_progress=lambda message: status.update(message))
    address = f"http://{'localhost' if server.loopback else server.settings.host}:{port or server.settings.port}"
    out = _console()
    out.print(Text.assemble(("dvoinik serve", "bold"), f": {server.engine.double.checkpoint} · context "
                            f"{server.context_tokens} tokens · queue {server.settings.queue_size}"))
    out.print(Text.assemble("Studio: ", (f"{address}/", "bold cyan"), " · KoboldAI: ", f"{address}/api",
                            " · OpenAI: ", f"{address}/v1"), soft_wrap=True)
    if server.engine.double.voices:
        out.print(Text(f"Voices: {', '.join(server.engine.double.voices)} (the first by default; OpenAI models "
                       f"dvoinik:<voice>)", style="dim"), soft_wrap=True)
    out.print(Text(f"Studio data: {ws.root / 'studio' / 'studio.sqlite3'}" +
                   (" · API key required" if api_key else " · no API key (this computer only)"), style="dim"),
              soft_wrap=True)
    run_server(server, port)


# ---------------------------------------------------------------- export


@app.command("export")
@user_errors(ExportError, GenerationError, RunError, TokensError, ModelError)
def export_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", help="The run (default: the latest).")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="checkpoint-N, best (the evaluation's pick), last; default: best if evaluated, else last.")] = AUTO,
    to: Annotated[Path | None, typer.Option("--to", metavar="DIR", help="The export folder (default: exports/NAME-CHECKPOINT in the workspace).")] = None,
    formats: Annotated[str, typer.Option("--format", help="hf (a Hugging Face folder), gguf (llama.cpp, KoboldCpp, LM Studio, Ollama) or both.")] = "both",
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="f32, f16 or q8_0 (8-bit, about a quarter of f32).")] = "q8_0",
    name: Annotated[str | None, typer.Option("--name", help="The model's name (card title, GGUF name, file names); default: the workspace's name.")] = None,
    adapter: Annotated[bool, typer.Option("--adapter", help="A LoRA run: keep the adapter in the HF folder instead of merging it into its base.")] = False,
    preset: Annotated[str | None, typer.Option("--preset", help="Sampling settings written for the runners and generation_config.json; default: the workspace's preset.")] = None,
    base_id: Annotated[str | None, typer.Option("--base-id", metavar="ORG/NAME", help="The hub id of a LoRA run's base, when it was trained from a local folder.")] = None,
) -> None:
    """Export a checkpoint: a clean Hugging Face folder, a GGUF file, a model card, and how to run it at home."""
    ws = open_workspace(ctx)
    options = ExportOptions(run=run, checkpoint=checkpoint, to=to, format=formats, gguf_type=gguf_type, name=name,
                            adapter=adapter, preset=preset, base_id=base_id)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=_console(stderr=True), transient=True)
    with progress:
        task = progress.add_task("starting", total=None)
        result = export_double(ws, options, lambda what, done, total: progress.update(
            task, description=what, completed=done, total=total or None))
    _print_export(result)


def _print_export(result: ExportResult) -> None:
    out = _console()
    out.print(Text.assemble(("Exported ", "bold"), (f"{result.source.run.name}/{result.source.checkpoint.name}", "bold"),
                            " to ", (str(result.folder), "bold cyan")), soft_wrap=True)
    out.print(Text(f"Chosen: {result.source.why}", style="dim"), soft_wrap=True)
    table = Table("file", "size")
    for file, size in result.files.items():
        table.add_row(file, f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size:,} bytes")
    out.print(table)
    if result.gguf is not None:
        out.print(Text(f"GGUF: {result.gguf.architecture}, pre-tokenizer {result.gguf.pre_tokenizer}, context "
                       f"{result.gguf.context_length}, tensors " +
                       ", ".join(f"{n} {kind}" for kind, n in sorted(result.gguf.types.items())), style="dim"),
                  soft_wrap=True)
        out.print(f"Ollama: cd {result.folder} && ollama create {result.ollama_name} -f Modelfile && "
                  f"ollama run {result.ollama_name}", soft_wrap=True)
        out.print("KoboldCpp, LM Studio, llama.cpp: see RUNNING.md there", soft_wrap=True)
    out.print(Text("The originality guard is not in the weights: check what you publish with `dvoinik check`.",
                   style="yellow"), soft_wrap=True)
