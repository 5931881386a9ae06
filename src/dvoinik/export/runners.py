"""How to run the exported GGUF in the writer's own tools: an Ollama Modelfile and RUNNING.md (KoboldCpp, LM Studio, llama.cpp).

Both carry the chosen preset's sampling settings in each tool's own names. The tools'
defaults differ from transformers' (llama.cpp samples with min-p 0.05, Ollama with a
repeat penalty of 1.1 over the last 64 tokens and top-k 40), so every setting is spelled
out, "off" included. What they cannot do is said too: none of them has beam search or
no-repeat n-grams, and none has dvoinik's originality guard.
"""

from __future__ import annotations

from dataclasses import dataclass

from dvoinik.generation.decoding import Decoding


@dataclass(frozen=True)
class Sampling:
    """A preset in llama.cpp's terms (Ollama, KoboldCpp and LM Studio use the same sampler)."""

    temperature: float  # 0 = greedy
    top_k: int  # 0 = off
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    max_new_tokens: int
    lost: tuple[str, ...]  # settings of the preset these tools cannot apply


def sampling_for(decoding: Decoding) -> Sampling:
    lost = []
    if decoding.num_beams > 1:
        lost.append(f"beam search ({decoding.num_beams} beams; greedy is the nearest)")
    if decoding.no_repeat_ngram_size:
        lost.append(f"no repeated {decoding.no_repeat_ngram_size}-grams")
    if not decoding.do_sample:
        return Sampling(0.0, 0, 1.0, 0.0, 1.0, decoding.repetition_penalty, decoding.max_new_tokens, tuple(lost))
    return Sampling(decoding.temperature, decoding.top_k, decoding.top_p, decoding.min_p, decoding.typical_p,
                    decoding.repetition_penalty, decoding.max_new_tokens, tuple(lost))


def modelfile(gguf_name: str, decoding: Decoding, context_length: int) -> str:
    """An Ollama Modelfile: the GGUF beside it, raw completion (no chat template), the preset's sampling."""
    s = sampling_for(decoding)
    lines = [
        "# Ollama: `ollama create NAME -f Modelfile` in this folder, then `ollama run NAME \"the opening of a text\"`.",
        f"# Preset {decoding.preset}: the sampling settings of `dvoinik generate --preset {decoding.preset}`.",
        "# The originality guard of dvoinik is not in the weights: check what you publish with `dvoinik check`.",
    ]
    lines += [f"# Not available in Ollama: {item}." for item in s.lost]
    lines += [
        f"FROM ./{gguf_name}",
        "",
        "# A completion model: the prompt is passed as it is, with no chat template around it.",
        'TEMPLATE """{{ .Prompt }}"""',
        "",
        f"PARAMETER num_ctx {context_length}",
        f"PARAMETER num_predict {s.max_new_tokens}",
        f"PARAMETER temperature {s.temperature:g}",
        f"PARAMETER top_k {s.top_k}",
        f"PARAMETER top_p {s.top_p:g}",
        f"PARAMETER min_p {s.min_p:g}",
        f"PARAMETER repeat_penalty {s.repeat_penalty:g}",
        "PARAMETER repeat_last_n -1",  # the whole context, as transformers' repetition penalty
    ]
    return "\n".join(lines) + "\n"


