"""The model card (README.md): hub metadata and what a reader of the model needs to know, from the run's own records.

Written with huggingface_hub's card tools (`ModelCardData` for the metadata, which it
validates, and `ModelCard.from_template` for the text), so the hub reads it as it reads
its own cards. Every figure comes from a file an earlier stage wrote: the corpus report,
the token set, run.json, metrics.jsonl and the run's evaluation report. Nothing here
names a path of the writer's computer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dvoinik.generation.decoding import Decoding

LICENSE_PLACEHOLDER = "to-fill"  # `license: other` + this name until the writer chooses one


@dataclass(frozen=True)
class AuthorShare:
    name: str
    role: str  # target | influence
    works: int
    words: int
    raw_share: float  # of the training characters
    effective_share: float  # of what training sampled, after the weights
    weight: float


@dataclass(frozen=True)
class CardFacts:
    """Everything the card says, gathered by the export from the run's records."""

    name: str
    language: str
    target: str | None
    authors: list[AuthorShare]
    corpus_words: int
    corpus_chars: int
    train_works: int
    train_tokens: int  # also what the copy index covers
    base: str  # as shown: a built-in name, a hub id, or "a local model folder (NAME)"
    base_hub_id: str | None
    builtin: bool
    method: str  # full | lora
    adapter_kept: bool  # the HF folder holds the LoRA adapter, not merged weights
    settings: dict  # the run's training settings (run.json)
    parameters: int
    step: int
    checkpoint: str
    run: str
    why: str
    evaluation: dict | None
    report: dict | None
    train_ppl: float | None  # training perplexity logged at (or just before) the checkpoint's step
    val_ppl: float | None  # validation perplexity of the target, logged during training
    context_length: int | None
    decoding: Decoding
    guard: int
    min_tokens: int
    hf_files: bool
    gguf_file: str | None
    gguf_type: str | None
    ollama_name: str
    device: str = ""
    tags: list[str] = field(default_factory=list)


TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

A **neural double** of {{ target_phrase }}: a language model {{ trained_phrase }} on their prose{{ influences_phrase }},
made with dvoinik. It continues a passage in the author's voice.

**It is a completion model.** It has no chat template and follows no instructions: give it the opening of a
text (a few sentences of prose) and it writes what comes next. Chat front-ends must be set to raw
completion (see *Use* below).

## The corpus

| author | role | works (train) | words (train) | share of the texts | share in training |
|---|---|---:|---:|---:|---:|
{% for a in authors -%}
| {{ a.name }} | {{ a.role }} | {{ a.works }} | {{ "{:,}".format(a.words) }} | {{ "{:.1%}".format(a.raw_share) }} | {{ "{:.1%}".format(a.effective_share) }} (weight {{ "{:g}".format(a.weight) }}) |
{% endfor %}
{{ "{:,}".format(corpus_words) }} words ({{ "{:,}".format(corpus_chars) }} characters) after cleaning and
deduplication; {{ "{:,}".format(train_tokens) }} training tokens in {{ train_works }} works. Each work is held
out whole or trained on whole; the share in training is what the sampler drew after the weights
(the target author upsampled).

## Training

{{ training_table }}

## The checkpoint: {{ checkpoint }}

{{ why_sentence }}

{{ evaluation_section }}

## Copying and the originality guard

**The originality guard is not in these weights.** In dvoinik every continuation passes a guard that
bans any token completing a {{ guard }}-token span of the training texts (a suffix-array copy index
over all {{ "{:,}".format(train_tokens) }} training tokens of {{ train_works }} works). llama.cpp, KoboldCpp,
LM Studio, Ollama, vLLM and `transformers` know nothing of it: run there, the model may reproduce
passages of the books it was trained on. {{ copying_sentence }}
Check a text before publishing it: `dvoinik check FILE` (in the workspace this model came from)
lists every span of {{ min_tokens }}+ tokens it shares with the training texts.

## Use

{{ files_section }}

Decoding preset **{{ decoding.preset }}**: {{ decoding_sentence }} (in `generation_config.json`{% if gguf_file %} and the
`Modelfile`{% endif %}).
{% if hf_files %}
```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("PATH_OR_HUB_ID")
tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")
prompt = tokenizer("{{ example_prompt }}", return_tensors="pt")
out = model.generate(**prompt)  # the preset's settings come from generation_config.json
print(tokenizer.decode(out[0], skip_special_tokens=True))
```
{% endif %}{% if gguf_file %}
GGUF (`{{ gguf_file }}`, {{ gguf_type }}): `ollama create {{ ollama_name }} -f Modelfile`, then
`ollama run {{ ollama_name }} "{{ example_prompt }}"`; for KoboldCpp and LM Studio see `RUNNING.md`.
{% endif %}
{{ context_sentence }}

