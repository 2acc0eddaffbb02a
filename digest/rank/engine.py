"""The ranking engine: one subscriber (`rank`) or ten thousand (`rank_many`) scored with a handful of matrix
products per chunk of subscribers, not per subscriber. Without sentence embeddings it gives exactly what the
per-subscriber formulas of tests/rank_oracle.py give; with them, the meaning score, the neighbour averaging and
the author/category lifts are added on the same matrices.

What is shared, and computed once per call (or once per chunk):
- the candidates' rows, their folded title/abstract (phrase matches), their sentences encoded for "best match"
  explanations;
- the rows of every distinct keyword query, liked and disliked paper;
- per distinct exclude term, its factor over the candidates (a phrase check per term, not per subscriber).

Per chunk of subscribers (CHUNK, to bound memory): the stacked profile vectors times the candidates is the
base relevance; the PRF expansion is done algebraically on that product and the candidates' rows R
(p' = (p + w c) / |p + w c| with c the mean of the top rows, so p'.r = (p.r + w c.r) / |p + w c|, c.r computed
as (S R) R^T with S selecting the top rows: linear in the candidates, no candidates x candidates matrix),
which is exactly the per-subscriber formula without building a second profile matrix; the nearest-liked floor
is one product of the chunk's distinct liked rows. Only each subscriber's head (at most max(MMR_POOL,
5 * max_papers) papers, found with argpartition) reaches Python; MMR compares only that head, and only the picks
are explained.

Candidates a subscriber must not get (their liked and disliked papers, papers already sent to them, papers by an
author they excluded) are masked to score 0, which is what leaving them out of that subscriber's pool does: the
PRF top-5 only takes positive scores, and the final list drops scores of 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from digest import trace
from digest.errors import RankError
from digest.paper import Paper, title_key
from digest.picks import Scored
from digest.rank.embeddings import PaperVectors
from digest.rank.explain import Facts, quotable, sentences, why_lines
from digest.rank.model import RankModel, dense
from digest.rank.people import matching_authors, matching_categories, name_key

if TYPE_CHECKING:  # a pydantic model: the engine reads its fields, it need not load pydantic
    from digest.subscribers import Interests

DISLIKE_WEIGHT = 0.5
# Pseudo-relevance feedback: how many top candidates, and how far the profile moves towards them.
PRF_TOP = 5
PRF_WEIGHT = 0.5
# A candidate's similarity to its nearest liked paper, raised to this power, is a floor for its score:
# near-copies of a liked paper (similarity ~1) come first; loose neighbours (0.5 -> 0.125) barely count.
NEAR_POWER = 3
# An exclude term found in the abstract (not the title) keeps this share of the score.
EXCLUDED_IN_ABSTRACT = 0.3
# MMR reorders only the head of a list: a paper far down is never worth more than a varied pick.
MMR_POOL = 100
# With sentence embeddings (digest.rank.embeddings): a score is SEMANTIC_WEIGHT times the embedding cosine to the
# profile, rescaled so that SEMANTIC_FLOOR (what unrelated papers of one broad field reach) counts as 0, plus the
# rest times the TF-IDF+LSA score (so scores keep meaning "how relevant" and min_score keeps cutting noise); then
# each candidate's score is averaged with the mean score of its NEIGHBOURS nearest candidates (by embedding) at
# NEIGHBOUR_WEIGHT: a paper whose close neighbours all match is a safer pick than a lone match. Chosen on the
# evaluation protocol as a whole, both shared files (benchmarks/ranking.py, README).
SEMANTIC_WEIGHT = 0.75
NEIGHBOURS = 7
NEIGHBOUR_WEIGHT = 1.0
SEMANTIC_FLOOR = 0.25
# A paper by an author the reader follows gains this share of what its score lacks to 1; one in a category the
# reader asked for, CATEGORY_BOOST. So a followed author's paper comes near the top whatever its words; a category
# lifts its papers above the rest while keywords and liked papers still order them.
AUTHOR_BOOST = 0.6
CATEGORY_BOOST = 0.25
# With embeddings MMR compares picks by meaning, counting only what two papers share beyond MMR_FLOOR (papers of
# one field are all somewhat alike by meaning; only near-repeats should push each other down). Without embeddings
# it compares the TF-IDF+LSA rows as they are: their cosines are low unless papers share much wording.
MMR_FLOOR = 0.6
# "Close to <liked paper>" is said only when the pick is at least this close to it (embedding cosine, or the
# TF-IDF+LSA rows' cosine without embeddings): a loose neighbour is no reason.
LIKED_MEANING = 0.45
LIKED_WORDS = 0.03  # word overlap is sparse: two papers on one topic often share only a few terms
# "About <keyword> (in other words)" is said of a pick only when the keyword is at least this close to it: by
# meaning (embedding cosine: unrelated texts score about 0 to 0.15) or, without embeddings, in the TF-IDF space.
CONCEPT_MEANING = 0.4
CONCEPT_WORDS = 0.05
# The neighbour graph costs candidates^2 x dimension: above this many candidates (a big day) it is left out; below
# NEIGHBOUR_MIN_POOL there are too few papers for a paper's nearest to be close (in 14 papers, 7 are half the day).
NEIGHBOUR_LIMIT = 10_000
NEIGHBOUR_MIN_POOL = 100

# Subscribers scored together: the dense score matrices are CHUNK x candidates (1,000 x 2,000 float64 = 16 MB).
CHUNK = 1000
_EMPTY_PROFILE = (
    "the profile has no keywords and no liked papers (nor authors or categories); add [interests] keywords or papers"
)


def _whole_words(needle: str) -> re.Pattern[str]:
    """A folded phrase as whole words: "gnn" is in "gnn-based", not in "gnns"."""
    return re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)")


def _beyond(cosine: np.ndarray, floor: float) -> np.ndarray:
    """Cosines rescaled so that `floor` counts as 0 and 1 stays 1, clipped to [0, 1]."""
    return np.clip((cosine - floor) / (1.0 - floor), 0.0, 1.0)


def paper_key(paper: Paper) -> str:
    return paper.id or paper.title


def mmr_order(
    scores: np.ndarray,
    rows: sparse.csr_matrix | None,
    count: int,
    diversity: float,
    *,
    similarity: np.ndarray | None = None,
) -> list[int]:
    """Maximal marginal relevance: greedily take the candidate with the best
    (1 - diversity) * relevance - diversity * (similarity to the closest pick so far).

    `scores` must already be sorted best first (ties broken by id), so the first maximum wins ties.
    diversity 0 is plain relevance order. `similarity` (the rows' pairwise cosines, already clipped to [0, 1])
    may be given instead of `rows` by a caller that has it anyway (the batch ranker slices it from one product).
    """
    n = scores.size
    count = min(count, n)
    if diversity <= 0 or n == 0:
        return list(range(count))
    if similarity is None:
        assert rows is not None, "mmr_order needs rows or similarity"
        similarity = np.clip(np.asarray((rows @ rows.T).todense(), dtype=np.float64), 0.0, 1.0)
    chosen: list[int] = []
    closest = np.zeros(n)
    available = np.ones(n, dtype=bool)
    for _ in range(count):
        value = (1.0 - diversity) * scores - diversity * closest
        value[~available] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, similarity[pick])
    return chosen


@dataclass(frozen=True)
class RankRequest:
    """One subscriber's side of `rank()`: the same arguments, plus candidate ids to leave out (already sent)."""

    interests: Interests
    liked: Sequence[Paper] = ()
    disliked: Sequence[Paper] = ()
    max_papers: int = 10
    min_score: float = 0.0
    diversity: float = 0.0
    skip_ids: frozenset[str] = field(default_factory=frozenset)


RankResult = list[Scored] | RankError


def _paper_identity(paper: Paper) -> tuple[str | None, str, str]:
    # Two Paper objects for the same stored paper (each subscriber's plan loads its own) share one row.
    return (paper.id, paper.title, paper.abstract)


class _Rows:
    """Distinct papers or texts met in a call, each encoded once; `index` gives a row in `matrix`."""

    def __init__(self) -> None:
        self.index: dict[object, int] = {}
        self.items: list[object] = []

    def add(self, key: object, item: object) -> int:
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.items)
            self.items.append(item)
        return found


