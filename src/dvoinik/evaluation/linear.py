"""A linear view: TF-IDF of character or word n-grams and a linear SVM, one score per author.

The classic strong baseline of authorship attribution (character n-grams with a linear
SVM: Stamatatos 2009; Kestemont et al., PAN 2018/2019 baselines): every training work is
cut into chunks, each chunk becomes a TF-IDF vector (sublinear term frequency, smoothed
idf, unit length) over the view's vocabulary (`ngrams.py`), and scikit-learn's
`LinearSVC` learns one-vs-rest weights. A text's score for an author is its signed
distance to that author's hyperplane (positive: on the author's side).

scikit-learn is used to fit only. The fitted view is plain arrays (vocabulary codes, idf,
weights, intercepts) that `scores` applies with numpy, so a saved model is data, never
pickled code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from dvoinik.evaluation.ngrams import NgramSpec, Vocabulary

SVM_C = 1.0  # scikit-learn's default; the scores are calibrated afterwards, so C shifts little


@dataclass(eq=False)
class LinearView:
    """A fitted view: features, their idf, and one weight vector and intercept per author."""

    vocabulary: Vocabulary
    idf: np.ndarray  # per feature
    coef: np.ndarray  # authors × features
    intercept: np.ndarray  # per author

    def scores(self, norms: Sequence[str]) -> np.ndarray:
        """texts × authors: each normalized text's signed distance to every author's hyperplane."""
        return scores(self.vocabulary.counts(norms), self.idf, self.coef, self.intercept)

    def arrays(self) -> dict[str, np.ndarray]:
        v = self.vocabulary
        return {"kind": np.array(v.spec.kind), "n": np.array([v.spec.n_min, v.spec.n_max]), "codes": v.codes,
                "alphabet": np.array(v.alphabet), "words": np.array("\n".join(v.words)), "idf": self.idf,
                "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearView:
        words = str(arrays["words"])
        n_min, n_max = (int(x) for x in arrays["n"])
        vocabulary = Vocabulary(NgramSpec(str(arrays["kind"]), n_min, n_max), arrays["codes"].astype(np.int64),
                                alphabet=str(arrays["alphabet"]), words=tuple(words.split("\n")) if words else ())
        return cls(vocabulary, arrays["idf"], arrays["coef"], arrays["intercept"])


def tfidf(counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear TF-IDF with unit-length rows (scikit-learn's TfidfTransformer(sublinear_tf=True), by hand)."""
    x = counts.tocsr().astype(np.float64, copy=True)
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    lengths = np.diff(x.indptr)
    rows = np.repeat(np.arange(x.shape[0]), lengths)
    norms = np.sqrt(np.bincount(rows, weights=x.data * x.data, minlength=x.shape[0]))
    x.data /= np.repeat(np.where(norms > 0, norms, 1.0), lengths)
    return x


def smoothed_idf(counts: sparse.csr_matrix) -> np.ndarray:
    """log((1 + n) / (1 + df)) + 1 over the rows of `counts` (scikit-learn's smooth_idf)."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0


def scores(counts: sparse.csr_matrix, idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    return np.asarray(tfidf(counts, idf) @ coef.T) + intercept


def fit_linear(counts: sparse.csr_matrix, labels: np.ndarray, n_authors: int, vocabulary: Vocabulary) -> LinearView:
    """Fit on chunk counts (rows) with their authors (0..n_authors-1, every one present)."""
    from sklearn.svm import LinearSVC

    idf = smoothed_idf(counts)
    svm = LinearSVC(C=SVM_C, class_weight="balanced").fit(tfidf(counts, idf), labels)
    coef, intercept = svm.coef_, svm.intercept_
    if n_authors == 2:  # one hyperplane for two classes: the first author's score is its mirror
        coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
    return LinearView(vocabulary, idf.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32))
