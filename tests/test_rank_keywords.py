"""Keyword-only profiles a real reader would write, on the five real digests (459 papers), against hand labels.

tests/data/keyword_profiles.json holds, per profile, the ids (and title hashes) of the papers judged relevant by
reading their titles and abstracts. The profile's top 10 must be at least 80% relevant.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import shared_digests

from digest.ingest import ingest_sources
from digest.rank import RankModel, build_model, rank
from digest.store import Store
from digest.subscribers import Interests, Profile

LABELS = json.loads((Path(__file__).parent / "data" / "keyword_profiles.json").read_text(encoding="utf-8"))
PROFILES = LABELS["profiles"]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, RankModel]:
    files = shared_digests()
    with Store(tmp_path_factory.mktemp("real") / "digest.db") as store:
        ingest_sources(
            store, [str(f) for f in files], max_bytes=50_000_000, clock=lambda: datetime(2026, 11, 20, tzinfo=UTC)
        )
        papers = store.all_papers()
    return papers, build_model(papers)


def test_the_labels_name_papers_of_the_digests(real: tuple[list, RankModel]) -> None:
    papers, _ = real
    assert len(papers) == 459
    title_hashes = {p.id: hashlib.sha256(p.title.encode()).hexdigest()[:16] for p in papers}
    for profile in PROFILES.values():
        for label in profile["relevant"]:
            assert title_hashes.get(label["id"]) == label["title_sha256"], label["id"]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_precision_at_10(real: tuple[list, RankModel], name: str) -> None:
    papers, model = real
    spec = PROFILES[name]
    defaults = Profile.model_fields  # the production defaults of a profile: min_score, diversity
    interests = Interests(keywords=tuple(spec["keywords"]), exclude=tuple(spec.get("exclude", ())))
    picks = rank(
        model,
        papers,
        interests,
        max_papers=10,
        min_score=defaults["min_score"].default,
        diversity=defaults["diversity"].default,
    )
    relevant = {label["id"] for label in spec["relevant"]}
    hits = [s.paper.title for s in picks if s.paper.id in relevant]
    misses = [s.paper.title for s in picks if s.paper.id not in relevant]
    assert len(hits) / 10 >= 0.8, f"{name}: {len(hits)}/10 relevant; off-topic picks: {misses}"