def _selection(groups: Sequence[Sequence[int]], width: int) -> sparse.csr_matrix:
    """A (len(groups) x width) matrix whose row g averages the rows listed in groups[g] (repeats count twice)."""
    indptr = np.zeros(len(groups) + 1, dtype=np.int64)
    indices: list[int] = []
    data: list[float] = []
    for g, members in enumerate(groups):
        indices.extend(members)
        data.extend([1.0 / len(members)] * len(members) if members else [])
        indptr[g + 1] = len(indices)
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(groups), width),
    )


class _Candidates:
    """Everything about the candidates that does not depend on the subscriber, computed once."""

    def __init__(self, model: RankModel, papers: Sequence[Paper]) -> None:
        self.model = model
        self.papers = list(papers)
        self.rows = model.rows(self.papers)
        self.rows_t = self.rows.T.tocsr()
        self._words: sparse.csr_matrix | None = None
        keys = [paper_key(p) for p in self.papers]
        # Candidates by key and by id (lists: nothing stops a caller from passing a paper twice).
        self.by_key: dict[str, list[int]] = {}
        self.by_id: dict[str, list[int]] = {}
        for i, paper in enumerate(self.papers):
            self.by_key.setdefault(keys[i], []).append(i)
            if paper.id is not None:
                self.by_id.setdefault(paper.id, []).append(i)
        # Equal keys get equal ranks, so a stable sort by (-score, key rank) is rank()'s sort by (-score, key).
        self.key_rank = np.unique(np.asarray(keys, dtype=object), return_inverse=True)[1].astype(np.int64)
        self._folded: list[tuple[str, str] | None] = [None] * len(self.papers)
        self._phrases: dict[tuple[str, int], tuple[bool, bool]] = {}
        self._matchers: dict[str, tuple[str, re.Pattern[str] | None]] = {}
        self._factors: dict[str, np.ndarray] = {}
        self._sentences: dict[int, tuple[list[str], sparse.csr_matrix]] = {}
        # (candidates x dimension) unit rows when the model has sentence embeddings, else None.
        self.meaning = model.vectors.papers(self.papers) if model.vectors is not None and self.papers else None
        self._neighbours: sparse.csr_matrix | None = None
        self._boosts: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}
        self._by_authors: dict[tuple[str, ...], np.ndarray] = {}
        self._quotable: dict[int, list[bool]] = {}
        self._gram: np.ndarray | None = None
        self._compact: sparse.csr_matrix | None = None

    def boost(self, authors: Sequence[str], categories: Sequence[str]) -> np.ndarray | None:
        """Per candidate, the share of the missing score an author or category match adds (None: no such interest)."""
        if not authors and not categories:
            return None
        key = (tuple(authors), tuple(categories))
        found = self._boosts.get(key)
        if found is None:
            wanted = [k for k in (name_key(a) for a in authors) if k is not None]
            by_author = np.array([bool(matching_authors(wanted, p.authors)) for p in self.papers]) if wanted else 0
            by_category = (
                np.array([bool(matching_categories(categories, p.categories)) for p in self.papers])
                if categories
                else 0
            )
            kept = 1.0 - (1.0 - AUTHOR_BOOST * by_author) * (1.0 - CATEGORY_BOOST * by_category)
            found = self._boosts[key] = np.broadcast_to(np.asarray(kept, dtype=np.float64), (len(self.papers),))
        return found

    def by_authors(self, authors: Sequence[str]) -> np.ndarray:
        """Per candidate, whether one of its authors is among these people (digest.rank.people's matching)."""
        key = tuple(authors)
        found = self._by_authors.get(key)
        if found is None:
            wanted = [k for k in (name_key(a) for a in authors) if k is not None]
            found = self._by_authors[key] = np.array(
                [bool(wanted) and bool(matching_authors(wanted, p.authors)) for p in self.papers], dtype=bool
            )
        return found

    def smoothed(self, scores: np.ndarray) -> np.ndarray:
        """(scores + w * mean score of each candidate's nearest neighbours) / (1 + w), row by row."""
        if self.meaning is None or not NEIGHBOUR_MIN_POOL <= len(self.papers) <= NEIGHBOUR_LIMIT:
            return scores
        if self._neighbours is None:
            self._neighbours = _neighbour_graph(self.meaning, NEIGHBOURS)
        return (scores + NEIGHBOUR_WEIGHT * (self._neighbours @ scores.T).T) / (1.0 + NEIGHBOUR_WEIGHT)

    @property
    def words(self) -> sparse.csr_matrix:
        """The candidates' word blocks (for exclude terms): made only when a profile excludes something."""
        if self._words is None:
            self._words = self.model.word_block(self.rows)
        return self._words

    def similarity(self, order: np.ndarray) -> np.ndarray:
        """Pairwise cosines (clipped to [0, 1]) among the candidates `order` (by meaning when there are embeddings):
        MMR only ever compares a subscriber's short head, so no candidates x candidates matrix is made."""
        if self.meaning is not None:
            head_meaning = self.meaning[order]
            return _beyond((head_meaning @ head_meaning.T).astype(np.float64), MMR_FLOOR)
        if len(self.papers) <= GRAM_LIMIT:
            if self._gram is None:  # every pair once: cheaper than one product per subscriber's head
                self._gram = np.clip(dense(self.rows @ self.rows_t), 0.0, 1.0).astype(np.float32)
            return self._gram[np.ix_(order, order)].astype(np.float64)
        if self._compact is None:  # only the columns some candidate uses: a product's cost follows its width
            self._compact = self.rows[:, np.unique(self.rows.indices)]
        head = self._compact[order]
        return np.clip(dense(head @ head.T), 0.0, 1.0)

    def folded(self, i: int) -> tuple[str, str]:
        found = self._folded[i]
        if found is None:
            paper = self.papers[i]
            found = self._folded[i] = (title_key(paper.title), title_key(paper.abstract))
        return found

    def phrase(self, term: str, i: int) -> tuple[bool, bool]:
        """(in the title, in the abstract) for a keyword or exclude term and candidate i, memoised.

        phrase_in() folds the term and compiles its pattern on every call; here that happens once per term,
        and a plain substring test (which a whole-word match implies) rules out most papers before the regex.
        """
        found = self._phrases.get((term, i))
        if found is None:
            matcher = self._matchers.get(term)
            if matcher is None:
                needle = title_key(term)
                pattern = _whole_words(needle) if needle else None
                matcher = self._matchers[term] = (needle, pattern)
            needle, pattern = matcher
            title, abstract = self.folded(i)
            found = self._phrases[(term, i)] = (
                pattern is not None and needle in title and pattern.search(title) is not None,
                pattern is not None and needle in abstract and pattern.search(abstract) is not None,
            )
        return found

    def exclusions(self, terms: Sequence[str]) -> None:
        """profile.exclusion_factors() one term at a time: each new term's factor per candidate, computed once
        (its word vector for the whole chunk's new terms in one transform, its phrase checks over the candidates)."""
        new = sorted({t for t in terms if t not in self._factors})
        if not new:
            return
        vectors = normalize(sparse.csr_matrix(self.model.full.transform(new), dtype=np.float32))
        similarity = np.clip(dense(self.words @ vectors.T), 0.0, 1.0)  # candidates x new terms
        folded = [self.folded(i) for i in range(len(self.papers))]
        for j, term in enumerate(new):
            factor = 1.0 - similarity[:, j]  # related wording without the phrase itself: pushed down
            needle = title_key(term)
            if needle:
                pattern = _whole_words(needle)
                for i, (title, abstract) in enumerate(folded):
                    # A substring test first: a whole-word match implies it, and it rules out most papers.
                    if needle in title and pattern.search(title):
                        factor[i] = 0.0
                    elif needle in abstract and pattern.search(abstract):
                        factor[i] = EXCLUDED_IN_ABSTRACT
            self._factors[term] = factor

    def exclusion(self, term: str) -> np.ndarray:
        self.exclusions([term])
        return self._factors[term]

    def quotable(self, i: int) -> list[bool]:
        """explain.quotable() of candidate i's sentences, worked out once per paper."""
        found = self._quotable.get(i)
        if found is None:
            found = self._quotable[i] = quotable(self.papers[i].abstract, self._sentences[i][0])
        return found

    def sentence_rows(self, picked: Sequence[int]) -> list[tuple[list[str], sparse.csr_matrix]]:
        """The abstract sentences of candidates `picked` and their word vectors, each paper encoded once, when it is
        first picked: only picks are explained, and a big day has hundreds of thousands of candidates."""
        new = [i for i in dict.fromkeys(picked) if i not in self._sentences]
        if new:
            split = [sentences(self.papers[i].abstract) for i in new]
            flat = [text for parts in split for text in parts]
            width = len(self.model.full.vocabulary_)
            matrix = (
                normalize(sparse.csr_matrix(self.model.full.transform(flat), dtype=np.float32))
                if flat
                else sparse.csr_matrix((0, width), dtype=np.float32)
            )
            start = 0
            for i, parts in zip(new, split, strict=True):
                self._sentences[i] = (parts, matrix[start : start + len(parts)])
                start += len(parts)
        return [self._sentences[i] for i in picked]


