"""Tiny models of the three GGUF families, saved as local HF folders (built in the test, never downloaded), and Russian texts."""

from __future__ import annotations

from pathlib import Path

from dvoinik.export.gguf_file import QWEN2_PATTERN

# Varied Russian: ё, dashes, «ёлочки» and „лапки“, digits, Latin, line breaks, spaces, apostrophes.
RUSSIAN_TEXTS = [
    "В то утро она вышла из дома и пошла к реке.",
    "Ёлка стояла во дворе; ёж спал под ней — тихо, как мышь.",
    "«Куда ты?» — спросил он. «Домой», — ответила она.",
    "„Лапки“ и «ёлочки» — две пары кавычек, 'одиночные' тоже.",
    "В 1905 году, 9 января, шёл снег; в 12:30 всё кончилось.",
    "Телефон: +7 (495) 123-45-67, квартира №18, 3½ комнаты.",
    "Он читал Dostoevsky и Tolstoy в оригинале, а не в translation.",
    "Первая строка.\nВторая строка.\n\nНовый абзац после пустой строки.",
    "   Отступ в три пробела, потом  два  пробела между словами.",
    "Тире—без пробелов, дефис-внутри, минус −5 и многоточие…",
    "ЗАГЛАВНЫМИ БУКВАМИ: ЁЖИК В ТУМАНЕ!!! И вопрос???",
    "Сказал: «Ну что ж, Иван Петрович, так и быть».\n— Так и быть, — повторил тот.",
    "Цифры подряд: 1234567890 и 3.14159, и 2,71828.",
    "Латиница внутри: e-mail user@example.com, сайт www.lib.ru/Classic.",
    "Табуляция\tмежду\tсловами и в конце\t",
    "Старая орфография: съѣздъ, мiръ, Iисусъ — и новая: съезд, мир.",
    "Ударение на бу́кве и неразрывный пробел здесь.",
    "It's he'll we've — английские сокращения среди русского текста.",
    "Скобки (круглые), [квадратные], {фигурные} и * звёздочка *.",
    "Конец текста без точки, потом перевод строки\n",
]


def prose() -> list[str]:
    """Training texts for the tiny tokenizers: the varied texts many times over."""
    return RUSSIAN_TEXTS * 5


def qwen2_style_tokenizer(texts: list[str], vocab_size: int = 400):
    """A byte-level BPE with Qwen2's pipeline (NFC, then its split pattern, then bytes), as its tokenizer.json has it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def save_tiny_llama(folder: Path, tied: bool = False) -> Path:
    """A random 2-layer Llama with grouped-query attention (4 heads, 2 KV heads) and dvoinik's own BPE."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from dvoinik.tokens import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(lambda: iter(prose()), 400)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
                         bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=tied)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_qwen2(folder: Path) -> Path:
    """A random 2-layer Qwen2 (q/k/v biases, 4 heads, 2 KV heads, tied embeddings) with a Qwen2-style tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen2_style_tokenizer(prose())
    config = Qwen2Config(vocab_size=len(tokenizer) + 8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # random biases, so that a lost bias would show
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def greedy(model, ids: list[int], count: int) -> tuple[list[int], list[float]]:
    """`count` greedy tokens with the KV cache (not stopping at EOS; no generation_config applies), and each
    step's margin between the two best logits."""
    import torch

    out, margins = [], []
    with torch.no_grad():
        result = model(torch.tensor([ids]), use_cache=True)
        for _ in range(count):
            top = torch.topk(result.logits[0, -1], 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            result = model(torch.tensor([[out[-1]]]), past_key_values=result.past_key_values, use_cache=True)
    return out, margins
