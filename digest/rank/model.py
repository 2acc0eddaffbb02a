"""The ranking model: one feature space that papers, keywords and whole profiles all live in.

A paper becomes one unit-length row of three blocks, each L2-normalised and then weighted:

- full text: TF-IDF over word uni+bigrams of title (twice: titles are dense with meaning) and abstract;
- title: TF-IDF of the title alone, so that a keyword found in a title counts more than one in the abstract;
- concepts: LSA (TruncatedSVD of the full-text TF-IDF), which links papers that share a topic but few words.

Because the block weights' squares sum to 1, the dot product of two rows is a weighted mean of three cosines,
and a profile is just another row-shaped vector: scoring many papers for many readers is one sparse product.
Everything is fitted on the whole store, so rare words weigh right. Deterministic: the SVD has a fixed seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from digest.paper import Paper

# Block weights (before squaring). Chosen on the evaluation protocol as a whole (benchmarks/ranking.py):
# the concept block carries as much as words; the title block is small, a tie-breaker for keyword matches.
FULL_WEIGHT = 0.65
TITLE_WEIGHT = 0.30
CONCEPT_WEIGHT = 0.70
# LSA needs enough papers to find topics; below this the concept block is left out.
MIN_PAPERS_FOR_CONCEPTS = 50
CONCEPTS = 100


def full_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.title}. {paper.abstract}"


# Stands in for a vocabulary when a corpus has no words at all (an empty store, or only stop words), so that
# every other function works unchanged: nothing ever matches it, so every score is 0.
_NO_VOCABULARY = "nothingindexedyet"


def _fit(texts: Sequence[str]) -> TfidfVectorizer:
    """TF-IDF over word uni+bigrams, sublinear tf, English stop words dropped."""
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, stop_words="english", min_df=1, dtype=np.float32
    )
    try:
        return vectorizer.fit(texts)
    except ValueError:  # "empty vocabulary": no text, or only stop words and one-letter tokens
        return vectorizer.fit([_NO_VOCABULARY])


class RankModel:
    """Vocabulary, IDF and concepts fitted on a corpus, plus the corpus' own rows (ranking reuses them)."""

    def __init__(self, corpus: Sequence[Paper]) -> None:
        texts = [full_text(p) for p in corpus]
        titles = [p.title for p in corpus]
        self.full = _fit(texts)
        self.title = _fit(titles)
        self.svd: TruncatedSVD | None = None
        full_rows = self.full.transform(texts) if texts else None
        n_features = len(self.full.vocabulary_)
        components = min(CONCEPTS, len(texts) - 1, n_features - 1)
        if full_rows is not None and len(texts) >= MIN_PAPERS_FOR_CONCEPTS and components >= 2:
            self.svd = TruncatedSVD(components, algorithm="randomized", n_iter=5, random_state=0)
            self.svd.fit(full_rows)
        weights = np.array([FULL_WEIGHT, TITLE_WEIGHT, CONCEPT_WEIGHT if self.svd else 0.0])
        # Renormalised so that rows stay unit length whichever blocks exist.
        self.weights = weights / np.linalg.norm(weights)
        # Rows of the corpus, looked up by id (text compared, so an updated paper is re-encoded).
        self._index: dict[str, int] = {}
        self._texts: list[str] = texts
        self._rows = self._encode(list(corpus)) if corpus else None
        for i, paper in enumerate(corpus):
            if paper.id is not None:
                self._index.setdefault(paper.id, i)

    def _width(self) -> int:
        dense = self.svd.n_components if self.svd is not None else 0
        return len(self.full.vocabulary_) + len(self.title.vocabulary_) + dense

    def _join(self, full: sparse.spmatrix, title: sparse.spmatrix) -> sparse.csr_matrix:
        """Weighted, normalised blocks side by side; the concept block is derived from the full-text block."""
        full = normalize(sparse.csr_matrix(full, dtype=np.float32))
        title = normalize(sparse.csr_matrix(title, dtype=np.float32))
        blocks = [full * self.weights[0], title * self.weights[1]]
        if self.svd is not None:
            concepts = normalize(self.svd.transform(full).astype(np.float32))
            blocks.append(sparse.csr_matrix(concepts * self.weights[2]))
        # Renormalised as a whole: a block can be empty (a title with no known word), and a row must still be
        # unit length so that a paper's similarity to its own copy is exactly 1.
        return normalize(sparse.hstack(blocks, format="csr", dtype=np.float32))

    def _encode(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        return self._join(
            self.full.transform([full_text(p) for p in papers]), self.title.transform([p.title for p in papers])
        )

    def rows(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        """Unit rows for papers: cached rows for papers of the corpus, freshly encoded ones for the rest."""
        if not papers:
            return sparse.csr_matrix((0, self._width()), dtype=np.float32)
        where: list[int] = []
        missing: list[Paper] = []
        cached = self._rows.shape[0] if self._rows is not None else 0
        for paper in papers:
            row = self._index.get(paper.id) if paper.id is not None else None
            if row is not None and self._texts[row] == full_text(paper):
                where.append(row)
            else:  # not in the corpus, or changed since: encoded below, after the cached rows
                where.append(cached + len(missing))
                missing.append(paper)
        pool = self._rows
        if missing:
            fresh = self._encode(missing)
            pool = fresh if pool is None else sparse.vstack([pool, fresh], format="csr", dtype=np.float32)
        assert pool is not None  # papers is not empty, so something was cached or encoded
        return pool[where]

    def query(self, text: str) -> sparse.csr_matrix:
        """A short query (a keyword) as a row: its words in the full-text and title blocks, its concepts."""
        return self._join(self.full.transform([text]), self.title.transform([text]))

    def word_vector(self, text: str) -> sparse.csr_matrix:
        """Plain normalised full-text TF-IDF of any text (used to find the best-matching sentence)."""
        return normalize(sparse.csr_matrix(self.full.transform([text]), dtype=np.float32))

    def word_block(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        """The full-text block of joint rows, renormalised (words only, no title or concepts)."""
        width = len(self.full.vocabulary_)
        return normalize(rows[:, :width])


def dense(matrix: Any) -> np.ndarray:
    """A sparse or dense product as a float64 array (products of sparse rows may come back either way)."""
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def build_model(corpus: Sequence[Paper]) -> RankModel:
    """Fit the model on a corpus (production: every paper in the store)."""
    return RankModel(corpus)
