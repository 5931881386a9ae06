"""The evaluation's plots (PNG, matplotlib) and a self-contained report.html, from report.json's contents.

Pure presentation: everything shown is in the report dict that `evaluate.py` wrote. The
PNGs are saved beside report.html and also embedded in it as data URIs, so the page can
be mailed or opened from anywhere as one file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

PLOTS_DIR = "plots"
REPORT_HTML = "report.html"
NOVELTY_TICKS = range(1, 21, 2)  # n = 1…20, as evaluate.py measures


def _figure(width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    # A Figure of its own, not pyplot: no global backend or state, so a server thread can draw too.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")


def _finish(fig: Any, ax: Any, report: dict | None, path: Path, legend_size: int = 8, legend_columns: int = 1,
            **axes: Any) -> None:
    """Mark the recommended step (when `report` is given), label the axes, add the legend, save."""
    if report is not None:
        _mark_recommended(ax, report)
    ax.set(**axes)
    ax.legend(fontsize=legend_size, ncol=legend_columns)
    _save(fig, path)


def copy_threshold(report: dict) -> tuple[int, str]:
    """What counts as a copied span in this report: (`[check] min_words`, "words"), or tokens in a report from before
    copying was measured in words."""
    if report.get("copy_unit") == "words":
        return report["min_words"], "words"
    return report["min_tokens"], "tokens"


def _steps(report: dict) -> list[int]:
    return [c["step"] for c in report["checkpoints"]]


def _mark_recommended(ax: Any, report: dict) -> None:
    chosen = next((c for c in report["checkpoints"] if c["name"] == report["recommended"]), None)
    if chosen is not None:
        ax.axvline(chosen["step"], color="tab:green", linestyle=":", linewidth=1.5, label=f"recommended ({chosen['name']})")


def _series(ax: Any, steps: list[int], values: list[Any], label: str, **style: Any) -> None:
    points = [(s, v) for s, v in zip(steps, values) if v is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, **style)


def plot_perplexity(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    _series(ax, steps, [c.get("val_target_ppl") for c in report["checkpoints"]], f"held-out works of {report['target']}")
    _series(ax, steps, [c.get("val_influences_ppl") for c in report["checkpoints"]], "held-out works of the influences")
    _finish(fig, ax, report, path, xlabel="step", ylabel="perplexity", title="Held-out perplexity")


def plot_style(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    _series(ax, steps, [c["samples"]["target_share"] for c in report["checkpoints"]], "samples attributed to the target")
    _series(ax, steps, [c["samples"]["target_probability"] for c in report["checkpoints"]],
            "mean probability of the target", linestyle="--")
    ceiling = report["ceiling"]["target_share"]
    if ceiling is not None:
        ax.axhline(ceiling, color="black", linestyle="--", linewidth=1, label=f"real held-out text ({ceiling:.0%})")
    _finish(fig, ax, report, path, xlabel="step", ylabel="share", ylim=(-0.02, 1.02),
            title=f"Style: does it read like {report['target']}?")


def plot_copying(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    for key, style in (("mean", "-"), ("p90", "--"), ("max", ":")):
        _series(ax, steps, [c["samples"]["longest_span"][key] for c in report["checkpoints"]],
                f"longest copied span, {key}", linestyle=style)
    threshold, unit = copy_threshold(report)
    ax.axhline(threshold, color="tab:red", linewidth=1, label=f"{threshold} {unit} (check threshold)")
    ax.axhline(report["ceiling"]["longest_span"]["mean"], color="black", linestyle="--", linewidth=1,
               label="real held-out text, mean")
    _finish(fig, ax, report, path, xlabel="step", ylabel=unit,
            title="Copying: longest span of each sample found in the training texts")


def plot_extraction(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    threshold, unit = copy_threshold(report)
    _series(ax, steps, [c["samples"]["share_with_copied_span"] for c in report["checkpoints"]],
            f"samples with a span of {threshold}+ {unit}")
    exactly = "word for word" if unit == "words" else "exactly"
    _series(ax, steps, [c["extraction"]["exact_share"] for c in report["checkpoints"]],
            f"extraction prompts reproduced {exactly} ({report.get('extraction_tokens', 64)} tokens)")
    _finish(fig, ax, report, path, xlabel="step", ylabel="share", ylim=(-0.02, 1.02), title="Memorisation")


def plot_blind_test(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    for reader, label, colour in (("ngrams", "n-gram reader", "tab:blue"), ("surprisal", "surprisal reader", "tab:orange")):
        tests = [c.get("blind_test", {}).get(reader, {}) for c in report["checkpoints"]]
        points = [(s, t) for s, t in zip(steps, tests) if t.get("accuracy") is not None]
        if points:
            xs = [p[0] for p in points]
            ax.fill_between(xs, [p[1]["low"] for p in points], [p[1]["high"] for p in points], color=colour, alpha=0.15)
            ax.plot(xs, [p[1]["accuracy"] for p in points], marker="o", color=colour, label=f"{label} (95% interval)")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="50%: cannot tell")
    _finish(fig, ax, report, path, xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02),
            title="Machine blind test: real continuation or the double's?")


def plot_novelty(report: dict, path: Path) -> None:
    import matplotlib

    fig, ax = _figure()
    colours = matplotlib.colormaps["viridis"]
    total = max(1, len(report["checkpoints"]) - 1)
    for number, checkpoint in enumerate(report["checkpoints"]):
        curve = {int(n): v for n, v in checkpoint["samples"]["novel_ngrams"].items() if v is not None}
        ax.plot(list(curve), list(curve.values()), color=colours(number / total), label=checkpoint["name"])
    real = {int(n): v for n, v in report["ceiling"]["novel_ngrams"].items() if v is not None}
    ax.plot(list(real), list(real.values()), color="black", linestyle="--", linewidth=2, label="real held-out text")
    _finish(fig, ax, None, path, legend_size=7, legend_columns=2, xlabel=f"n ({copy_threshold(report)[1]})",
            ylabel="share of n-grams not in the training texts", ylim=(-0.02, 1.02), xticks=list(NOVELTY_TICKS),
            title="Novel n-grams")


def plot_diversity(report: dict, path: Path) -> None:
    fig, ax = _figure()
    steps = _steps(report)
    for n in ("1", "2", "3"):
        _series(ax, steps, [_by_n(c["samples"]["distinct"], n) for c in report["checkpoints"]], f"distinct-{n}")
    _series(ax, steps, [c["samples"]["repetition"] for c in report["checkpoints"]], "repetition (word trigrams)",
            linestyle="--")
    for n in ("1", "2", "3"):
        value = _by_n(report["ceiling"]["distinct"], n)
        if value is not None:
            ax.axhline(value, color="grey", linestyle=":", linewidth=1)
    _finish(fig, ax, report, path, xlabel="step", ylabel="share", ylim=(-0.02, 1.02),
            title="Diversity (dotted: distinct-n of real held-out text)")


def _by_n(values: dict, n: str) -> Any:
    return values.get(n, values.get(int(n)))  # keys are ints in memory, strings after JSON


PLOTS = (
    ("perplexity.png", plot_perplexity, "Perplexity"),
    ("style.png", plot_style, "Style"),
    ("copying.png", plot_copying, "Copying"),
    ("memorisation.png", plot_extraction, "Memorisation"),
    ("novelty.png", plot_novelty, "Novel n-grams"),
    ("diversity.png", plot_diversity, "Diversity"),
    ("blind_test.png", plot_blind_test, "Machine blind test"),
)


# ---------------------------------------------------------------- html


def _percent(value: Any) -> str:
    return "—" if value is None else f"{value:.0%}"


def _number(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _interval(value: Any, interval: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.0%} ({interval[0]:.0%}–{interval[1]:.0%})" if interval else f"{value:.0%}"


def _blind(c: dict, reader: str) -> str:
    test = c.get("blind_test", {}).get(reader)
    if not test or test.get("accuracy") is None:
        return "—"
    return _interval(test["accuracy"], (test["low"], test["high"]))


def _table(report: dict) -> str:
    threshold, unit = copy_threshold(report)
    head = ("checkpoint", "step", "ppl target", "ppl influences", "read as target (95%)",
            f"longest span, {unit} (mean / max)", f"samples with {threshold}+ {unit} span", "extraction exact (95%)",
            "blind test: n-grams", "blind test: surprisal", "distinct-2", "repetition")
    rows = []
    for c in report["checkpoints"]:
        s = c["samples"]
        intervals = c.get("intervals", {})
        cells = (c["name"], str(c["step"]), _number(c.get("val_target_ppl")), _number(c.get("val_influences_ppl")),
                 _interval(s["target_share"], intervals.get("target_share")),
                 f"{s['longest_span']['mean']:.1f} / {s['longest_span']['max']:.0f}",
                 _percent(s["share_with_copied_span"]),
                 _interval(c["extraction"]["exact_share"], intervals.get("extraction_exact_share")),
                 _blind(c, "ngrams"), _blind(c, "surprisal"),
                 _number(_by_n(s["distinct"], "2"), 2), _number(s["repetition"], 2))
        mark = ' class="chosen"' if c["name"] == report["recommended"] else ""
        rows.append(f"<tr{mark}>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    ceiling = report["ceiling"]
    rows.append("<tr class=\"real\">" + "".join(f"<td>{html.escape(x)}</td>" for x in (
        "real held-out text", "", "", "", _percent(ceiling["target_share"]),
        f"{ceiling['longest_span']['mean']:.1f} / {ceiling['longest_span']['max']:.0f}",
        _percent(ceiling["share_with_copied_span"]), "", "", "", _number(_by_n(ceiling["distinct"], "2"), 2),
        _number(ceiling["repetition"], 2))) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _examples(report: dict) -> str:
    chosen = next((c for c in report["checkpoints"] if c["name"] == report["recommended"]), report["checkpoints"][-1])
    parts = [f"<h2>Samples from {html.escape(chosen['name'])}</h2>"]
    for example in chosen["examples"]:  # spread over the prompts by evaluate.py
        parts.append(
            "<div class=\"example\">"
            f"<p class=\"meta\">prompt from «{html.escape(example['work'])}» · longest copied span "
            f"{example['longest_span']} {copy_threshold(report)[1]}</p>"
            f"<p><span class=\"prompt\">{html.escape(example['prompt'])}</span>"
            f"<span class=\"double\">{html.escape(example['text'])}</span></p>"
            f"<p class=\"meta\">what the author wrote:</p><p class=\"real\">{html.escape(example['real'])}</p></div>"
        )
    return "".join(parts)


STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; }
.verdict { background: #eef7ee; border-left: 4px solid #2e7d32; padding: 0.6em 1em; }
.verdict.none { background: #fdecea; border-left-color: #c62828; }
.rule { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; white-space: nowrap; }
tr.chosen { background: #e8f5e9; font-weight: 600; } tr.real { color: #555; font-style: italic; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1em; }
.plots img { width: 100%; border: 1px solid #eee; }
.example { border-left: 3px solid #ccc; padding-left: 1em; margin: 1em 0; }
.prompt { color: #555; } .double { background: #e3f2fd; } .real { color: #444; }
.meta { color: #777; font-size: 0.85em; margin: 0.2em 0; }
"""