def running_notes(name: str, gguf_name: str, decoding: Decoding, context_length: int, ollama_name: str,
                  example_prompt: str, guard: int) -> str:
    """RUNNING.md: the GGUF in KoboldCpp, LM Studio, Ollama and llama.cpp, step by step, with the preset's settings."""
    s = sampling_for(decoding)
    greedy = s.temperature == 0
    lost = "".join(f"\n- not available in these tools: {item};" for item in s.lost)
    return f"""# Running {name} on your computer

`{gguf_name}` is the double as one GGUF file. It is a **completion model**: it continues the
text it is given and has no chat template, so use each tool's story / raw-completion mode, not
its chat mode. Its context is {context_length} tokens (for a model trained here from scratch, the length
of its training passages: it knows no later position), prompt and continuation together.

The sampling settings below are preset **{decoding.preset}** (`dvoinik generate --preset {decoding.preset}`):

| setting | value |
|---|---|
| temperature | {f"{s.temperature:g}" + (" (greedy)" if greedy else "")} |
| top-k | {s.top_k} (off) |
| top-p | {s.top_p:g} |
| min-p | {s.min_p:g} (off; llama.cpp's default is 0.05) |
| typical-p | {s.typical_p:g} |
| repetition penalty | {s.repeat_penalty:g}, over the whole context |
| tokens to write | {s.max_new_tokens} |
{lost}
**The originality guard is not in the weights.** In dvoinik the double never copies
{guard} tokens in a row from the books it learned from; in these tools nothing stops it. Check
a text before you publish it: `dvoinik check FILE` in the workspace the double came from.

## KoboldCpp

1. Start KoboldCpp and choose `{gguf_name}` as the model (or run
   `koboldcpp --model {gguf_name} --contextsize {max(context_length, 256)} --port 5002`;
   5002 because `dvoinik serve` uses KoboldCpp's default 5001).
2. Open KoboldAI Lite in the browser (the address KoboldCpp prints). In *Settings*: format
   **Story** (not Instruct or Chat); *Max Ctx. Tokens* {context_length}; *Amount to Gen.*
   {min(s.max_new_tokens, context_length)}.
3. In *Samplers*: Temperature {s.temperature:g}, Top-p {s.top_p:g}, Top-K {s.top_k}, Min-P {s.min_p:g},
   Typical {s.typical_p:g}, Rep. Pen. {s.repeat_penalty:g}, Rep. Pen. Range {context_length}.
4. Write the opening of a passage and press *Generate*; *Retry* gives another variant.

## LM Studio

1. Import the file: `lms import {gguf_name}` (LM Studio's command line), or put it into LM
   Studio's models folder as `dvoinik/{ollama_name}/{gguf_name}` (*My Models* shows the folder).
2. Load it with *Context Length* {context_length}.
3. The GGUF has no chat template, so use LM Studio's local server for raw completion: start
   it (*Developer* → *Start Server*) and send the text to `/v1/completions`:

   ```bash
   curl http://localhost:1234/v1/completions -H "Content-Type: application/json" -d '{{
     "model": "{ollama_name}", "prompt": "{example_prompt}", "max_tokens": {s.max_new_tokens},
     "temperature": {s.temperature:g}, "top_p": {s.top_p:g}, "top_k": {s.top_k}, "min_p": {s.min_p:g},
     "repeat_penalty": {s.repeat_penalty:g}}}'
   ```

   In the chat window, set the prompt template to a manual one with empty prefixes and
   suffixes and no system prompt, so that only your text reaches the model.

## Ollama

In this folder (the `Modelfile` holds the settings above and a template that passes the
prompt unchanged):

```bash
ollama create {ollama_name} -f Modelfile
ollama run {ollama_name} "{example_prompt}"
```

## llama.cpp

```bash
llama-server -m {gguf_name} -c {context_length} --port 8080
curl http://localhost:8080/completion -d '{{"prompt": "{example_prompt}", "n_predict": {s.max_new_tokens},
  "temperature": {s.temperature:g}, "top_k": {s.top_k}, "top_p": {s.top_p:g}, "min_p": {s.min_p:g},
  "repeat_penalty": {s.repeat_penalty:g}, "repeat_last_n": -1}}'
```

or from Python with `llama-cpp-python`:

```python
from llama_cpp import Llama

llm = Llama("{gguf_name}", n_ctx={context_length})
print(llm("{example_prompt}", max_tokens={s.max_new_tokens}, temperature={s.temperature:g}, top_k={s.top_k},
          top_p={s.top_p:g}, min_p={s.min_p:g}, repeat_penalty={s.repeat_penalty:g})["choices"][0]["text"])
```
"""
