from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from style_texts import author_prose

from dvoinik.evaluation.linear import LinearView, fit_linear, smoothed_idf, tfidf
from dvoinik.evaluation.ngrams import NgramSpec, Work, chunk_texts, fit_vocabulary, normalize


def test_tfidf_matches_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfTransformer

    counts = sparse.csr_matrix(np.array([[3, 0, 1, 0], [0, 2, 0, 0], [1, 1, 1, 5]], dtype=float))
    ours = tfidf(counts, smoothed_idf(counts)).toarray()
    theirs = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    assert np.allclose(ours, theirs)


@pytest.mark.parametrize("authors", [2, 3])
def test_a_fitted_view_scores_unseen_works_and_survives_its_arrays(authors: int) -> None:
    works = [Work(a, f"w{w}", normalize(author_prose(a, w, 1200))) for a in range(authors) for w in range(2)]
    vocabulary = fit_vocabulary(NgramSpec("char", 1, 3), works, max_features=3000)
    chunks = [(w.author, c) for w in works for c in chunk_texts(w.text, 300)]
    view = fit_linear(vocabulary.counts([c for _, c in chunks]), np.array([a for a, _ in chunks]), authors, vocabulary)
    assert view.coef.shape == (authors, len(vocabulary.codes)) and view.coef.dtype == np.float32
    unseen = [normalize(author_prose(a, 9, 600)) for a in range(authors)]
    scores = view.scores(unseen)
    assert list(scores.argmax(axis=1)) == list(range(authors))
    if authors == 2:
        assert np.allclose(scores[:, 0], -scores[:, 1], atol=1e-5)  # one hyperplane, mirrored
    again = LinearView.from_arrays({k: np.asarray(v) for k, v in view.arrays().items()})
    assert np.allclose(again.scores(unseen), scores)