def voices_html(report: dict) -> str:
    """A run with voices: its attribution matrix beside real held-out text's ("" for a run without voices)."""
    voices = report.get("voices")
    if not voices:
        return ""
    parts = [f"<h2>Voices of {html.escape(voices['checkpoint'])}</h2>",
             f"<p class=\"meta\">Each voice continues the same {voices['prompts']} prompts, taken evenly from every "
             "author's held-out works; a cell is the share of the row's texts the stylometry model gives to the "
             "column's author. The diagonal is what the markers achieve; real text shows how far texts this short "
             "can be attributed at all.</p>"]
    for key, label in (("samples", "voice"), ("real", "real held-out text of")):
        matrix = voices[key]
        head = "".join(f"<th>{html.escape(a)}</th>" for a in matrix["authors"])
        own = ' class="chosen"'
        rows = "".join(
            f"<tr><td>{html.escape(label)} {html.escape(name)}</td>"
            + "".join(f"<td{own if a == name else ''}>{_percent(shares.get(a, 0.0))}</td>" for a in matrix["authors"])
            + f"<td>{matrix['samples'][name]}</td></tr>" for name, shares in matrix["rows"].items())
        parts.append(f"<table><thead><tr><th></th>{head}<th>texts</th></tr></thead><tbody>{rows}</tbody></table>")
    return "\n".join(parts)


