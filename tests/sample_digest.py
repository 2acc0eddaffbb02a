"""A fixed, invented digest for template authors, the golden-file tests, the browser test and the benchmark.

Every paper here is made up for this file (titles, authors, abstracts): no third-party text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from digest.links import Links
from digest.paper import Paper, find_links
from digest.picks import DigestPlan, Scored
from digest.subscribers import Interests, Profile

SAMPLE_NOW = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
SAMPLE_LINKS = Links("https://digest.example.org", "tok-3f9a1c", "ada", "set-8b41d0")

_PAPERS: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...], float, str], ...] = (
    (
        "Residual Gates Keep Deep Message Passing Networks From Oversmoothing",
        ("Mira Okafor", "Jonas Lindqvist", "Priya Raman", "Tomás Ferreira", "Hana Sato"),
        "Stacking more message passing layers usually makes node features collapse to one value. We add a learned "
        "residual gate per layer that decides how much of the previous representation to keep, and show on six "
        "node classification benchmarks that 64-layer networks then match or beat shallow ones. The gate costs one "
        "extra vector per layer. Code: https://github.com/example-lab/residual-gates",
        ("cs.LG", "cs.SI"),
        0.91,
        'title mentions "message passing"; close to a paper you liked: Oversmoothing Is a Choice',
    ),
    (
        "Sparse Attention for Graphs With a Billion Edges",
        ("Lucas Meyer", "Aiko Tanaka"),
        "Graph transformers attend over every node pair, which rules out large graphs. We sample attention "
        "neighbourhoods with a locality-sensitive hash over node embeddings and keep the cost linear in the number "
        "of edges. On a web graph with 1.2 billion edges training fits on one GPU and accuracy drops by under one "
        "point against dense attention on the graphs where dense attention still fits.",
        ("cs.LG",),
        0.84,
        'abstract mentions "graph neural networks" (as graph transformers)',
    ),
    (
        "When Does Over-Squashing Hurt? A Controlled Study on Synthetic Trees",
        ("Selin Aydın", "Grace Whitfield", "Kwame Mensah"),
        "Over-squashing is blamed for many failures of graph neural networks, but its effect is hard to isolate "
        "on real data. We build synthetic tree tasks where the needed information travels a known distance "
        "through a known bottleneck, and measure accuracy as both vary. Rewiring helps only past a depth of five; "
        "below it, wider hidden layers are the cheaper fix.",
        ("cs.LG", "stat.ML"),
        0.77,
        'title and abstract mention "graph neural networks"',
    ),
    (
        "Message Passing on Simplicial Complexes Without the Boundary Matrices",
        ("Daniel Novak",),
        "Higher-order message passing usually needs boundary matrices that are expensive to build. We show that "
        "a small set of incidence lookups computed once per complex gives the same messages, cut preprocessing "
        "time by a factor of twelve and release a library. https://gitlab.com/dnovak/simplicial-lite",
        ("cs.LG", "math.AT"),
        0.69,
        'title mentions "message passing"',
    ),
    (
        "Benchmarking Link Prediction Under Temporal Splits",
        ("Olivia Brandt", "Rafael Quintero", "Min-jun Park", "Esther Adeyemi"),
        "Most link prediction benchmarks split edges at random, which leaks the future into training. Re-running "
        "fourteen published methods with splits by time changes their ranking in nine of twelve datasets; simple "
        "heuristics based on common neighbours become competitive again.",
        ("cs.LG", "cs.IR"),
        0.58,
        "close to a paper you liked: Residual Gates Keep Deep Message Passing Networks From Oversmoothing",
    ),
    (
        "Equivariant Pooling for Point Clouds and Meshes",
        ("Ines Carvalho", "Stefan Ivanov"),
        "Pooling layers in equivariant networks often break the symmetry they are meant to keep. We derive a "
        "pooling operator from clustering in an invariant feature space and prove it commutes with rotations.",
        ("cs.CV", "cs.LG"),
        0.52,
        'abstract mentions "message passing"',
    ),
    (
        "Counting Substructures With Two-Hop Aggregation",
        ("Yusuf Demir", "Chloe Martin", "Arjun Mehta"),
        "We characterise which substructure counts a two-hop aggregation scheme can express and give a simple "
        "variant that counts all cycles up to length six.",
        ("cs.LG", "cs.DM"),
        0.47,
        'title mentions "aggregation"; abstract mentions "graph neural networks"',
    ),
    (
        "Graph Neural Networks for Power Grid State Estimation",
        ("Leila Haddad", "Marcus Feld"),
        "State estimation in distribution grids runs on sparse, noisy measurements. A message passing model "
        "trained on simulated faults estimates voltages three times more accurately than weighted least squares.",
        ("eess.SY", "cs.LG"),
        0.41,
        'title mentions "graph neural networks"',
    ),
    (
        "Learning Rates for Deep Graph Networks Scale With Depth",
        ("Nora Svensson", "Ethan Cole", "Fatima Zahra", "Pavel Horák", "Lin Wei", "Omar Haddad"),
        "Tuning deep graph networks is costly because the best learning rate changes with depth. We find it "
        "falls as one over the square root of depth across four architectures and give a rule that transfers.",
        ("cs.LG",),
        0.36,
        'abstract mentions "message passing"',
    ),
    (
        "Self-Supervised Pretraining for Molecule-Free Chemistry Graphs",
        ("Bruno Rossi",),
        "We pretrain a graph encoder on reaction networks instead of molecules, and show the representations "
        "transfer to yield prediction. https://huggingface.co/example/reaction-encoder",
        ("cs.LG", "q-bio.QM"),
        0.31,
        'abstract mentions "graph neural networks"',
    ),
)


def sample_paper(index: int) -> Scored:
    title, authors, abstract, categories, score, why = _PAPERS[index % len(_PAPERS)]
    paper = Paper(
        title=title,
        abstract=abstract,
        authors=authors,
        url=f"https://arxiv.org/abs/2611.{10001 + index:05d}",
        arxiv_id=f"2611.{10001 + index:05d}",
        categories=categories,
        published="2026-11-19",
        links=tuple(find_links(abstract)),
        id=f"2611.{10001 + index:05d}",
        first_seen="2026-11-19T22:00:00Z",
    )
    return Scored(paper, score, why)


def sample_profile(format: Literal["html", "markdown"] = "html") -> Profile:
    return Profile(
        id="ada",
        name="Ada Example",
        email="ada@example.org",
        format=format,
        timezone="Europe/London",
        interests=Interests(keywords=("graph neural networks", "message passing")),
    )


def sample_plan(count: int = 5, *, format: Literal["html", "markdown"] = "html", candidates: int = 42) -> DigestPlan:
    """A digest of `count` invented papers (repeating after ten) for the subscriber 'ada'."""
    picks = tuple(sample_paper(i) for i in range(count))
    return DigestPlan(sample_profile(format), picks, candidates, SAMPLE_NOW)


def unwrapped(text: str) -> str:
    """A plain-text part with its wrapping undone (every run of whitespace one space): a wrapped title or why is
    found in it as written."""
    return " ".join(text.split())
