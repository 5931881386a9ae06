"""The token stage: `corpus/documents.jsonl` → a tokenizer and flat token files per author.

    tokens/<key>/
      tokenizer/          the byte-level BPE trained on the training split (built-in models only)
      meta.json           fingerprints of the corpus and tokenizer, dtype, EOS id, token counts,
                          and where each document starts in its author's file
      train/<NN>.bin      one author's training documents as token ids, EOS after each document
      val/<NN>.bin        the same for held-out works

`<key>` names the tokenizer (`bpe-8000` for a trained one, a slug of the base model
otherwise), so switching base models keeps both sets. Token files are raw numpy arrays
(uint16 when the vocabulary fits, else uint32) that training opens with `np.memmap`,
the way nanoGPT keeps its data. One file per author lets training sample authors by
the corpus mix. The folder is built under a temporary name and swapped in, and reused
while documents.jsonl and the tokenizer are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.atomic import building_folder, restore_previous_folder
from dvoinik.corpus.build import DOCUMENTS_FILE, REPORT_JSON, Document, iter_documents, load_report
from dvoinik.faults import REBUILD_CORPUS, damaged

META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"
END_OF_TEXT = "<|endoftext|>"
SPLITS = ("train", "val")
FORMAT_VERSION = 2  # 2: per-document offsets (the copy index names source works)
ENCODE_BATCH_DOCS = 16


class TokensError(Exception):
    """A user-facing problem with the token stage (one line)."""


@dataclass(frozen=True)
class AuthorTokens:
    name: str
    role: str
    weight: float
    file: str  # "<NN>.bin" under train/ and val/
    train_tokens: int
    val_tokens: int


@dataclass(frozen=True)
class DocumentTokens:
    """Where one document of documents.jsonl lies in its author's token file (EOS included)."""

    id: str
    author: str
    title: str
    split: str
    start: int
    tokens: int


@dataclass(frozen=True)
class TokenSet:
    """A built tokens/<key>/ folder: where its files are and what they hold."""

    folder: Path
    key: str
    dtype: str
    eos_id: int
    vocab_size: int
    authors: tuple[AuthorTokens, ...]
    documents: tuple[DocumentTokens, ...] = ()
    reused: bool = False

    def path(self, split: str, author: AuthorTokens) -> Path:
        return self.folder / split / author.file

    def open(self, split: str, author: AuthorTokens) -> np.ndarray:
        """The author's token ids for `split` as a read-only memmap (empty array when there are none)."""
        count = author.train_tokens if split == "train" else author.val_tokens
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.path(split, author), dtype=self.dtype, mode="r", shape=(count,))

    @property
    def target(self) -> AuthorTokens | None:
        return next((a for a in self.authors if a.role == "target"), None)

    @property
    def train_tokens(self) -> int:
        return sum(a.train_tokens for a in self.authors)


ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total) in characters


# ---------------------------------------------------------------- tokenizers


