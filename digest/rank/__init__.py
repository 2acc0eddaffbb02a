"""Ranking: a pure function of (candidates, profiles, feedback) -> scored, ordered, explained picks.

No I/O here. digest.rank.model is the TF-IDF + LSA model (fitted once, reused for every subscriber);
digest.rank.embeddings the optional sentence-embedding model beside it; digest.rank.engine scores one subscriber
or ten thousand with the same few matrix products, diversifies with maximal marginal relevance and explains each
pick (wording in digest.rank.explain).
"""

from __future__ import annotations

from digest.rank.engine import MMR_POOL, RankRequest, RankResult, Scored, mmr_order, paper_key, rank, rank_many
from digest.rank.model import RankModel, build_model

__all__ = [
    "MMR_POOL",
    "RankModel",
    "RankRequest",
    "RankResult",
    "Scored",
    "build_model",
    "mmr_order",
    "paper_key",
    "rank",
    "rank_many",
]
