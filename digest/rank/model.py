"""The ranking model: one feature space that papers, keywords and whole profiles all live in.

A paper becomes one unit-length row of three blocks, each L2-normalised and then weighted:

- full text: TF-IDF over word uni+bigrams of title (twice: titles are dense with meaning) and abstract;
- title: TF-IDF of the title alone, so that a keyword found in a title counts more than one in the abstract;
- concepts: LSA (TruncatedSVD of the full-text TF-IDF), which links papers that share a topic but few words.

Because the block weights' squares sum to 1, the dot product of two rows is a weighted mean of three cosines,
and a profile is just another row-shaped vector: scoring many papers for many readers is one sparse product.

The model is fitted on a bounded corpus (production: the store's most recent `FitSettings.papers` papers), with
a vocabulary capped by `min_df` and `max_features`, so that its cost and size do not grow with the history; papers
outside the corpus are encoded with it as they come (a word it has never seen simply does not count until the
next fit). Deterministic: the SVD has a fixed seed. A fitted model can be taken apart into plain arrays
(`model_state`) and put back together (`model_from_state`) without pickling: digest.model_cache keeps it on disk.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from digest.paper import Paper
from digest.rank.embeddings import PaperVectors
from digest.rank.stored import StoredBlock

# Block weights (before squaring). Chosen on the evaluation protocol as a whole (benchmarks/ranking.py):
# the concept block carries as much as words; the title block is small, a tie-breaker for keyword matches.
FULL_WEIGHT = 0.65
TITLE_WEIGHT = 0.30
CONCEPT_WEIGHT = 0.70
# LSA needs enough papers to find topics; below this the concept block is left out.
MIN_PAPERS_FOR_CONCEPTS = 50
CONCEPTS = 100
ENCODE_CHUNK = 5000
# Below this many papers every word counts (min_df 1): in a small store a word seen once may be a reader's keyword.
MIN_PAPERS_FOR_MIN_DF = 5000


@dataclass(frozen=True)
class FitSettings:
    """How big a model may get. `papers`: the fit corpus is at most this many papers (the most recent);
    `min_df`: a word (or word pair) must occur in this many of them (from MIN_PAPERS_FOR_MIN_DF papers on);
    `max_features`: the full-text vocabulary keeps at most this many of the most frequent terms.

    Measured with benchmarks/ranking.py on ../shared/eval/arxiv-2012-2017.jsonl (19,902 papers, 1.2 M terms
    when every term counts), nDCG@10 at diversity 0 / 0.3: every term 0.292 / 0.297; min_df 2: 0.294 / 0.291;
    min_df 3: 0.296 / 0.298, with a fit in a third of the time; a 400,000-term cap alone: 0.294 / 0.299."""

    papers: int = 20_000
    min_df: int = 3
    max_features: int = 400_000

    def fingerprint(self) -> str:
        return f"papers={self.papers};min_df={self.min_df};max_features={self.max_features}"


def full_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.title}. {paper.abstract}"


def text_digest(paper: Paper) -> int:
    """A 63-bit digest of what the model reads of a paper: a stored row is reused only while it still matches."""
    digest = hashlib.blake2b(full_text(paper).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# Stands in for a vocabulary when a corpus has no words at all (an empty store, or only stop words), so that
# every other function works unchanged: nothing ever matches it, so every score is 0.
_NO_VOCABULARY = "nothingindexedyet"
_VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "stop_words": "english", "dtype": np.float32}


def _fit(texts: Sequence[str], min_df: int = 1, max_features: int | None = None) -> tuple[TfidfVectorizer, Any]:
    """TF-IDF over word uni+bigrams, sublinear tf, English stop words dropped; returns it and the texts' rows."""
    for threshold in (min_df, 1):  # a tiny corpus may have no word twice: then every word counts
        vectorizer = TfidfVectorizer(min_df=threshold, max_features=max_features, **_VECTORIZER)
        try:
            return vectorizer, vectorizer.fit_transform(texts)
        except ValueError:  # "empty vocabulary" (no text, only stop words) or min_df pruned every term
            continue
    vectorizer = TfidfVectorizer(**_VECTORIZER)
    vectorizer.fit([_NO_VOCABULARY])
    return vectorizer, vectorizer.transform(texts) if texts else None


def _vectorizer_from(terms: list[str], idf: np.ndarray) -> TfidfVectorizer:
    vectorizer = TfidfVectorizer(vocabulary={term: i for i, term in enumerate(terms)}, **_VECTORIZER)
    vectorizer.idf_ = idf
    return vectorizer


def _terms(vectorizer: TfidfVectorizer) -> list[str]:
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    terms = [""] * len(vocabulary)
    for term, index in vocabulary.items():
        terms[index] = term
    return terms


