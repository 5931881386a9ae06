from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_fixtures import make_workspace, save_tiny_gpt2

from dvoinik.corpus.build import load_documents
from dvoinik.tokens import META_FILE, TokensError, prepare_tokens, tokenizer_key
from dvoinik.training.models import load_base_tokenizer


def build(ws, base=None, vocab=400):
    return prepare_tokens(ws.corpus_dir, ws.tokens_dir, base, vocab, load_base_tokenizer=load_base_tokenizer)


def test_token_files_hold_every_document_with_eos_between(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    token_set, tokenizer = build(ws)
    assert token_set.key == "bpe-400" and token_set.dtype == "uint16" and len(tokenizer) <= 400
    assert [a.role for a in token_set.authors] == ["target", "influence"]  # target first
    docs = load_documents(ws.corpus_dir)
    for author in token_set.authors:
        for split in ("train", "val"):
            ids = np.asarray(token_set.open(split, author))
            texts = [d.text for d in docs if d.author == author.name and d.split == split]
            assert int((ids == token_set.eos_id).sum()) == len(texts)
            pieces = np.split(ids, np.flatnonzero(ids == token_set.eos_id) + 1)[: len(texts)]
            decoded = [tokenizer.decode(p[:-1].tolist()) for p in pieces]
            assert decoded == texts  # byte-level BPE gives back the exact text, ё and dashes included
    assert token_set.target.val_tokens > 0
    assert (ws.tokens_dir / "bpe-400" / "tokenizer" / "tokenizer.json").is_file()


def test_tokens_are_reused_until_the_corpus_changes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    first, _ = build(ws)
    meta = first.folder / META_FILE
    stamp = meta.stat().st_mtime_ns
    again, _ = build(ws)
    assert again.reused and meta.stat().st_mtime_ns == stamp
    other_vocab, _ = build(ws, vocab=500)  # another tokenizer: its own folder, the first kept
    assert other_vocab.key == "bpe-500" and not other_vocab.reused and meta.is_file()

    docs = (ws.corpus_dir / "documents.jsonl").read_text(encoding="utf-8").splitlines()
    (ws.corpus_dir / "documents.jsonl").write_text("\n".join(docs[1:]) + "\n", encoding="utf-8")
    rebuilt, _ = build(ws)
    assert not rebuilt.reused and rebuilt.train_tokens + sum(a.val_tokens for a in rebuilt.authors) < \
        first.train_tokens + sum(a.val_tokens for a in first.authors)
    assert not list(ws.tokens_dir.glob(".*"))  # no staging or backup folder left


def test_a_base_model_brings_its_own_tokenizer(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", ["какой-то другой текст"] * 50)
    token_set, tokenizer = build(ws, base=str(base))
    assert token_set.key == tokenizer_key(str(base), 400) and token_set.key.startswith("gpt2-")
    assert not (token_set.folder / "tokenizer").exists()  # the base's tokenizer lives with the base
    assert token_set.vocab_size == len(tokenizer)
    assert build(ws, base=str(base))[0].reused


def test_no_corpus_is_a_clear_error(tmp_path: Path) -> None:
    from dvoinik.workspace import init_workspace

    ws = init_workspace(tmp_path / "empty")
    with pytest.raises(TokensError, match="no corpus built yet; run `dvoinik corpus` first"):
        build(ws)


def test_meta_records_counts_and_fingerprints(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    calls = []
    token_set, _ = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, 400,
                                  on_progress=lambda stage, done, total: calls.append((stage, done, total)))
    last = calls[-1]
    assert last[0] == "tokenizing" and last[1] == last[2] == sum(len(d.text) for d in load_documents(ws.corpus_dir))
    meta = json.loads((token_set.folder / META_FILE).read_text(encoding="utf-8"))
    assert set(meta) >= {"corpus", "tokenizer", "dtype", "eos_id", "authors", "vocab_size"}
    for author in meta["authors"]:
        assert (token_set.folder / "train" / author["file"]).stat().st_size == author["train_tokens"] * 2
        assert author["weight"] == (10.0 if author["role"] == "target" else 1.0)
