from __future__ import annotations

import numpy as np
from style_texts import author_prose

from dvoinik.evaluation.delta import DeltaModel, DeltaSettings, count_delta, fit_delta
from dvoinik.evaluation.ngrams import Work, normalize

SETTINGS = DeltaSettings(mfw=120, char_n=3, char_features=400, chunk_words=5000)


def _works() -> list[Work]:
    return [Work(a, f"w{w}", normalize(author_prose(a, w, 1500))) for a in range(3) for w in range(2)]


def test_text_and_training_counts_agree_and_centroids_are_means() -> None:
    works = _works()
    counts = count_delta(works, SETTINGS)
    assert len(counts.chunk_work) == len(works)  # 1,500 words: one chunk each
    model = fit_delta(counts, 3)
    word_z, char_z, words = model.zscores([w.text for w in works])
    # The z-vector of a work's text is the one its chunk was fitted with: the centroid is their mean.
    assert np.allclose(word_z[[0, 1]].mean(axis=0), model.word_centroids[0])
    assert np.allclose(char_z[[4, 5]].mean(axis=0), model.char_centroids[2])
    assert (words >= 1400).all()
    dw, dc, _ = model.distances([normalize(author_prose(a, 9, 1000)) for a in range(3)])
    assert list(dw.argmin(axis=1)) == [0, 1, 2] and list(dc.argmin(axis=1)) == [0, 1, 2]
    assert ((0 <= dw) & (dw <= 2)).all()


def test_a_fold_model_from_some_chunks_and_its_arrays() -> None:
    works = _works()
    counts = count_delta(works, SETTINGS)
    rows = np.flatnonzero(counts.chunk_author != 1)  # author 1 left out
    labels = np.where(counts.chunk_author[rows] == 2, 1, 0)
    fold = fit_delta(counts, 2, rows, labels)
    assert fold.word_centroids.shape == (2, len(counts.words))
    text = normalize(author_prose(2, 9, 1000))
    assert fold.distances([text])[0].argmin() == 1
    again = DeltaModel.from_arrays({k: np.asarray(v) for k, v in fold.arrays().items()})
    assert again.char_ngrams == fold.char_ngrams and again.words == fold.words
    assert np.allclose(again.distances([text])[1], fold.distances([text])[1])