def _damaged(report: dict) -> str:
    """Checkpoints that could not be read: named, so a missing row is never silent."""
    damaged = report.get("damaged_checkpoints", [])
    return "".join(f'<p class="rule">Not measured: {html.escape(c["problem"])}</p>' for c in damaged)


def _open_set_line(report: dict) -> str:
    style = report.get("style_model")
    if not style:
        return ""
    open_set = style["calibration"].get("open_set", {})
    line = (f"A sample that reads like none of the corpus's authors counts as {style.get('none_of_them', 'none')}, "
            "not as the target.")
    if open_set.get("outsiders"):
        line += (f" That answer was calibrated with each author in turn left out: AUROC {open_set['auroc']:.2f}, "
                 f"{open_set['false_alarms']:.0%} of held-out text flagged.")
    return line


def render_html(report: dict, images: dict[str, bytes]) -> str:
    recommended = report["recommended"]
    verdict = (f"<div class=\"verdict\">Recommended: <b>{html.escape(recommended)}</b> — {html.escape(report['reason'])}. "
               f"<code>dvoinik generate --run {html.escape(report['run'])} --checkpoint best</code> uses it.</div>"
               if recommended else f"<div class=\"verdict none\">No recommendation: {html.escape(report['reason'])}.</div>")
    settings = report["settings"]
    figures = "".join(
        f"<figure><img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{base64.b64encode(images[name]).decode()}\">"
        f"</figure>" for name, _, title in PLOTS if name in images
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation of {html.escape(report['run'])}</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation of run {html.escape(report['run'])}</h1>
<p class="meta">{html.escape(report['created'])} · target author {html.escape(report['target'])} ·
{len(report['checkpoints'])} checkpoints · {report['prompts']} prompts of {settings['prompt_tokens']} tokens from the
target's held-out works, {report.get('sample_tokens', settings['sample_tokens'])}-token samples ({html.escape(settings['preset'])} preset, seed
{settings['seed']}), guard off</p>
{verdict}
<p class="rule">Rule: {html.escape(report['rule'])}</p>
<h2>Checkpoints</h2>
{_table(report)}
{_damaged(report)}
<p class="rule">Intervals are 95% (Wilson). Blind test: the cross-validated accuracy of a reader trained to tell
the author's real continuations of the prompts from the checkpoint's, on n-grams or on the checkpoint's own
surprisal of each token; 50% means it cannot tell them apart. {html.escape(_open_set_line(report))}</p>
<h2>Measures against the step</h2>
<div class="plots">{figures}</div>
{voices_html(report)}
{_examples(report)}
</body></html>
"""


def write_report_files(report: dict, folder: Path) -> None:
    """plots/*.png and report.html into `folder`."""
    plots = folder / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, plot, _ in PLOTS:
        plot(report, plots / name)
        images[name] = (plots / name).read_bytes()
    (folder / REPORT_HTML).write_text(render_html(report, images), encoding="utf-8")