# Up to this many candidates, MMR's similarities come from one candidates x candidates product (float32: 36 MB at
# the limit); beyond, each subscriber's head is multiplied on its own.
GRAM_LIMIT = 3000

# A chunk's dense score matrices hold about this many cells (subscribers x candidates; a few float64 matrices
# of it): a big day of 200,000 candidates is ranked 20 subscribers at a time, within a few hundred MB.
CHUNK_CELLS = 4_000_000


def rank_many(
    model: RankModel,
    candidates: Sequence[Paper],
    requests: Sequence[RankRequest],
    *,
    explain: bool = True,
    chunk: int = CHUNK,
) -> list[RankResult]:
    """For each request, what `rank(model, candidates, request.interests, liked=..., ...)` returns over the
    candidates minus request.skip_ids, or the RankError it raises (an empty profile) for that request alone."""
    results: list[RankResult] = [[] for _ in requests]
    if not requests:
        return results
    shared = _Candidates(model, candidates) if candidates else None
    chunk = max(1, min(chunk, CHUNK_CELLS // max(1, len(candidates))))
    for start in range(0, len(requests), chunk):
        part = requests[start : start + chunk]
        for offset, result in enumerate(_rank_chunk(model, shared, part, explain)):
            results[start + offset] = result
    return results


def rank(
    model: RankModel,
    candidates: Sequence[Paper],
    interests: Interests,
    *,
    liked: Sequence[Paper] = (),
    disliked: Sequence[Paper] = (),
    max_papers: int = 10,
    min_score: float = 0.0,
    diversity: float = 0.0,
    explain_picks: bool = True,
) -> list[Scored]:
    """One subscriber's picks: at most max_papers, none below min_score (nor at 0), best first (diversified by MMR
    when diversity > 0), each with its explanation. Candidates that are themselves liked or disliked are left out:
    the reader knows them. Raises RankError when the profile has neither keywords nor liked papers.
    This is rank_many for one request: there is one ranking engine."""
    request = RankRequest(interests, liked, disliked, max_papers, min_score, diversity)
    result = rank_many(model, candidates, [request], explain=explain_picks)[0]
    if isinstance(result, RankError):
        raise result
    return result


def _rank_chunk(
    model: RankModel, shared: _Candidates | None, requests: Sequence[RankRequest], explain: bool
) -> list[RankResult]:
    results: list[RankResult] = [[] for _ in requests]
    live: list[int] = []
    for s, request in enumerate(requests):
        interests = request.interests
        if not interests.keywords and not request.liked and not interests.authors and not interests.categories:
            results[s] = RankError(_EMPTY_PROFILE)
        else:
            live.append(s)
    if shared is None or not live:
        return results
    requests = [requests[s] for s in live]
    n = len(shared.papers)
    profiles = _Profiles.of(requests)
    liked_groups = profiles.liked_groups
    vectors, liked_rows = _profile_vectors(model, profiles)

    # Who may get what: rank() leaves a subscriber's liked and disliked papers out of the pool; send leaves
    # out what was already sent. Masked to 0 here, which is equivalent (see the module docstring).
    masked = np.zeros((len(requests), n), dtype=bool)
    for s, request in enumerate(requests):
        for key in {paper_key(p) for p in (*request.liked, *request.disliked)}:
            masked[s, shared.by_key.get(key, [])] = True
        for paper_id in request.skip_ids:
            masked[s, shared.by_id.get(paper_id, [])] = True
        if request.interests.exclude_authors:  # "never from this author"
            masked[s] |= shared.by_authors(request.interests.exclude_authors)
    pool = n - masked.sum(axis=1)

    raw = dense(vectors @ shared.rows_t)  # profiles x candidates, unclipped
    base = np.clip(raw, 0.0, 1.0)
    base[masked] = 0.0
    base = _expanded_relevance(vectors, raw, base, shared, pool)

    if liked_rows is not None:
        liked_similarity = dense(liked_rows @ shared.rows_t)  # distinct liked papers x candidates
        nearest_cos = np.clip(liked_similarity, 0.0, 1.0)
        for s, group in enumerate(liked_groups):
            if group:
                base[s] = np.maximum(base[s], nearest_cos[group].max(axis=0) ** NEAR_POWER)
    else:
        liked_similarity = None

    liked_meaning = None
    if shared.meaning is not None and model.vectors is not None:
        meaning, liked_meaning = _semantic_profiles(model.vectors, profiles)
        semantic = np.clip((meaning @ shared.meaning.T - SEMANTIC_FLOOR) / (1.0 - SEMANTIC_FLOOR), 0.0, 1.0)
        base = (1.0 - SEMANTIC_WEIGHT) * base + SEMANTIC_WEIGHT * semantic
        base[masked] = 0.0
        base = shared.smoothed(base)
        if liked_meaning is not None:  # which liked paper a pick is closest to: by meaning, for the explanation
            liked_similarity = liked_meaning @ shared.meaning.T

    for s, request in enumerate(requests):
        boost = shared.boost(request.interests.authors, request.interests.categories)
        if boost is not None:
            base[s] = base[s] + (1.0 - base[s]) * boost

    shared.exclusions([t for r in requests for t in r.interests.exclude])
    for s, request in enumerate(requests):
        factors = np.ones(n)
        for term in request.interests.exclude:
            factors *= shared.exclusion(term)  # same order of products as exclusion_factors()
        if request.interests.exclude:
            base[s] *= factors
    scores = np.clip(base, 0.0, 1.0)
    scores[masked] = 0.0

    picks = [_picks(shared, scores[s], request) for s, request in enumerate(requests)]
    whys = (
        _explanations(model, shared, requests, vectors, picks, liked_similarity, liked_groups)
        if explain
        else [[""] * len(p) for p in picks]
    )
    for s, chosen, why in zip(range(len(requests)), picks, whys, strict=True):
        results[live[s]] = [Scored(shared.papers[i], float(scores[s, i]), w) for i, w in zip(chosen, why, strict=True)]
    return results


def _neighbour_graph(meaning: np.ndarray, count: int) -> sparse.csr_matrix:
    """(n x n) matrix whose row i averages candidate i's `count` nearest other candidates (by cosine, ties by index),
    built a block of rows at a time."""
    n = meaning.shape[0]
    block = max(1, 4_000_000 // n)
    columns = np.zeros((n, count), dtype=np.int64)
    for start in range(0, n, block):
        similarity = meaning[start : start + block] @ meaning.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, rows + start] = -np.inf  # not its own neighbour
        part = np.argpartition(-similarity, count - 1, axis=1)[:, :count]
        columns[start : start + block] = part
    data = np.full(n * count, 1.0 / count, dtype=np.float64)
    return sparse.csr_matrix((data, columns.ravel(), np.arange(0, n * count + 1, count)), shape=(n, n))


@dataclass(frozen=True)
class _Profiles:
    """A chunk's profiles taken apart once: the distinct keywords, liked and disliked papers (in order of first
    appearance) and, per request, the indexes of its own among them (its order, repeats kept)."""

    keywords: list[str]
    keyword_groups: list[list[int]]
    liked: list[Paper]
    liked_groups: list[list[int]]
    disliked: list[Paper]
    disliked_groups: list[list[int]]

    @classmethod
    def of(cls, requests: Sequence[RankRequest]) -> _Profiles:
        keywords, liked, disliked = _Rows(), _Rows(), _Rows()
        keyword_groups = [[keywords.add(k, k) for k in r.interests.keywords] for r in requests]
        liked_groups = [[liked.add(_paper_identity(p), p) for p in r.liked] for r in requests]
        disliked_groups = [[disliked.add(_paper_identity(p), p) for p in r.disliked] for r in requests]
        return cls(
            [str(k) for k in keywords.items],
            keyword_groups,
            [p for p in liked.items if isinstance(p, Paper)],
            liked_groups,
            [p for p in disliked.items if isinstance(p, Paper)],
            disliked_groups,
        )

    def combine(self, keyword_rows: Any, liked_rows: Any, disliked_rows: Any, zeros: Any) -> Any:
        """The Rocchio mix of each request, in any space (sparse TF-IDF rows or dense sentence vectors): the
        normalised mean of its keywords' rows, plus that of its liked papers, minus half that of its disliked
        ones, normalised. A `*_rows` is None when there is nothing of that kind in the chunk; `zeros` is an
        all-zero (requests x width) matrix of the space's kind."""
        vector = zeros
        for groups, rows, weight in (
            (self.keyword_groups, keyword_rows, 1.0),
            (self.liked_groups, liked_rows, 1.0),
            (self.disliked_groups, disliked_rows, -DISLIKE_WEIGHT),
        ):
            if rows is not None:
                vector = vector + weight * normalize(_selection(groups, rows.shape[0]) @ rows)
        return normalize(vector)


def _semantic_profiles(vectors: PaperVectors, profiles: _Profiles) -> tuple[np.ndarray, np.ndarray | None]:
    """Each request's profile in embedding space (the same Rocchio mix as its TF-IDF vector), and the distinct
    liked papers' vectors (rows in `profiles.liked` order) or None when nobody liked anything."""
    liked = vectors.papers(profiles.liked) if profiles.liked else None
    meaning = profiles.combine(
        vectors.queries(profiles.keywords) if profiles.keywords else None,
        liked,
        vectors.papers(profiles.disliked) if profiles.disliked else None,
        np.zeros((len(profiles.liked_groups), vectors.width), dtype=np.float32),
    )
    return np.asarray(meaning, dtype=np.float32), liked


def _profile_vectors(model: RankModel, profiles: _Profiles) -> tuple[sparse.csr_matrix, sparse.csr_matrix | None]:
    """The requests' TF-IDF+LSA profile vectors, stacked; plus the distinct liked papers' rows."""
    queries = None
    if profiles.keywords:
        texts = profiles.keywords
        # model.query() for many keywords at once: every step of the encoding works row by row.
        queries = model._join(model.full.transform(texts), model.title.transform(texts))
    liked = model.rows(profiles.liked) if profiles.liked else None
    disliked = model.rows(profiles.disliked) if profiles.disliked else None
    zeros = sparse.csr_matrix((len(profiles.liked_groups), model._width()), dtype=np.float32)
    vector = profiles.combine(queries, liked, disliked, zeros)
    return sparse.csr_matrix(vector, dtype=np.float32), liked


def _expanded_relevance(
    vectors: sparse.csr_matrix, raw: np.ndarray, base: np.ndarray, shared: _Candidates, pool: np.ndarray
) -> np.ndarray:
    """profile.expanded() then relevance() for every row of `base` (masked, clipped `raw`), without a second
    profile matrix: with c the mean of the top rows, p' = (p + w c) / |p + w c| and
    p'.r = (p.r + w mean_top(G[top, r])) / sqrt(|p|^2 + 2w p.c + w^2 |c|^2), where every term is already known."""
    rows, n = base.shape
    if n <= PRF_TOP:  # the expansion needs more candidates than it takes
        return base
    top = np.argpartition(-base, PRF_TOP - 1, axis=1)[:, :PRF_TOP]
    values = np.take_along_axis(base, top, axis=1)
    threshold = values.min(axis=1)
    # argpartition breaks ties at the threshold arbitrarily, rank() by lowest index: redo the rare rows where
    # a positive tie straddles the cut.
    ties = (threshold > 0) & ((base == threshold[:, None]).sum(axis=1) > (values == threshold[:, None]).sum(axis=1))
    for s in np.flatnonzero(ties):
        top[s] = np.lexsort((np.arange(n), -base[s]))[:PRF_TOP]
        values[s] = base[s, top[s]]
    chosen = values > 0
    counts = chosen.sum(axis=1)
    expand = (counts > 0) & (pool > PRF_TOP)
    if not expand.any():
        return base
    weights = np.where(chosen & expand[:, None], 1.0 / np.maximum(counts, 1)[:, None], 0.0)
    select = sparse.csr_matrix(
        (weights.ravel(), top.ravel(), np.arange(0, rows * PRF_TOP + 1, PRF_TOP)), shape=(rows, n)
    )
    select.eliminate_zeros()
    # c.r for every candidate r, as (select R) R^T: linear in the candidates (no pairwise matrix).
    centroid_dot = dense((select @ shared.rows) @ shared.rows_t)
    p_dot_c = np.asarray(select.multiply(raw).sum(axis=1)).ravel()
    c_dot_c = np.asarray(select.multiply(centroid_dot).sum(axis=1)).ravel()
    p_dot_p = np.asarray(vectors.multiply(vectors).sum(axis=1), dtype=np.float64).ravel()
    norm = np.sqrt(np.maximum(p_dot_p + 2 * PRF_WEIGHT * p_dot_c + PRF_WEIGHT**2 * c_dot_c, 0.0))
    moved = expand & (norm > 0)
    result = base.copy()
    result[moved] = np.clip((raw[moved] + PRF_WEIGHT * centroid_dot[moved]) / norm[moved, None], 0.0, 1.0)
    return result


def _picks(shared: _Candidates, scores: np.ndarray, request: RankRequest) -> list[int]:
    """rank()'s order for one subscriber: best first (ties by key), above min_score, the head diversified."""
    head = max(MMR_POOL, 5 * request.max_papers)
    valid = (scores > 0) & (scores >= request.min_score)
    if not valid.any():
        return []
    values = np.where(valid, scores, -1.0)
    if int(valid.sum()) > head:
        part = np.argpartition(-values, head - 1)[:head]
        # Everything tied with the last of the head comes along, so the key decides ties as rank() does.
        index = np.flatnonzero(values >= values[part].min())
    else:
        index = np.flatnonzero(valid)
    order = index[np.lexsort((shared.key_rank[index], -scores[index]))][:head]
    if request.diversity <= 0:
        return [int(i) for i in order[: request.max_papers]]
    similarity = shared.similarity(order)
    return [
        int(order[p])
        for p in mmr_order(scores[order], None, request.max_papers, request.diversity, similarity=similarity)
    ]


@trace.traced("explanations")
def _explanations(
    model: RankModel,
    shared: _Candidates,
    requests: Sequence[RankRequest],
    vectors: sparse.csr_matrix,
    picks: Sequence[Sequence[int]],
    liked_similarity: np.ndarray | None,
    liked_groups: Sequence[Sequence[int]],
) -> list[list[str]]:
    """Every request's explanations: the facts of each pick (authors, keywords found, the keyword closest in meaning,
    the nearest liked paper, categories, the best sentence the teaser does not show) turned into lines by
    why_lines, which varies them across one digest. The best sentences come from one product per chunk."""
    picked = sorted({i for chosen in picks for i in chosen})
    # The sentences of every paper someone in the chunk gets, against every profile's word block.
    encoded = shared.sentence_rows(picked)
    split = {i: parts for i, (parts, _) in zip(picked, encoded, strict=True)}
    where: dict[int, int] = {}
    offset = 0
    for i, (parts, _) in zip(picked, encoded, strict=True):
        where[i] = offset
        offset += len(parts)
    width = len(model.full.vocabulary_)
    matrix = sparse.vstack([rows for _, rows in encoded], format="csr") if encoded else sparse.csr_matrix((0, width))
    words = model.word_block(vectors)
    similarity = (matrix @ words.T).toarray() if offset else np.zeros((0, len(requests)), dtype=np.float32)
    closeness = _KeywordCloseness(model, shared, requests, picked)
    threshold = CONCEPT_MEANING if shared.meaning is not None else CONCEPT_WORDS
    result: list[list[str]] = []
    for s, request in enumerate(requests):
        interests = request.interests
        keywords = interests.keywords
        wanted = [k for k in (name_key(a) for a in interests.authors) if k is not None]
        facts: list[Facts] = []
        for i in picks[s]:
            paper = shared.papers[i]
            parts = split[i]
            sentence = None
            if parts:
                column = similarity[where[i] : where[i] + len(parts), s]
                allowed = shared.quotable(i)
                scores = np.where(allowed, column, -1.0)
                best = int(np.argmax(scores))  # the first maximum: deterministic
                sentence = parts[best] if scores[best] > 0 else None
            in_title = tuple(k for k in keywords if shared.phrase(k, i)[0])
            in_abstract = tuple(k for k in keywords if k not in in_title and shared.phrase(k, i)[1])
            concept = None
            if keywords and not in_title and not in_abstract:
                keyword, how_close = closeness.closest(keywords, i)
                if how_close >= threshold:
                    concept = keyword
            nearest = None
            if request.liked and liked_similarity is not None and liked_groups[s]:
                column = liked_similarity[liked_groups[s], i]
                closest = int(np.argmax(column))
                if column[closest] >= (LIKED_MEANING if shared.meaning is not None else LIKED_WORDS):
                    nearest = request.liked[closest].title
            facts.append(
                Facts(
                    authors=tuple(matching_authors(wanted, paper.authors)) if wanted else (),
                    in_title=in_title,
                    in_abstract=in_abstract,
                    concept=concept,
                    liked=nearest,
                    categories=tuple(matching_categories(interests.categories, paper.categories))
                    if interests.categories
                    else (),
                    sentence=sentence,
                )
            )
        result.append(why_lines(facts))
    return result


class _KeywordCloseness:
    """How close each keyword of a chunk is to each paper picked in it (keywords x picks, one product per chunk):
    by meaning with embeddings, else in the TF-IDF model's space (words and concepts)."""

    def __init__(self, model: RankModel, shared: _Candidates, requests: Sequence[RankRequest], picked: list[int]):
        self.keywords = {k: n for n, k in enumerate(dict.fromkeys(k for r in requests for k in r.interests.keywords))}
        self.picks = {i: n for n, i in enumerate(picked)}
        texts = list(self.keywords)
        if not texts or not picked:
            self.matrix = np.zeros((len(texts), len(picked)))
        elif shared.meaning is not None and model.vectors is not None:
            self.matrix = model.vectors.queries(texts) @ shared.meaning[picked].T
        else:
            queries = model._join(model.full.transform(texts), model.title.transform(texts))
            self.matrix = dense(queries @ shared.rows[picked].T)

    def closest(self, keywords: Sequence[str], pick: int) -> tuple[str, float]:
        column = self.matrix[[self.keywords[k] for k in keywords], self.picks[pick]]
        best = int(np.argmax(column))
        return keywords[best], float(column[best])
