"""Ranking quality benchmark: our production rank() against four baselines, same draws, same run.

Protocol (/work/shared/eval/README.md): the 20 most frequent categories with >= 10 papers; for each, by
descending frequency, 5 draws from one random.Random(0): 3 papers of the category are a profile's liked
papers, 500 other papers are the candidates; relevant = the candidate's categories include the category.
nDCG@10 and P@10 are averaged over the 100 profiles; ms/profile is the median time to rank one profile's
candidates. Ours fits its model once on the whole file through the production `build_model` (the analogue of
production fitting on the store's recent papers); the baselines are exactly the README's: TF-IDF (uni+bigrams,
sublinear tf, English stop words) fitted per profile on the liked papers and the pool, cosine to the mean liked
vector; the same TF-IDF with LinearSVC(C=0.01, balanced); BM25 (k1=1.5, b=0.75) over the pool with the liked
titles as the query (each word once); random. Their ms/profile include fitting their per-profile TF-IDF.

    python benchmarks/ranking.py --data ../shared/eval/papers.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.paper import Paper  # noqa: E402
from digest.rank import build_model, rank  # noqa: E402
from digest.subscribers import Interests  # noqa: E402

K = 10
Scorer = Callable[[list[int], list[int]], list[int]]  # (seed indexes, candidate indexes) -> candidates, best first


@dataclass(frozen=True)
class Draw:
    category: str
    seeds: list[int]
    candidates: list[int]


def load(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def make_draws(records: Sequence[dict], categories: int = 20, per_category: int = 5, pool: int = 500) -> list[Draw]:
    counts = Counter(c for r in records for c in r["categories"])
    chosen = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 10][:categories]
    rng = random.Random(0)  # one generator for the whole run, in protocol order
    draws = []
    for category in chosen:
        members = [i for i, r in enumerate(records) if category in r["categories"]]
        for _ in range(per_category):
            seeds = rng.sample(members, 3)
            taken = set(seeds)
            rest = [i for i in range(len(records)) if i not in taken]
            draws.append(Draw(category, seeds, rng.sample(rest, min(pool, len(rest)))))
    return draws


def ndcg_at_k(relevance: Sequence[int], total_relevant: int) -> float:
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(relevance[:K]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(K, total_relevant)))
    return dcg / ideal if ideal else 0.0


def evaluate(records: Sequence[dict], draws: Sequence[Draw], scorer: Scorer) -> dict[str, float]:
    ndcgs, precisions, times = [], [], []
    for draw in draws:
        start = time.perf_counter()
        ranked = scorer(draw.seeds, draw.candidates)
        times.append((time.perf_counter() - start) * 1000)
        relevance = [int(draw.category in records[i]["categories"]) for i in ranked[:K]]
        total = sum(draw.category in records[i]["categories"] for i in draw.candidates)
        ndcgs.append(ndcg_at_k(relevance, total))
        precisions.append(sum(relevance) / K)
    return {
        "ndcg@10": round(statistics.fmean(ndcgs), 4),
        "p@10": round(statistics.fmean(precisions), 4),
        "ms_per_profile": round(statistics.median(times), 2),
    }


def by_score(candidates: list[int], scores: np.ndarray) -> list[int]:
    order = np.lexsort((np.arange(len(candidates)), -np.asarray(scores, dtype=np.float64)))
    return [candidates[i] for i in order]


# ---- ours: the production code path ------------------------------------------------------------------------


def ours(records: Sequence[dict], diversity: float) -> Scorer:
    papers = [Paper(title=r["title"], abstract=r["abstract"], id=r["id"]) for r in records]
    model = build_model(papers)  # fitted on the whole file, as production fits on the whole store
    interests = Interests()  # no keywords: the 3 seeds are the profile's liked papers

    def scorer(seeds: list[int], candidates: list[int]) -> list[int]:
        picks = rank(
            model,
            [papers[i] for i in candidates],
            interests,
            liked=[papers[i] for i in seeds],
            max_papers=K,
            min_score=0.0,
            diversity=diversity,
        )
        index = {papers[i].id: i for i in candidates}
        ranked = [index[s.paper.id] for s in picks]
        return ranked + [i for i in candidates if i not in set(ranked)]  # papers scoring 0 come last, unordered

    return scorer


# ---- baselines ---------------------------------------------------------------------------------------------


def text(record: dict) -> str:
    return f"{record['title']} {record['abstract']}"


def profile_tfidf(records: Sequence[dict], seeds: list[int], candidates: list[int]):  # noqa: ANN201 - sparse
    """The README's TF-IDF: uni+bigrams, sublinear tf, English stop words, fitted per profile on liked + pool.
    Rows: the liked papers, then the candidates."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float64)
    return vectorizer.fit_transform([text(records[i]) for i in (*seeds, *candidates)]).tocsr()


