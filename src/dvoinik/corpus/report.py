"""Present a corpus build report: Markdown for `corpus/report.md`, a rich table for the terminal."""

from __future__ import annotations

from rich.table import Table

# The cleaning rules in the order a reader of the report thinks of them.
RULE_NAMES = {
    "navigation_blocks": "web navigation blocks",
    "navigation_lines": "…lines in them",
    "url_lines": "lines that were only links",
    "urls": "links removed",
    "rule_lines": "horizontal rules",
    "bibliographic_lines": "bibliographic/source lines",
    "header_lines": "title/author header lines",
    "endnote_blocks": "editorial endnote blocks",
    "endnote_lines": "…lines in them",
    "footnote_markers": "footnote markers",
    "editorial_insertions": "editorial {insertions}",
    "emphasis_markup": "*emphasis* markup",
    "page_numbers": "page numbers",
    "trailing_dates": "trailing dates",
    "joined_lines": "hard-wrapped lines joined",
    "broken_paragraphs_joined": "paragraphs split by page breaks joined",
    "hyphenations_joined": "end-of-line hyphenations joined",
    "double_hyphens": "-- as dashes",
    "spaced_hyphens": "spaced hyphens as dashes",
    "dialogue_dashes": "dialogue hyphens as dashes",
    "quotes": "quotes normalised",
    "nonstandard_spaces": "non-breaking/odd spaces",
    "repeated_spaces": "repeated spaces",
    "stress_marks": "stress marks",
    "invisible_characters": "soft hyphens/zero-width",
    "control_characters": "control characters",
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(report: dict) -> str:
    """The report as a page a person reads top to bottom."""
    files, totals, speed = report["files"], report["totals"], report["speed"]
    lines = [
        f"# Corpus report: {report['workspace']}",
        "",
        f"{totals['documents']} documents ({totals['train_documents']} train, {totals['val_documents']} validation), "
        f"{totals['words']:,} words, {totals['chars']:,} characters. "
        f"Read {files['listed']} files ({speed['input_mb']:.1f} MB of text) in {speed['total_seconds']:.1f} s "
        f"({speed['mb_per_second']:.1f} MB/s, {speed['workers']} workers).",
        "",
        *(["**Warnings:**", "", *[f"- {w}" for w in report["warnings"]], ""] if report["warnings"] else []),
        "## Authors and mix",
        "",
        "| author | role | weight | works train/val | words train | words val | raw share | effective share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for author, row in report["authors"].items():
        mix = report["mix"].get(author, {})
        lines.append(
            f"| {author} | {row['role']} | {row['weight']:g} | {row['train_works']}/{row['val_works']} | "
            f"{row['train_words']:,} | {row['val_words']:,} | {_pct(mix.get('raw_share', 0))} | "
            f"{_pct(mix.get('effective_share', 0))} |"
        )
    lines += [
        "",
        "Shares are of training characters; the effective share is what the training sampler uses "
        "(each author's characters times their weight).",
        "",
        "## Files",
        "",
        f"Formats: {_inline(files['formats'])}. Encodings: {_inline(files['encodings'])}.",
        "",
    ]
    if files["skipped"]:
        lines += [f"### Skipped ({len(files['skipped'])})", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{s['source']}` | {s['reason']} |" for s in files["skipped"]]
        lines.append("")
    if files["notes"]:
        lines += [f"### Notes ({len(files['notes'])})", ""]
        lines += [f"- `{n['source']}`: {n['reason']}" for n in files["notes"]]
        lines.append("")
    lines += ["## Duplicates", ""]
    if report["duplicates"]:
        lines += ["| removed | duplicate of | kind | similarity (contained: share of its text inside) |", "|---|---|---|---:|"]
        for d in report["duplicates"]:
            lines.append(
                f"| {_work(d['removed'])} | {_work(d['duplicate_of'])} | {d['kind']} | {d['similarity']:.3f} |"
            )
    else:
        lines.append("No duplicate works found.")
    paragraphs = report["paragraphs_removed"]
    lines += ["", f"Paragraphs removed: {_inline(paragraphs['counts']) or 'none'}.", ""]
    if paragraphs["boilerplate"]:
        lines += ["| boilerplate paragraph | works |", "|---|---:|"]
        lines += [f"| {_cell(b['text'])} | {b['works']} |" for b in paragraphs["boilerplate"][:_LISTED]]
        lines += [_more(len(paragraphs["boilerplate"])), ""]
    if paragraphs["repeated"]:
        lines += ["| repeated paragraph | removed from | first seen in |", "|---|---|---|"]
        lines += [
            f"| {_cell(r['text'])} | {_work(r['removed_from'])} | {_work(r['first_seen_in'])} |"
            for r in paragraphs["repeated"][:_LISTED]
        ]
        lines += [_more(len(paragraphs["repeated"])), ""]
    lines += ["## Cleaning", "", _cleaning_table(report["cleaning"]), ""]
    return "\n".join(lines)


def _cleaning_table(cleaning: dict[str, dict[str, int]]) -> str:
    authors = list(cleaning)
    rows = ["| rule | " + " | ".join(authors) + " |", "|---|" + "---:|" * len(authors)]
    for key, name in RULE_NAMES.items():
        values = [cleaning[a].get(key, 0) for a in authors]
        if any(values):
            rows.append(f"| {name} | " + " | ".join(f"{v:,}" for v in values) + " |")
    return "\n".join(rows)


_LISTED = 50  # rows per table in report.md; report.json lists everything


def _more(total: int) -> str:
    return f"\n…and {total - _LISTED} more in report.json." if total > _LISTED else ""


def _work(work: dict) -> str:
    return f"{work['author']}: {work['title']} (`{work['source']}`)"


def _inline(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:100]


def authors_table(report: dict) -> Table:
    """The per-author summary the `corpus` command prints."""
    table = Table(title=f"Corpus of {report['workspace']}", caption="shares of training characters; mix = × weight")
    table.add_column("author", overflow="fold", min_width=8)
    table.add_column("role")
    for column in ["×", "works\ntrain/val", "words\ntrain", "words\nval", "raw\nshare", "mix\nshare"]:
        table.add_column(column, justify="right", no_wrap=True)
    for author, row in report["authors"].items():
        mix = report["mix"].get(author, {})
        table.add_row(
            author,
            row["role"],
            f"{row['weight']:g}",
            f"{row['train_works']}/{row['val_works']}",
            f"{row['train_words']:,}",
            f"{row['val_words']:,}",
            _pct(mix.get("raw_share", 0)),
            _pct(mix.get("effective_share", 0)),
        )
    return table


def summary_line(report: dict) -> str:
    """One line: what was built, what was removed, how fast."""
    totals, files, speed = report["totals"], report["files"], report["speed"]
    paragraphs = sum(report["paragraphs_removed"]["counts"].values())
    return (
        f"{totals['documents']} documents ({totals['train_documents']} train, {totals['val_documents']} val), "
        f"{totals['words']:,} words; removed {len(report['duplicates'])} duplicate works and {paragraphs} "
        f"repeated or boilerplate paragraphs; skipped {len(files['skipped'])} item(s); "
        f"{speed['input_mb']:.1f} MB in {speed['total_seconds']:.1f} s ({speed['mb_per_second']:.1f} MB/s)."
    )
