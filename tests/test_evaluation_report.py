from __future__ import annotations

from pathlib import Path

from dvoinik.evaluation.report import PLOTS, render_html, write_report_files


def _report(recommended: str | None) -> dict:
    def samples(share: float, span: float) -> dict:
        return {"target_share": share, "target_probability": share, "attributed": {}, "longest_spans": [1, 2],
                "share_with_copied_span": 0.0, "novel_ngrams": {n: 1 - 1 / n for n in range(1, 21)},
                "distinct": {1: 0.5, 2: 0.8, 3: 0.9}, "repetition": 0.1,
                "longest_span": {"mean": span, "median": span, "p90": span, "max": span}}

    checkpoints = [{"name": f"checkpoint-{s}", "step": s, "val_target_ppl": 100 / s, "val_influences_ppl": 90 / s,
                    "samples": samples(s / 400, s / 10), "extraction": {"prompts": 2, "exact_share": 0.0,
                                                                        "mean_longest_span": 3.0},
                    "examples": [{"prompt": "Он <вышел>", "text": " и <script>alert(1)</script>", "real": " и ушёл",
                                  "work": "Повесть", "longest_span": 3}]}
                   for s in (100, 200, 300)]
    return {"run": "r", "created": "2026-11-26T00:00:00+00:00", "target": "Автор", "min_tokens": 50, "prompts": 2,
            "settings": {"prompt_tokens": 32, "sample_tokens": 128, "preset": "nucleus", "seed": 0},
            "rule": "the rule", "recommended": recommended, "reason": "because", "checkpoints": checkpoints,
            "ceiling": samples(0.8, 4.0)}


def test_plots_and_a_self_contained_page(tmp_path: Path) -> None:
    report = _report("checkpoint-200")
    write_report_files(report, tmp_path)
    for name, _, _ in PLOTS:
        assert (tmp_path / "plots" / name).read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert '<tr class="chosen"><td>checkpoint-200</td>' in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # sample text is escaped
    assert "--checkpoint best" in page


def test_no_recommendation_is_said_plainly() -> None:
    page = render_html(_report(None), {})
    assert "No recommendation: because" in page and 'class="chosen"' not in page