## License

The metadata above says `license: other` (`license_name: {{ license_placeholder }}`) until you choose one.
The weights were learned from the texts in the corpus{% if base_hub_id %} and from the base model
`{{ base_hub_id }}`, whose license also applies{% endif %}: publish them under terms the texts' rights allow.
"""


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def training_table(facts: CardFacts) -> str:
    s = facts.settings
    rows = [
        ("base", facts.base + ("; trained from random weights with its own byte-level BPE" if facts.builtin else "")),
        ("method", {"full": "every weight trained", "lora": f"LoRA (rank {s.get('lora_rank')}, alpha "
                    f"{s.get('lora_alpha')}), {'kept as an adapter' if facts.adapter_kept else 'merged into the base'}"}
         .get(facts.method, facts.method)),
        ("parameters", f"{facts.parameters:,}"),
        ("steps", f"{facts.step:,} of {int(s.get('max_steps', facts.step)):,}"),
        ("tokens per step", f"{int(s.get('block_size', 0)) * int(s.get('batch_size', 0)) * int(s.get('grad_accum', 1)):,} "
                            f"(block {s.get('block_size')} × batch {s.get('batch_size')} × accumulation "
                            f"{s.get('grad_accum', 1)}, per process)"),
        ("learning rate", f"{s.get('learning_rate') or 'by method'}, {s.get('decay')} decay, warmup "
                          f"{s.get('warmup_fraction')} of the steps"),
        ("optimizer", f"AdamW (β {s.get('beta1')}, {s.get('beta2')}; weight decay {s.get('weight_decay')}; "
                      f"gradient clip {s.get('grad_clip')})"),
        ("precision", s.get("precision", "auto") + (f" on {facts.device}" if facts.device else "")),
        ("seed", str(s.get("seed"))),
    ]
    if facts.builtin:
        rows.insert(1, ("vocabulary", f"{s.get('vocab_size'):,} byte-level BPE tokens"))
    if facts.train_ppl is not None:
        rows.append(("training perplexity at this step", _number(facts.train_ppl, 2)))
    if facts.val_ppl is not None:
        rows.append(("held-out perplexity of the target (training's measure)", _number(facts.val_ppl, 2)))
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def evaluation_section(facts: CardFacts) -> str:
    """The checkpoint's figures from `dvoinik evaluate`, beside the real held-out text's."""
    e, report = facts.evaluation, facts.report
    if e is None or report is None:
        return ("This checkpoint has not been evaluated (`dvoinik evaluate` measures style, copying, extraction and "
                "perplexity of every checkpoint and recommends one); no figures are given here.")
    samples, extraction = e["samples"], e["extraction"]
    ceiling = report.get("ceiling", {})
    span, real_span = samples["longest_span"], ceiling.get("longest_span", {})
    rows = [
        ("perplexity, target's held-out works", _number(e.get("val_target_ppl"), 2), ""),
        ("perplexity, influences' held-out works", _number(e.get("val_influences_ppl"), 2), ""),
        (f"samples attributed to {facts.target} (stylometry)", _percent(samples.get("target_share")),
         _percent(ceiling.get("target_share"))),
        ("longest span found in the training texts, tokens (mean / max)",
         f"{span['mean']:.1f} / {span['max']:.0f}", f"{real_span.get('mean', 0):.1f} / {real_span.get('max', 0):.0f}"
         if real_span else ""),
        (f"samples holding a copied span of {report.get('min_tokens', facts.min_tokens)}+ tokens",
         _percent(samples.get("share_with_copied_span")), _percent(ceiling.get("share_with_copied_span"))),
        (f"extraction: training passages reproduced exactly ({extraction.get('prompts')} prompts)",
         _percent(extraction.get("exact_share")), ""),
    ]
    table = "| measure | this checkpoint | the author's real held-out text |\n|---|---:|---:|\n" + \
        "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return (f"`dvoinik evaluate` ({report.get('prompts')} prompts from the target's held-out works, "
            f"{report.get('sample_tokens')} tokens each, preset {report.get('settings', {}).get('preset')}, "
            f"no guard):\n\n{table}\n\nRule: {report.get('rule', '')}")


def copying_sentence(facts: CardFacts) -> str:
    e = facts.evaluation
    if e is None:
        return "The run was not evaluated, so how often it copies unguarded is not measured here."
    share = e["samples"].get("share_with_copied_span")
    exact = e["extraction"].get("exact_share")
    longest = e["samples"]["longest_span"]["max"]
    return (f"Unguarded, {_percent(share)} of this checkpoint's evaluation samples held a copied span of "
            f"{(facts.report or {}).get('min_tokens', facts.min_tokens)}+ tokens (the longest: {longest:.0f} tokens), "
            f"and it reproduced {_percent(exact)} of the extraction prompts' training passages exactly.")


def decoding_sentence(d: Decoding) -> str:
    if not d.do_sample:
        return "greedy decoding" if d.num_beams == 1 else f"beam search, {d.num_beams} beams, " \
            f"no repeated {d.no_repeat_ngram_size}-grams"
    parts = [f"temperature {d.temperature:g}", f"top-p {d.top_p:g}", f"top-k {d.top_k or 'off'}"]
    if d.repetition_penalty != 1.0:
        parts.append(f"repetition penalty {d.repetition_penalty:g}")
    if d.min_p:
        parts.append(f"min-p {d.min_p:g}")
    if d.typical_p < 1.0:
        parts.append(f"typical-p {d.typical_p:g}")
    return "sampling with " + ", ".join(parts) + f", {d.max_new_tokens} new tokens"


def files_section(facts: CardFacts) -> str:
    lines = []
    if facts.hf_files:
        lines.append("- the Hugging Face folder: " + (
            f"`adapter_config.json`, `adapter_model.safetensors` (a PEFT LoRA adapter on `{facts.base_hub_id}`)"
            if facts.adapter_kept else "`config.json`, `model.safetensors` (merged weights only; no optimizer state)")
            + ", the tokenizer, `generation_config.json`;")
    if facts.gguf_file:
        lines.append(f"- `{facts.gguf_file}`: the same model for llama.cpp, KoboldCpp, LM Studio and Ollama "
                     f"({facts.gguf_type}); `Modelfile` (Ollama) and `RUNNING.md` (all of them, step by step);")
    lines.append("- `export.json`: what was exported, from which run and checkpoint, with each file's SHA-256.")
    return "\n".join(lines)


def card_metadata(facts: CardFacts):  # -> ModelCardData
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = None
    if facts.evaluation and facts.evaluation.get("val_target_ppl"):
        eval_results = [EvalResult(
            task_type="text-generation", dataset_type="held-out-works", dataset_name=f"{facts.target}: held-out works",
            metric_type="perplexity", metric_name="Perplexity on the target author's held-out works",
            metric_value=round(float(facts.evaluation["val_target_ppl"]), 3),
        )]
    tags = ["dvoinik", "creative-writing", "text-generation"] + (["lora"] if facts.method == "lora" else []) + \
        (["gguf"] if facts.gguf_file else []) + facts.tags
    return ModelCardData(
        language=facts.language, license="other", license_name=LICENSE_PLACEHOLDER,
        base_model=facts.base_hub_id if not facts.builtin else None,
        library_name="peft" if facts.adapter_kept else "transformers" if facts.hf_files else "gguf",
        pipeline_tag="text-generation", tags=tags, model_name=facts.name, eval_results=eval_results,
    )


def render_card(facts: CardFacts) -> str:
    """The card's text (YAML metadata, then Markdown)."""
    from huggingface_hub import ModelCard

    influences = [a.name for a in facts.authors if a.role != "target"]
    context = facts.context_length
    card = ModelCard.from_template(
        card_metadata(facts), template_str=TEMPLATE,
        name=facts.name, target_phrase=facts.target or "its author",
        trained_phrase="trained from scratch" if facts.builtin else f"fine-tuned from `{facts.base}`",
        influences_phrase=f" and on writers who influenced them ({', '.join(influences)})" if influences else "",
        authors=facts.authors, corpus_words=facts.corpus_words, corpus_chars=facts.corpus_chars,
        train_tokens=facts.train_tokens, train_works=facts.train_works, training_table=training_table(facts),
        checkpoint=f"{facts.run}/{facts.checkpoint} (step {facts.step:,})",
        why_sentence=f"Chosen: {facts.why}.", evaluation_section=evaluation_section(facts),
        guard=facts.guard, min_tokens=facts.min_tokens, copying_sentence=copying_sentence(facts),
        files_section=files_section(facts), decoding=facts.decoding, decoding_sentence=decoding_sentence(facts.decoding),
        hf_files=facts.hf_files, gguf_file=facts.gguf_file, gguf_type=facts.gguf_type, ollama_name=facts.ollama_name,
        example_prompt="В то утро она вышла из дома и" if facts.language == "ru" else "That morning she left the house and",
        context_sentence=(f"The model was trained on {context}-token passages and knows no later position: keep prompt "
                          f"and continuation within {context} tokens (the exported configs say so)." if context and
                          facts.builtin else ""),
        base_hub_id=facts.base_hub_id, license_placeholder=LICENSE_PLACEHOLDER,
    )
    return str(card)


def write_card(folder: Path, facts: CardFacts) -> Path:
    path = folder / "README.md"
    path.write_text(render_card(facts), encoding="utf-8")
    return path