def tfidf_baseline(records: Sequence[dict]) -> Scorer:
    """Cosine to the mean liked vector (rows are unit length; the mean is normalised by the cosine itself)."""

    def scorer(seeds: list[int], candidates: list[int]) -> list[int]:
        matrix = profile_tfidf(records, seeds, candidates)
        centre = np.asarray(matrix[: len(seeds)].mean(axis=0)).ravel()
        norm = np.linalg.norm(centre)
        return by_score(candidates, (matrix[len(seeds) :] @ centre) / (norm or 1.0))

    return scorer


def svm_baseline(records: Sequence[dict]) -> Scorer:
    """arxiv-sanity: the same per-profile TF-IDF, LinearSVC(C=0.01, balanced), liked = positive, pool = negative."""

    def scorer(seeds: list[int], candidates: list[int]) -> list[int]:
        matrix = profile_tfidf(records, seeds, candidates)
        y = np.r_[np.ones(len(seeds)), np.zeros(len(candidates))]
        svm = LinearSVC(C=0.01, class_weight="balanced", max_iter=10_000, tol=1e-6)
        svm.fit(matrix, y)
        return by_score(candidates, svm.decision_function(matrix[len(seeds) :]))

    return scorer


_TOKEN = re.compile(r"\w\w+")


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in ENGLISH_STOP_WORDS]


class BM25:
    """Okapi BM25 (k1=1.5, b=0.75) over the title + abstract of the documents given (a profile's pool)."""

    def __init__(self, texts: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokens(t)) for t in texts]
        self.lengths = np.array([sum(d.values()) for d in self.docs], dtype=np.float64)
        self.average = float(self.lengths.mean()) if len(self.docs) else 0.0
        df = Counter(term for d in self.docs for term in d)
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def score(self, query: Sequence[str], doc: int) -> float:
        counts, norm = self.docs[doc], 1 - self.b + self.b * self.lengths[doc] / self.average
        total = 0.0
        for term in query:
            tf = counts.get(term, 0)
            if tf:
                total += self.idf[term] * tf * (self.k1 + 1) / (tf + self.k1 * norm)
        return total


def bm25_baseline(records: Sequence[dict]) -> Scorer:
    """The liked papers' titles as one query (each word once), IDF and lengths from the profile's pool."""

    def scorer(seeds: list[int], candidates: list[int]) -> list[int]:
        index = BM25([text(records[c]) for c in candidates])
        query = list(dict.fromkeys(t for i in seeds for t in tokens(records[i]["title"])))
        return by_score(candidates, np.array([index.score(query, c) for c in range(len(candidates))]))

    return scorer


def random_baseline() -> Scorer:
    rng = np.random.default_rng(1)  # its own generator: the draws' Random(0) is not disturbed

    def scorer(seeds: list[int], candidates: list[int]) -> list[int]:
        return by_score(candidates, rng.random(len(candidates)))

    return scorer


def run(data: Path) -> dict[str, dict[str, float]]:
    records = load(data)
    draws = make_draws(records)
    methods: dict[str, Scorer] = {
        "ours": ours(records, diversity=0.0),
        "ours_diversity_0.3": ours(records, diversity=0.3),
        "tfidf": tfidf_baseline(records),
        "svm": svm_baseline(records),
        "bm25": bm25_baseline(records),
        "random": random_baseline(),
    }
    return {name: evaluate(records, draws, scorer) for name, scorer in methods.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the evaluation set (papers.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(args.data)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'method':<20} {'nDCG@10':>8} {'P@10':>6} {'ms/profile':>11}")
    for name, row in results.items():
        print(f"{name:<20} {row['ndcg@10']:>8.3f} {row['p@10']:>6.3f} {row['ms_per_profile']:>11.2f}")
    print(
        "ours: diversity 0 (pure relevance); ours_diversity_0.3: MMR at the profile default (diversity = 0.3);"
        " ms = median per profile to rank 500 candidates (with explanations); our model is built once, the"
        " baselines fit their TF-IDF per profile"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
