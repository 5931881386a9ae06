"""The seed's experiment reproduced small: pretrain a base, fine-tune it on the target alone (v1) and with influences (v2).

    python benchmarks/seed_reproduction.py --folder /tmp/seed [--size cpu|gpu] [--write docs/reproduction.md]

The story this project grew out of (../shared/BRIEF.md): ruGPT-3 fine-tuned on one
writer's 4.4 MB carried the style late, when it already handed back its training books;
adding influences, deduplicating and upsampling the target ×10 worked. Here:

1. **pretrain** a built-in model from scratch on the twelve corpus authors other than the
   target (our stand-in for a pretrained base);
2. **v1**: fine-tune that checkpoint (`--base <checkpoint folder>`, its own tokenizer) on
   the target's works alone, until the training perplexity falls to `target_ppl` (3–5,
   as the story did) or the step budget ends. The influences are in v1's corpus at
   weight 0.001 (0.3% of its tokens together) only so that evaluation has authors to
   attribute among;
3. **v2**: the same from the same checkpoint, on the target ×10 mixed with influences
   (Gorky, Bryusov, Bely: the target's contemporaries) at ×1;
4. `evaluate` every checkpoint of both: held-out perplexity, attribution (with the
   open-set answer), copying, extraction, and the machine blind test.

Target: Andreev (12 works; the story's own list of influences began with him). Each step
is skipped when its output exists, so a run can be continued. `--size cpu` caps every
author's text and uses the `tiny` model (minutes on a CPU); `--size gpu` uses the whole
corpus and the `small` model (a short slot on one GPU). The figures go to
docs/images/reproduction-*.png and a table between markers in the `--write` file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.evaluation.evaluate import evaluate_run
from dvoinik.training.checkpoints import list_checkpoints
from dvoinik.training.loop import train
from dvoinik.workspace import add_sources, init_workspace, load_workspace, write_settings

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- reproduction:start -->"
SECTION_END = "<!-- reproduction:end -->"
TARGET = "andreev"
INFLUENCES = ("gorky", "bryusov", "bely")
IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Size:
    model: str
    chars_per_author: int | None  # whole works, smallest first, up to this many characters (None: all)
    target_chars: int | None  # the same for the target
    vocab_size: int
    block_size: int
    batch_size: int
    pretrain_steps: int
    pretrain_lr: float
    finetune_steps: int
    finetune_lr: float
    save_every: int
    target_ppl: float
    prompts: int
    sample_tokens: int
    extraction_prompts: int
    minutes: float  # time budget per training run


SIZES = {
    "cpu": Size(model="tiny", chars_per_author=150_000, target_chars=120_000, vocab_size=4000, block_size=128, batch_size=16,
                pretrain_steps=400, pretrain_lr=2e-3, finetune_steps=800, finetune_lr=1e-3, save_every=100,
                target_ppl=4.0, prompts=24, sample_tokens=96, extraction_prompts=24, minutes=30.0),
    "gpu": Size(model="small", chars_per_author=None, target_chars=None, vocab_size=16000, block_size=512, batch_size=32,
                pretrain_steps=2500, pretrain_lr=6e-4, finetune_steps=2000, finetune_lr=2e-4, save_every=250,
                target_ppl=4.0, prompts=48, sample_tokens=192, extraction_prompts=32, minutes=4.0),
}


def chosen_files(classics: Path, author: str, cap: int | None) -> list[Path]:
    """The author's works, whole, smallest first, up to `cap` characters (at least two where there are two)."""
    rows = [line.split("\t") for line in (classics / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    files = sorted((int(r[5]), r[1]) for r in rows if r[0] == author)
    out, total = [], 0
    for chars, name in files:
        if cap is not None and len(out) >= 2 and total + chars > cap:
            break
        out.append(classics / name)
        total += chars
    return out


def workspace(folder: Path, name: str, authors: dict[str, tuple[str, float]], classics: Path, size: Size):
    """A workspace with these authors (name -> (role, weight)), its corpus built."""
    if (folder / "corpus" / "documents.jsonl").is_file():
        return load_workspace(folder)
    ws = init_workspace(folder, name=name)
    for author, (role, weight) in authors.items():
        cap = size.target_chars if role == "target" else size.chars_per_author
        ws, _ = add_sources(ws, chosen_files(classics, author, cap), author=author, role=role, weight=weight)
    ws = write_settings(ws, "corpus", {"workers": 1})
    build_corpus(ws)
    return ws


def train_settings(size: Size, base: str, steps: int, lr: float, target_ppl: float) -> dict:
    return {"base": base, "method": "full", "vocab_size": size.vocab_size, "block_size": size.block_size,
            "batch_size": size.batch_size, "learning_rate": lr, "warmup_fraction": 0.05, "max_steps": steps,
            "save_every": size.save_every, "eval_every": size.save_every, "eval_blocks": 16, "log_every": 10,
            "time_budget_minutes": size.minutes, "target_train_ppl": target_ppl, "decay": "constant"}


def trained(ws, run: str, settings: dict) -> Path:
    """Train `run` unless it is done (its outcome kept in runs/<run>/outcome.json); its last checkpoint's folder."""
    folder = ws.runs_dir / run
    if not (folder / "outcome.json").is_file():
        ws = write_settings(ws, "train", settings)
        started = time.perf_counter()
        result = train(ws, run=run)
        outcome = {"steps": result.steps, "stop_reason": result.stop_reason,
                   "seconds": round(time.perf_counter() - started, 1), "train_ppl": result.train_ppl}
        (folder / "outcome.json").write_text(json.dumps(outcome), encoding="utf-8")
        print(f"{ws.name}/{run}: {outcome}", flush=True)
    return list_checkpoints(folder)[-1].path


def outcome(ws, run: str) -> dict:
    return json.loads((ws.runs_dir / run / "outcome.json").read_text(encoding="utf-8"))


def evaluated(ws, run: str, size: Size) -> dict:
    report_path = ws.runs_dir / run / "evaluation" / "report.json"
    if not report_path.is_file():
        ws = write_settings(ws, "evaluate", {"prompts": size.prompts, "prompt_tokens": 32,
                                             "sample_tokens": size.sample_tokens,
                                             "extraction_prompts": size.extraction_prompts})
        started = time.perf_counter()
        evaluate_run(ws, run)
        print(f"{ws.name}/{run}: evaluated in {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads(report_path.read_text(encoding="utf-8"))


def training_ppl(ws, run: str) -> dict[int, float]:
    """The training perplexity logged nearest before each step."""
    out = {}
    for line in (ws.runs_dir / run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("kind") == "train":
            out[int(record["step"])] = float(record["ppl"])
    return out


def at_step(curve: dict[int, float], step: int) -> float | None:
    before = [s for s in curve if s <= step]
    return curve[max(before)] if before else None


def rows_of(report: dict, train_ppl: dict[int, float]) -> list[dict]:
    rows = []
    for c in report["checkpoints"]:
        s = c["samples"]
        blind = c.get("blind_test", {})
        rows.append({
            "name": c["name"], "step": c["step"], "train_ppl": at_step(train_ppl, c["step"]),
            "val_ppl": c.get("val_target_ppl"), "target_share": s["target_share"],
            "target_interval": c.get("intervals", {}).get("target_share"),
            "none_share": s["attributed"].get(report.get("style_model", {}).get("none_of_them", ""), 0) / max(
                sum(s["attributed"].values()), 1) if report.get("style_model") else None,
            "copied": s["share_with_copied_span"], "longest_mean": s["longest_span"]["mean"],
            "longest_max": s["longest_span"]["max"], "exact": c["extraction"]["exact_share"],
            "extraction_span": c["extraction"]["mean_longest_span"],
            "ngrams": blind.get("ngrams", {}), "surprisal": blind.get("surprisal", {}),
        })
    return rows


def plot(runs: dict[str, list[dict]], reports: dict[str, dict], prefix: str) -> list[str]:
    from matplotlib.figure import Figure

    IMAGES.mkdir(parents=True, exist_ok=True)
    colours = {"v1": "tab:red", "v2": "tab:blue"}
    panels = [
        ("perplexity", "perplexity (log scale)", [("train_ppl", "training", ":"), ("val_ppl", "held-out target", "-")], True),
        ("style", "share of samples", [("target_share", "read as the target", "-"), ("none_share", "read as none of them", ":")], False),
        ("memorisation", "share", [("exact", "extraction prompts reproduced exactly", "-"), ("copied", "samples with a copied span", ":")], False),
        ("blind", "accuracy", [("ngrams", "blind test, n-gram reader", "-"), ("surprisal", "blind test, surprisal reader", ":")], False),
    ]
    names = []
    for key, ylabel, series, log in panels:
        fig = Figure(figsize=(6.4, 3.8), dpi=110)
        ax = fig.subplots()
        ax.grid(True, alpha=0.3)
        for run, rows in runs.items():
            for field, label, style in series:
                points = [(r["step"], r[field]["accuracy"] if isinstance(r[field], dict) else r[field]) for r in rows]
                points = [(x, y) for x, y in points if y is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], linestyle=style, marker="o", markersize=3,
                            color=colours[run], label=f"{run}: {label}")
            chosen = next((r for r in rows if r["name"] == reports[run]["recommended"]), None)
            if chosen is not None:
                ax.axvline(chosen["step"], color=colours[run], alpha=0.4, linewidth=1)
        if key == "blind":
            ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="50%: cannot tell")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set(xlabel="fine-tuning step", ylabel=ylabel, title=f"{key}: v1 (target alone) vs v2 (target ×10 + influences)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{prefix}-{key}.png"
        fig.savefig(IMAGES / name, format="png")
        names.append(name)
    return names


def table(rows: list[dict]) -> list[str]:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:.0%}"

    def blind(t: dict) -> str:
        return "—" if not t or t.get("accuracy") is None else f"{t['accuracy']:.0%} ({t['low']:.0%}–{t['high']:.0%})"

    lines = ["| checkpoint | train ppl | held-out ppl | read as target (95%) | none of them | extraction exact | "
             "longest span mean / max | blind: n-grams | blind: surprisal |",
             "|---|---:|---:|---|---:|---:|---:|---|---|"]
    for r in rows:
        interval = r["target_interval"]
        share = "—" if r["target_share"] is None else (
            f"{r['target_share']:.0%} ({interval[0]:.0%}–{interval[1]:.0%})" if interval else pct(r["target_share"]))
        lines.append(f"| {r['name']} | {r['train_ppl']:.1f} | {r['val_ppl']:.1f} | {share} | {pct(r['none_share'])} | "
                     f"{pct(r['exact'])} | {r['longest_mean']:.1f} / {r['longest_max']:.0f} | {blind(r['ngrams'])} | "
                     f"{blind(r['surprisal'])} |" if r["train_ppl"] is not None and r["val_ppl"] is not None else
                     f"| {r['name']} | — | — | {share} | {pct(r['none_share'])} | {pct(r['exact'])} | "
                     f"{r['longest_mean']:.1f} / {r['longest_max']:.0f} | {blind(r['ngrams'])} | {blind(r['surprisal'])} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file's reproduction section")
    args = parser.parse_args()
    size = SIZES[args.size]
    classics = args.corpus / "ru-classics"
    started = time.perf_counter()
    others = sorted(p.name for p in classics.iterdir() if p.is_dir() and p.name != TARGET)

    pre = workspace(args.folder / "pretrain", "pretraining (12 authors)", {a: ("influence", 1.0) for a in others},
                    classics, size)
    base = trained(pre, "base", train_settings(size, size.model, size.pretrain_steps, size.pretrain_lr, 0.0))
    print(f"base: {base}", flush=True)

    v1 = workspace(args.folder / "v1", "v1: the target alone",
                   {TARGET: ("target", 10.0), **{a: ("influence", 0.001) for a in INFLUENCES}}, classics, size)
    v2 = workspace(args.folder / "v2", "v2: target x10 + influences",
                   {TARGET: ("target", 10.0), **{a: ("influence", 1.0) for a in INFLUENCES}}, classics, size)
    runs, reports, outcomes = {}, {}, {"base": outcome(pre, "base")}
    for label, ws in (("v1", v1), ("v2", v2)):
        trained(ws, "finetune", train_settings(size, str(base), size.finetune_steps, size.finetune_lr, size.target_ppl))
        reports[label] = evaluated(ws, "finetune", size)
        runs[label] = rows_of(reports[label], training_ppl(ws, "finetune"))
        outcomes[label] = outcome(ws, "finetune")
    images = plot(runs, reports, f"reproduction-{args.size}")

    mix = json.loads((v2.corpus_dir / "report.json").read_text(encoding="utf-8"))["mix"]
    lines = [
        SECTION_START,
        f"## Measured: `--size {args.size}`",
        "",
        f"`python benchmarks/seed_reproduction.py --folder … --size {args.size}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {datetime.date.today().isoformat()}; "
        f"{time.perf_counter() - started:.0f} s in all (steps already done are reused). Settings: "
        + ", ".join(f"{k}={v}" for k, v in asdict(size).items()) + ".",
        "",
        "Shares of training characters in v2 after the weights: "
        + ", ".join(f"{a} {v['effective_share']:.0%}" for a, v in mix.items()) + ".",
        "",
        f"Pretraining: {outcomes['base']['steps']} steps in {outcomes['base']['seconds']:.0f} s, training perplexity "
        f"{outcomes['base']['train_ppl']:.1f} at the end.",
        "",
    ]
    for label in ("v1", "v2"):
        done = outcomes[label]
        lines += [f"### {label}: {'the target alone' if label == 'v1' else 'the target ×10 with influences'}", "",
                  f"{done['steps']} steps in {done['seconds']:.0f} s, stopped by {done['stop_reason']} (training "
                  f"perplexity {done['train_ppl']:.1f}); recommended: **{reports[label]['recommended']}** "
                  f"({reports[label]['reason']}).", "", *table(runs[label]), ""]
    lines += [f"![{name}](images/{name})" for name in images]
    lines.append(SECTION_END)
    publish("\n".join(lines), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
