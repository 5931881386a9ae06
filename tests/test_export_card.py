"""The model card: hub metadata huggingface_hub reads back, and the run's figures in the text."""

from __future__ import annotations

from dataclasses import replace

from dvoinik.export.card import AuthorShare, CardFacts, render_card
from dvoinik.generation.decoding import decoding_for

# An evaluation report's entry and its whole report, in the shape `dvoinik evaluate` writes them.
EVALUATION = {
    "name": "checkpoint-300", "step": 300, "val_target_ppl": 41.237, "val_influences_ppl": 55.5,
    "samples": {"target_share": 0.75, "share_with_copied_span": 0.0,
                "longest_span": {"mean": 6.2, "median": 6.0, "p90": 9.0, "max": 12.0}},
    "extraction": {"prompts": 32, "exact_share": 0.03125, "mean_longest_span": 14.1},
}
REPORT = {"min_tokens": 50, "prompts": 24, "sample_tokens": 192, "settings": {"preset": "nucleus"},
          "rule": "Among checkpoints whose samples …", "recommended": "checkpoint-300",
          "ceiling": {"target_share": 0.875, "share_with_copied_span": 0.0,
                      "longest_span": {"mean": 5.1, "median": 5.0, "p90": 8.0, "max": 10.0}},
          "checkpoints": [EVALUATION]}

FACTS = CardFacts(
    name="Андреев", language="ru", target="Андреев",
    authors=[AuthorShare("Андреев", "target", 12, 150_000, 0.4, 0.87, 10.0),
             AuthorShare("Горький", "influence", 20, 220_000, 0.6, 0.13, 1.0)],
    corpus_words=400_000, corpus_chars=2_600_000, train_works=32, train_tokens=900_000,
    base="ai-forever/rugpt3small_based_on_gpt2", base_hub_id="ai-forever/rugpt3small_based_on_gpt2", builtin=False,
    method="lora", adapter_kept=False,
    settings={"method": "lora", "lora_rank": 16, "lora_alpha": 32.0, "max_steps": 2000, "block_size": 512,
              "batch_size": 8, "grad_accum": 1, "learning_rate": 0.0, "decay": "cosine", "warmup_fraction": 0.05,
              "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1, "grad_clip": 1.0, "precision": "auto", "seed": 1234},
    parameters=125_000_000, step=300, checkpoint="checkpoint-300", run="rugpt3-lora",
    why="recommended by `dvoinik evaluate`: 75% of its samples read as the target", evaluation=EVALUATION,
    report=REPORT, train_ppl=4.2, val_ppl=40.9, context_length=None, decoding=decoding_for("nucleus"), guard=10,
    min_tokens=50, hf_files=True, gguf_file="andreev-q8_0.gguf", gguf_type="q8_0", ollama_name="andreev",
)


def test_card_metadata_reads_back_with_huggingface_hub() -> None:
    from huggingface_hub import ModelCard

    card = ModelCard(render_card(FACTS))
    data = card.data.to_dict()
    assert data["language"] == "ru" and data["license"] == "other" and data["license_name"] == "to-fill"
    assert data["base_model"] == "ai-forever/rugpt3small_based_on_gpt2"
    assert data["pipeline_tag"] == "text-generation" and data["library_name"] == "transformers"
    assert {"dvoinik", "lora", "gguf"} <= set(data["tags"])
    result = card.data.eval_results[0]
    assert result.metric_type == "perplexity" and result.metric_value == 41.237


def test_card_text_holds_the_runs_figures() -> None:
    text = render_card(FACTS)
    for expected in (
        "| Андреев | target | 12 | 150,000 | 40.0% | 87.0% (weight 10) |",  # shares before and after weights
        "| Горький | influence | 20 | 220,000 | 60.0% | 13.0% (weight 1) |",
        "900,000 training tokens in 32 works",
        "rugpt3-lora/checkpoint-300 (step 300)",
        "Chosen: recommended by `dvoinik evaluate`: 75% of its samples read as the target.",
        "| samples attributed to Андреев (stylometry) | 75% | 88% |",
        "| longest span found in the training texts, tokens (mean / max) | 6.2 / 12 | 5.1 / 10 |",
        "| extraction: training passages reproduced exactly (32 prompts) | 3% |",
        "| perplexity, target's held-out works | 41.24 |",
        "**It is a completion model.** It has no chat template",
        "**The originality guard is not in these weights.**",
        "over all 900,000 training tokens of 32 works",
        "the longest: 12 tokens",
        "LoRA (rank 16, alpha 32.0), merged into the base",
        "| steps | 300 of 2,000 |",
        "temperature 1, top-p 0.9, top-k off",
        "`ollama create andreev -f Modelfile`",
        "`ai-forever/rugpt3small_based_on_gpt2`, whose license also applies",
    ):
        assert expected in text, expected


def test_an_unevaluated_built_in_run_says_so() -> None:
    facts = replace(FACTS, evaluation=None, report=None, builtin=True, base="the built-in `tiny` configuration",
                    base_hub_id=None, method="full", context_length=512, gguf_file=None, gguf_type=None,
                    settings={**FACTS.settings, "method": "full", "vocab_size": 8000})
    text = render_card(facts)
    assert "has not been evaluated" in text and "not measured here" in text
    assert "base_model" not in text.split("---")[1]  # a model trained here has no hub base
    assert "trained on 512-token passages" in text and "| vocabulary | 8,000 byte-level BPE tokens |" in text
    assert "ollama" not in text and "gguf" not in text.split("---")[1]