def tokenizer_key(base: str | None, vocab_size: int) -> str:
    """The folder name under tokens/ for a tokenizer: `bpe-<vocab>` or a slug of the base model."""
    if base is None:
        return f"bpe-{vocab_size}"
    name = Path(base.strip().rstrip("/")).name  # "ai-forever/rugpt3small" → "rugpt3small"; a folder → its name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "base"
    digest = hashlib.sha256(base.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


def train_bpe_tokenizer(texts: Callable[[], Iterator[str]], vocab_size: int) -> Any:
    """A byte-level BPE (`tokenizers`) trained on `texts()`, wrapped as a transformers fast tokenizer.

    Byte level: every string can be encoded (no unknown token), whatever the script or
    orthography, and decoding gives back the exact text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT, pad_token=END_OF_TEXT,
        model_max_length=1 << 30,  # documents are packed into blocks later; no per-text limit
    )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash that changes whenever the tokenizer would encode some text differently."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = backend.to_str()
    else:  # a slow (Python) tokenizer: its vocabulary and class stand in for its rules
        state = type(tokenizer).__name__ + json.dumps(tokenizer.get_vocab(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{state}|eos={tokenizer.eos_token_id}".encode()).hexdigest()


def eos_id_of(tokenizer: Any, where: str) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        eos = tokenizer.sep_token_id
    if eos is None:
        raise TokensError(f"{where}: the tokenizer has no end-of-text (EOS) token to put between documents")
    return int(eos)


def added_prefix(tokenizer: Any) -> list[int]:
    """The ids a tokenizer puts before every text by itself: the BOS of Llama-, Mistral- and Gemma-style bases.

    Such a base was pretrained with every document opening on it, so token files and prompts
    begin documents with it too; byte-level BPEs (GPT-2, Qwen2) add nothing.
    """
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a").input_ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens; batched in Rust for fast tokenizers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [enc.ids for enc in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


# ---------------------------------------------------------------- corpus input


def corpus_fingerprint(corpus_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in (DOCUMENTS_FILE, REPORT_JSON):  # the report holds the mix weights used for sampling
        with open(corpus_dir / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_corpus(corpus_dir: Path) -> None:
    if not (corpus_dir / DOCUMENTS_FILE).is_file() or not (corpus_dir / REPORT_JSON).is_file():
        raise TokensError(f"{corpus_dir}: no corpus built yet; run `dvoinik corpus` first")


def _author_table(corpus_dir: Path) -> tuple[list[dict], int]:
    """From report.json: authors in mix order (target first) with role and weight, and the corpus's characters."""
    report = load_report(corpus_dir)
    authors, mix = report["authors"], report["mix"]
    try:
        roles = {name: info.get("role", "influence") for name, info in authors.items()}
        names = sorted(mix, key=lambda a: (roles.get(a) != "target", a))
        table = [{"name": a, "role": roles.get(a, "influence"), "weight": float(mix[a]["weight"])} for a in names]
        return table, sum(info.get("train_chars", 0) + info.get("val_chars", 0) for info in authors.values())
    except (AttributeError, KeyError, TypeError, ValueError):
        raise damaged(corpus_dir / REPORT_JSON, "its authors or mix are not what `dvoinik corpus` writes",
                      REBUILD_CORPUS) from None


# ---------------------------------------------------------------- the stage


def load_token_set(folder: Path, reused: bool = False) -> TokenSet | None:
    """The TokenSet in `folder`, or None when there is none (or it is from another format version)."""
    meta = _meta(folder)
    if meta.get("format") != FORMAT_VERSION:
        return None
    return TokenSet(
        folder=folder, key=meta["key"], dtype=meta["dtype"], eos_id=meta["eos_id"], vocab_size=meta["vocab_size"],
        authors=tuple(AuthorTokens(**a) for a in meta["authors"]),
        documents=tuple(DocumentTokens(**d) for d in meta.get("documents", [])), reused=reused,
    )


def recorded_tokenizer(folder: Path) -> str | None:
    """The fingerprint of the tokenizer a token folder was built with (what a run records)."""
    return _meta(folder).get("tokenizer")


def _meta(folder: Path) -> dict:
    """meta.json of a token folder; empty when it is missing or unreadable (the folder is then rebuilt)."""
    try:
        return json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def prepare_tokens(
    corpus_dir: Path,
    tokens_dir: Path,
    base: str | None,
    vocab_size: int,
    load_base_tokenizer: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[TokenSet, Any]:
    """Build (or reuse) tokens/<key>/ for the corpus; return it and the tokenizer.

    `base` None trains a byte-level BPE of `vocab_size` on the training split; otherwise
    `load_base_tokenizer(base)` gives the base model's own tokenizer.
    """
    check_corpus(corpus_dir)
    key = tokenizer_key(base, vocab_size)
    folder = tokens_dir / key
    restore_previous_folder(folder)
    fingerprint = corpus_fingerprint(corpus_dir)
    meta = _meta(folder)

    if base is None:
        from transformers import PreTrainedTokenizerFast

        if meta.get("corpus") == fingerprint and meta.get("format") == FORMAT_VERSION:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / TOKENIZER_DIR)
            return _loaded(folder, reused=True), tokenizer
        if on_progress:
            on_progress("training tokenizer", 0, 1)
        tokenizer = train_bpe_tokenizer(lambda: (d.text for d in iter_documents(corpus_dir) if d.split == "train"), vocab_size)
    else:
        assert load_base_tokenizer is not None
        tokenizer = load_base_tokenizer(base)
        if meta.get("corpus") == fingerprint and meta.get("tokenizer") == tokenizer_fingerprint(tokenizer) \
                and meta.get("format") == FORMAT_VERSION and meta.get("prefix", []) == added_prefix(tokenizer):
            return _loaded(folder, reused=True), tokenizer

    token_set = _write_token_set(corpus_dir, folder, key, tokenizer, fingerprint, save_tokenizer=base is None,
                                 on_progress=on_progress)
    return token_set, tokenizer


def _loaded(folder: Path, reused: bool) -> TokenSet:
    token_set = load_token_set(folder, reused)
    assert token_set is not None  # prepare_tokens checked the format, or just wrote the folder
    return token_set


def _write_token_set(
    corpus_dir: Path, folder: Path, key: str, tokenizer: Any, fingerprint: str, save_tokenizer: bool,
    on_progress: ProgressCallback | None,
) -> TokenSet:
    eos = eos_id_of(tokenizer, str(corpus_dir / DOCUMENTS_FILE))
    prefix = added_prefix(tokenizer)  # a BOS the base opens every document with
    vocab_size = len(tokenizer)
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    authors, total_chars = _author_table(corpus_dir)
    files = {a["name"]: f"{i:02d}.bin" for i, a in enumerate(authors)}

    with building_folder(folder) as staging:
        for split in SPLITS:
            (staging / split).mkdir()
        counts = {(split, a["name"]): 0 for split in SPLITS for a in authors}
        documents: list[dict] = []
        handles = {(split, name): open(staging / split / file, "wb") for split in SPLITS for name, file in files.items()}
        try:
            done = 0
            for batch in _batches(iter_documents(corpus_dir), ENCODE_BATCH_DOCS):
                for doc, ids in zip(batch, encode_texts(tokenizer, [d.text for d in batch])):
                    if doc.author not in files:
                        raise TokensError(f"{corpus_dir / DOCUMENTS_FILE}: author {doc.author!r} is not in {REPORT_JSON}; "
                                          "rebuild the corpus with `dvoinik corpus`")
                    ids = prefix + ids + [eos]
                    np.asarray(ids, dtype=dtype).tofile(handles[(doc.split, doc.author)])
                    documents.append({"id": doc.id, "author": doc.author, "title": doc.title, "split": doc.split,
                                      "start": counts[(doc.split, doc.author)], "tokens": len(ids)})
                    counts[(doc.split, doc.author)] += len(ids)
                    done += len(doc.text)
                if on_progress:
                    on_progress("tokenizing", done, total_chars)
        finally:
            for handle in handles.values():
                handle.close()
        if save_tokenizer:
            tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        meta = {
            "format": FORMAT_VERSION,
            "key": key,
            "corpus": fingerprint,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "dtype": np.dtype(dtype).name,
            "eos_id": eos,
            "prefix": prefix,
            "vocab_size": vocab_size,
            "authors": [
                {**a, "file": files[a["name"]], "train_tokens": counts[("train", a["name"])],
                 "val_tokens": counts[("val", a["name"])]}
                for a in authors
            ],
            "documents": documents,
        }
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return _loaded(folder, reused=False)


def _batches(items: Iterator[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