def _same(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    return matrix


def _csr(loaded: object) -> sparse.csr_matrix:
    return sparse.csr_matrix(loaded, dtype=np.float32)


RowBlock = StoredBlock[sparse.csr_matrix]


class RankModel:
    """Vocabulary, IDF and concepts, plus stored rows of papers (the fit corpus', and any added since)."""

    def __init__(
        self,
        full: TfidfVectorizer,
        title: TfidfVectorizer,
        basis: np.ndarray | None,
        *,
        tag: str = "",
        corpus_size: int = 0,
    ) -> None:
        self.full = full
        self.title = title
        # The concept basis (the SVD's components, transposed and contiguous): concepts of rows X are X @ basis.
        self.basis = basis
        self.tag = tag  # identifies one fit: rows stored for one model never mix with another's
        self.corpus_size = corpus_size
        weights = np.array([FULL_WEIGHT, TITLE_WEIGHT, CONCEPT_WEIGHT if basis is not None else 0.0])
        # Renormalised so that rows stay unit length whichever blocks exist.
        self.weights = weights / np.linalg.norm(weights)
        self._blocks: list[RowBlock] = []
        self._where: dict[str, tuple[int, int]] = {}
        # Sentence embeddings beside the TF-IDF rows (digest.rank.embeddings), when they are installed and on.
        self.vectors: PaperVectors | None = None

    @classmethod
    def fit(cls, corpus: Sequence[Paper], settings: FitSettings | None = None) -> RankModel:
        """Fit on a corpus and keep the corpus' rows (ranking and the cache reuse them)."""
        settings = settings or FitSettings()
        texts = [full_text(p) for p in corpus]
        min_df = settings.min_df if len(texts) >= MIN_PAPERS_FOR_MIN_DF else 1
        full, full_rows = _fit(texts, min_df, settings.max_features)
        title, title_rows = _fit([p.title for p in corpus], min_df)
        basis = None
        n_features = len(full.vocabulary_)
        components = min(CONCEPTS, len(texts) - 1, n_features - 1)
        if full_rows is not None and len(texts) >= MIN_PAPERS_FOR_CONCEPTS and components >= 2:
            svd = TruncatedSVD(components, algorithm="randomized", n_iter=5, random_state=0)
            svd.fit(full_rows)
            basis = np.ascontiguousarray(svd.components_.T, dtype=np.float32)
        tag = hashlib.blake2b(
            "\n".join(texts).encode("utf-8", "surrogatepass") + settings.fingerprint().encode(), digest_size=8
        ).hexdigest()
        model = cls(full, title, basis, tag=tag, corpus_size=len(texts))
        with_ids = [i for i, p in enumerate(corpus) if p.id is not None]
        if full_rows is not None and title_rows is not None and with_ids:
            rows = model._join(full_rows[with_ids], title_rows[with_ids])
            chosen = [corpus[i] for i in with_ids]
            model.add_rows([p.id or "" for p in chosen], np.array([text_digest(p) for p in chosen]), rows)
        return model

    # -- stored rows ----------------------------------------------------------------------------------------

    def add_rows(
        self, ids: Sequence[str], digests: np.ndarray, rows: sparse.csr_matrix | Callable[[], sparse.csr_matrix]
    ) -> None:
        """Make rows of papers known (a matrix, or a function that loads it when a row is first needed).
        A later block wins for an id in several blocks."""
        load: Callable[[], sparse.csr_matrix] = rows if callable(rows) else functools.partial(_same, rows)
        block: RowBlock = StoredBlock(ids, np.asarray(digests, dtype=np.uint64), load, self._width(), _csr)
        number = len(self._blocks)
        self._blocks.append(block)
        for row, paper_id in enumerate(block.ids):
            self._where[paper_id] = (number, row)

    def blocks(self) -> list[RowBlock]:
        return list(self._blocks)

    def stored_ids(self) -> set[str]:
        return set(self._where)

    def encode(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        """Fresh unit rows for papers (ignoring stored rows), ENCODE_CHUNK papers at a time: the vectorizers'
        intermediate arrays stay small on a big day."""
        if not papers:
            return sparse.csr_matrix((0, self._width()), dtype=np.float32)
        parts = [
            self._join(
                self.full.transform([full_text(p) for p in chunk]), self.title.transform([p.title for p in chunk])
            )
            for chunk in (papers[start : start + ENCODE_CHUNK] for start in range(0, len(papers), ENCODE_CHUNK))
        ]
        return parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr", dtype=np.float32)

    def rows(self, papers: Sequence[Paper]) -> sparse.csr_matrix:
        """Unit rows for papers: stored rows where they still match the paper's text, freshly encoded ones else."""
        if not papers:
            return sparse.csr_matrix((0, self._width()), dtype=np.float32)
        parts: list[sparse.csr_matrix] = []
        where: list[int] = []
        offsets: dict[int, int] = {}
        missing: list[Paper] = []
        missing_at: list[int] = []
        size = 0
        for position, paper in enumerate(papers):
            found = self._where.get(paper.id) if paper.id is not None else None
            if found is not None:
                number, row = found
                block = self._blocks[number]
                if int(block.digests[row]) == text_digest(paper):
                    if number not in offsets:
                        matrix = block.matrix
                        if matrix is not None:
                            offsets[number] = size
                            parts.append(matrix)
                            size += matrix.shape[0]
                    if number in offsets:
                        where.append(offsets[number] + row)
                        continue
            where.append(-1)
            missing.append(paper)
            missing_at.append(position)
        if missing:
            for position, index in zip(missing_at, range(size, size + len(missing)), strict=True):
                where[position] = index
            parts.append(self.encode(missing))
        pool = parts[0] if len(parts) == 1 else sparse.vstack(parts, format="csr", dtype=np.float32)
        return pool[where]

    # -- encoding ---------------------------------------------------------------------------------------------

    def _width(self) -> int:
        dense = self.basis.shape[1] if self.basis is not None else 0
        return len(self.full.vocabulary_) + len(self.title.vocabulary_) + dense

    @property
    def has_concepts(self) -> bool:
        return self.basis is not None

    def concepts(self, full: sparse.spmatrix) -> np.ndarray:
        """The LSA concepts of full-text TF-IDF rows (normalised or not: they are normalised here)."""
        assert self.basis is not None
        return np.asarray(normalize(sparse.csr_matrix(full, dtype=np.float32)) @ self.basis, dtype=np.float32)

    def _join(self, full: sparse.spmatrix, title: sparse.spmatrix) -> sparse.csr_matrix:
        """Weighted, normalised blocks side by side; the concept block is derived from the full-text block."""
        full = normalize(sparse.csr_matrix(full, dtype=np.float32))
        title = normalize(sparse.csr_matrix(title, dtype=np.float32))
        blocks = [full * self.weights[0], title * self.weights[1]]
        if self.basis is not None:
            concepts = normalize(np.asarray(full @ self.basis, dtype=np.float32))
            blocks.append(sparse.csr_matrix(concepts * self.weights[2]))
        # Renormalised as a whole: a block can be empty (a title with no known word), and a row must still be
        # unit length so that a paper's similarity to its own copy is exactly 1.
        return normalize(sparse.hstack(blocks, format="csr", dtype=np.float32))

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


def model_state(model: RankModel) -> dict[str, np.ndarray]:
    """The fitted model as plain arrays (no pickle): vocabularies as newline-joined UTF-8, IDFs, the basis."""
    state: dict[str, np.ndarray] = {
        "full_terms": np.frombuffer("\n".join(_terms(model.full)).encode("utf-8"), dtype=np.uint8),
        "full_idf": np.asarray(model.full.idf_, dtype=np.float64),
        "title_terms": np.frombuffer("\n".join(_terms(model.title)).encode("utf-8"), dtype=np.uint8),
        "title_idf": np.asarray(model.title.idf_, dtype=np.float64),
    }
    if model.basis is not None:
        state["basis"] = model.basis
    return state


def model_from_state(state: dict[str, np.ndarray], *, tag: str, corpus_size: int) -> RankModel:
    """The inverse of model_state(); raises ValueError when the arrays do not fit together."""

    def vectorizer(name: str) -> TfidfVectorizer:
        terms = bytes(state[f"{name}_terms"]).decode("utf-8").split("\n")
        idf = np.asarray(state[f"{name}_idf"], dtype=np.float64)
        if len(terms) != idf.shape[0] or len(set(terms)) != len(terms):
            raise ValueError(f"{name} vocabulary and IDF do not match")
        return _vectorizer_from(terms, idf)

    full, title = vectorizer("full"), vectorizer("title")
    basis = state.get("basis")
    if basis is not None:
        basis = np.ascontiguousarray(basis, dtype=np.float32)
        if basis.ndim != 2 or basis.shape[0] != len(full.vocabulary_):
            raise ValueError("concept basis does not match the vocabulary")
    return RankModel(full, title, basis, tag=tag, corpus_size=corpus_size)


def dense(matrix: Any) -> np.ndarray:
    """A sparse or dense product as a float64 array (products of sparse rows may come back either way)."""
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def build_model(
    corpus: Sequence[Paper], settings: FitSettings | None = None, *, vectors: PaperVectors | None = None
) -> RankModel:
    """Fit the model on a corpus (production: the store's most recent papers, see digest.model_cache), with
    sentence embeddings beside it when `vectors` is given."""
    model = RankModel.fit(corpus, settings)
    model.vectors = vectors
    return model
