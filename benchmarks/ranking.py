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
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from keyword_profiles import KEYWORDS  # noqa: E402

from digest.paper import Paper  # noqa: E402
from digest.rank import build_model, rank  # noqa: E402
from digest.rank.embeddings import (  # noqa: E402
    EmbeddingSettings,
    PaperVectors,
    load_embedder,
    unavailable_reason,
    vector_digest,
)
from digest.subscribers import Interests  # noqa: E402

K = 10
# (seed indexes, or a keyword profile's keywords; candidate indexes) -> candidates, best first
Scorer = Callable[[Any, list[int]], list[int]]


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


def evaluate(
    records: Sequence[dict],
    draws: Sequence[Draw],
    scorer: Scorer,
    keywords: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Liked-paper profiles (the draw's 3 seeds), or keyword profiles (keywords[category]) on the same pools."""
    ndcgs, precisions, times = [], [], []
    for draw in draws:
        start = time.perf_counter()
        ranked = scorer(draw.seeds if keywords is None else keywords[draw.category], draw.candidates)
        times.append((time.perf_counter() - start) * 1000)
        relevance = [int(draw.category in records[i]["categories"]) for i in ranked[:K]]
        total = sum(draw.category in records[i]["categories"] for i in draw.candidates)
        ndcgs.append(ndcg_at_k(relevance, total))
        precisions.append(sum(relevance) / K)
    return {
        "ndcg@10": round(statistics.fmean(ndcgs), 4),
        "p@10": round(statistics.fmean(precisions), 4),
        "ms_per_profile": round(statistics.median(times), 2),
        "per_profile": ndcgs,
    }


def by_score(candidates: list[int], scores: np.ndarray) -> list[int]:
    order = np.lexsort((np.arange(len(candidates)), -np.asarray(scores, dtype=np.float64)))
    return [candidates[i] for i in order]


# ---- ours: the production code path ------------------------------------------------------------------------

CACHE = Path(__file__).resolve().parent / ".cache"


def paper_vectors(papers: Sequence[Paper], data: Path, setting: str) -> PaperVectors | None:
    """The production embedder ([rank] embeddings = setting) with every paper's vector, cached per data file and
    model in benchmarks/.cache/ (embedding 20,000 papers takes minutes; the cache is keyed by the model's bytes
    and each paper's text digest, so a changed file or model is embedded again)."""
    embedder = load_embedder(EmbeddingSettings(setting))
    if embedder is None:
        reason = unavailable_reason(EmbeddingSettings(setting))
        if reason:
            print(f"note: ranking without sentence embeddings: {reason}", file=sys.stderr)
        return None
    vectors = PaperVectors(embedder)
    path = CACHE / f"{data.stem}-{embedder.key}.npz"
    ids = [p.id or "" for p in papers]
    digests = np.array([vector_digest(p) for p in papers], dtype=np.uint64)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if list(cached["ids"]) == ids and np.array_equal(cached["digests"], digests):
                vectors.add(ids, digests, np.asarray(cached["vectors"], dtype=np.float32))
                return vectors
    print(f"embedding {len(papers)} papers of {data.name} (cached in {path})...", file=sys.stderr)
    matrix = vectors.papers(papers)
    CACHE.mkdir(exist_ok=True)
    np.savez(path, ids=np.array(ids), digests=digests, vectors=matrix.astype(np.float32))
    return vectors


def ours(
    records: Sequence[dict],
    diversity: float,
    *,
    vectors: PaperVectors | None,
    keywords: bool = False,
) -> Scorer:
    """Our production rank(): liked-paper profiles, or keyword-only profiles (`keywords`). The model is fitted
    once on the whole file, as production fits on the store's recent papers."""
    papers = [Paper(title=r["title"], abstract=r["abstract"], id=r["id"]) for r in records]
    model = build_model(papers, vectors=vectors)

    def scorer(profile: Any, candidates: list[int]) -> list[int]:
        if not keywords:
            interests, liked = Interests(), [papers[i] for i in profile]
        else:
            interests, liked = Interests(keywords=tuple(profile)), []
        picks = rank(
            model,
            [papers[i] for i in candidates],
            interests,
            liked=liked,
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


def tfidf_keyword_baseline(records: Sequence[dict]) -> Scorer:
    """Keyword profiles: the keywords as one query document in the same per-profile TF-IDF, cosine to it."""

    def scorer(keywords: Sequence[str], candidates: list[int]) -> list[int]:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float64)
        matrix = vectorizer.fit_transform([" ".join(keywords), *(text(records[i]) for i in candidates)]).tocsr()
        return by_score(candidates, (matrix[1:] @ matrix[0].T).toarray().ravel())

    return scorer


def bm25_keyword_baseline(records: Sequence[dict]) -> Scorer:
    """Keyword profiles: the keywords' words as the query (each once), over the pool."""

    def scorer(keywords: Sequence[str], candidates: list[int]) -> list[int]:
        index = BM25([text(records[c]) for c in candidates])
        query = list(dict.fromkeys(t for k in keywords for t in tokens(k)))
        return by_score(candidates, np.array([index.score(query, c) for c in range(len(candidates))]))

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

    def scorer(_profile: Any, candidates: list[int]) -> list[int]:
        return by_score(candidates, rng.random(len(candidates)))

    return scorer


DEFAULT_DIVERSITY = 0.3  # a profile's default (digest.subscribers)
BOOTSTRAP = 10_000


def paired(ours: Sequence[float], baseline: Sequence[float]) -> dict[str, float]:
    """Mean paired difference of per-profile nDCG@10 and its 95 % bootstrap interval (profiles resampled)."""
    differences = np.asarray(ours) - np.asarray(baseline)
    rng = np.random.default_rng(0)
    means = differences[rng.integers(0, differences.size, (BOOTSTRAP, differences.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(differences.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def run(data: Path, embeddings: str = "auto") -> dict[str, Any]:
    """Every method on liked-paper profiles and on keyword profiles, with our default against the best baseline."""
    records = load(data)
    draws = make_draws(records)
    papers = [Paper(title=r["title"], abstract=r["abstract"], id=r["id"]) for r in records]
    vectors = paper_vectors(papers, data, embeddings)
    liked_methods: dict[str, Scorer] = {
        "ours": ours(records, DEFAULT_DIVERSITY, vectors=vectors),
        "ours_diversity_0": ours(records, 0.0, vectors=vectors),
        "tfidf": tfidf_baseline(records),
        "svm": svm_baseline(records),
        "bm25": bm25_baseline(records),
        "random": random_baseline(),
    }
    keyword_methods: dict[str, Scorer] = {
        "ours": ours(records, DEFAULT_DIVERSITY, vectors=vectors, keywords=True),
        "ours_diversity_0": ours(records, 0.0, vectors=vectors, keywords=True),
        "tfidf": tfidf_keyword_baseline(records),
        "bm25": bm25_keyword_baseline(records),
        "random": random_baseline(),
    }
    result: dict[str, Any] = {"data": data.name, "embeddings": vectors is not None}
    for kind, methods, keywords in (
        ("liked", liked_methods, None),
        ("keywords", keyword_methods, KEYWORDS),
    ):
        rows = {name: evaluate(records, draws, scorer, keywords) for name, scorer in methods.items()}
        baselines = [n for n in rows if n not in ("ours", "ours_diversity_0", "random")]
        best = max(baselines, key=lambda n: rows[n]["ndcg@10"])
        result[kind] = {
            "methods": {n: {k: v for k, v in r.items() if k != "per_profile"} for n, r in rows.items()},
            "best_baseline": best,
            "ours_minus_best": paired(rows["ours"]["per_profile"], rows[best]["per_profile"]),
            "diversity_cost": paired(rows["ours"]["per_profile"], rows["ours_diversity_0"]["per_profile"]),
        }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an evaluation set (papers.jsonl, ...)")
    parser.add_argument("--embeddings", choices=("auto", "on", "off"), default="auto", help="as [rank] embeddings")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = run(args.data, args.embeddings)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{results['data']}, sentence embeddings {'on' if results['embeddings'] else 'off'}")
    for kind in ("liked", "keywords"):
        part = results[kind]
        print(f"\n{kind} profiles          nDCG@10   P@10  ms/profile")
        for name, row in part["methods"].items():
            print(f"  {name:<20} {row['ndcg@10']:>8.3f} {row['p@10']:>6.3f} {row['ms_per_profile']:>11.2f}")
        gain, cost = part["ours_minus_best"], part["diversity_cost"]
        print(
            f"  ours - {part['best_baseline']}: {gain['mean']:+.3f}"
            f" (95 % CI {gain['low']:+.3f} .. {gain['high']:+.3f});"
            f" diversity {DEFAULT_DIVERSITY} - 0: {cost['mean']:+.3f} ({cost['low']:+.3f} .. {cost['high']:+.3f})"
        )
    print(
        "\nours: production rank() at the profile default diversity (0.3); ms = median per profile to rank 500"
        " candidates (with explanations); our model is built once, the baselines fit their TF-IDF per profile"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
