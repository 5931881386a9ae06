"""Replace one marked section of docs/benchmarks.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, start: str, end: str, text: str) -> None:
    """Put `text` (which begins with `start` and ends with `end`) in place of that section, or append it."""
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in current:
        head, rest = current.split(start, 1)
        tail = rest.split(end, 1)[1] if end in rest else ""
        current = head + text + tail
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(current, encoding="utf-8")


def publish(text: str, destination: Path | None, start: str, end: str) -> None:
    """Print a benchmark's section, and put it into `destination` (a markdown file) when one is given."""
    print(text)
    if destination:
        replace_section(destination, start, end, text)
