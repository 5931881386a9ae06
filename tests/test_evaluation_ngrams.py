from __future__ import annotations

import numpy as np

from dvoinik.evaluation.ngrams import NgramSpec, Vocabulary, Work, chunk_texts, fit_vocabulary, normalize, text_codes


def test_normalize_folds_case_yo_stress_and_spaces() -> None:
    assert normalize("Ещё  ЁЛКА\n\nза́мок") == "еще елка замок"


def test_codes_of_different_lengths_never_collide() -> None:
    # A 3-gram starting with a character outside the alphabet packs to the same bits as a 2-gram; n tells them apart.
    alphabet_codes = np.array([ord(c) for c in sorted("аб ")], dtype=np.uint32)
    codes = text_codes("яаб", NgramSpec("char", 2, 3), alphabet_codes, {})
    assert len(codes) == 3 and len(set(codes.tolist())) == 3


def test_vocabulary_keeps_ngrams_of_two_works_and_counts_them() -> None:
    works = [Work(0, "a1", "он сказал петрушин"), Work(0, "a2", "он сказал"), Work(1, "b1", "она сказала")]
    vocabulary = fit_vocabulary(NgramSpec("word", 1, 2), works, max_features=100)
    described = {vocabulary.describe(j) for j in range(len(vocabulary.codes))}
    assert "он сказал" in described and "сказал" in described
    assert not any("петрушин" in d for d in described)  # a name of one work says nothing of style
    counts = vocabulary.counts(["он сказал он сказал"]).toarray()[0]
    assert counts[[j for j in range(len(vocabulary.codes)) if vocabulary.describe(j) == "он сказал"][0]] == 2
    chars = fit_vocabulary(NgramSpec("char", 1, 3), works, max_features=5)
    assert len(chars.codes) == 5 and list(chars.codes) == sorted(chars.codes)
    again = Vocabulary(chars.spec, chars.codes, alphabet=chars.alphabet)
    assert (again.counts(["он сказал"]) != chars.counts(["он сказал"])).nnz == 0


def test_chunks_have_no_tiny_remainder() -> None:
    text = " ".join(f"w{i}" for i in range(2400))
    assert [len(c.split()) for c in chunk_texts(text, 1000)] == [1200, 1200]  # 2.4 chunks: two
    assert [len(c.split()) for c in chunk_texts(text, 1500)] == [1200, 1200]  # 1.6 chunks: two, not one and a bit
    assert chunk_texts("один", 1000) == ["один"]
