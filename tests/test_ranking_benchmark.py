"""benchmarks/ranking.py's baselines are exactly those of ../shared/eval/README.md: checked on invented papers
against independent computations (per-profile TF-IDF with English stop words, BM25 over the pool)."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
from benchmark_module import load_benchmark
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

RECORDS = [
    {"title": "Graph neural networks for molecules", "abstract": "We pass messages on molecular graphs."},
    {"title": "Message passing on graphs", "abstract": "Graph networks learn from neighbours and edges."},
    {"title": "Spectral graph convolutions", "abstract": "Convolutions on graphs via the graph Laplacian."},
    {"title": "Diffusion models for images", "abstract": "Denoising diffusion generates images from noise."},
    {"title": "Graph attention for proteins", "abstract": "Attention over protein graphs predicts function."},
    {"title": "Robot grasping with tactile sensing", "abstract": "A robot learns grasping from touch."},
    {"title": "Text to speech with transformers", "abstract": "Speech synthesis from text with attention."},
    {"title": "Pooling in graph networks", "abstract": "Hierarchical pooling coarsens graphs for networks."},
]
SEEDS, CANDIDATES = [0, 1, 2], [3, 4, 5, 6, 7]


@pytest.fixture(scope="module")
def ranking() -> ModuleType:
    return load_benchmark("ranking")


def test_tfidf_baseline_is_fitted_per_profile_with_stop_words(ranking: ModuleType) -> None:
    texts = [f"{RECORDS[i]['title']} {RECORDS[i]['abstract']}" for i in (*SEEDS, *CANDIDATES)]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")
    matrix = vectorizer.fit_transform(texts)
    assert "for" not in vectorizer.vocabulary_ and "proteins" in vectorizer.vocabulary_
    centre = np.asarray(matrix[:3].mean(axis=0))
    expected = cosine_similarity(matrix[3:], centre).ravel()
    order = [CANDIDATES[i] for i in sorted(range(len(CANDIDATES)), key=lambda i: -expected[i])]
    assert ranking.tfidf_baseline(RECORDS)(SEEDS, CANDIDATES) == order
    assert order[:2] == [7, 4], "the two graph papers first"


def test_bm25_uses_the_pool_and_each_query_word_once(ranking: ModuleType) -> None:
    pool = [f"{RECORDS[i]['title']} {RECORDS[i]['abstract']}" for i in CANDIDATES]
    index = ranking.BM25(pool)
    # "graph" in 2 of the 5 pool documents: idf = ln(1 + (5 - 2 + 0.5) / (2 + 0.5)); document 4 ("Pooling in graph
    # networks ...") has it once, and its length against the pool's mean sets the norm.
    idf = math.log(1 + 3.5 / 2.5)
    length = index.lengths[4]
    norm = 1 - 0.75 + 0.75 * length / index.average
    assert index.score(["graph"], 4) == pytest.approx(idf * 1 * 2.5 / (1 + 1.5 * norm))
    assert index.score(["graph", "graph"], 4) == pytest.approx(2 * index.score(["graph"], 4))
    ranked = ranking.bm25_baseline(RECORDS)(SEEDS, CANDIDATES)
    assert ranked[:2] == [7, 4]
