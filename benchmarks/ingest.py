"""Ingestion benchmark: the five real digests, and a generated 10,000-paper RSS feed, into fresh stores.

Each figure is the median wall-clock time of several runs of `ingest_sources` (read, detect, parse, store),
every run into a new temporary SQLite file. The feed is generated from a seeded vocabulary (no third-party
text), in the current arXiv listing style, and written to a temporary folder.

    python benchmarks/ingest.py [--digests DIR] [--runs 5] [--feed-runs 3] [--feed-papers 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.ingest import IngestReport, ingest_sources  # noqa: E402
from digest.store import Store  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIGESTS = REPO.parent / "shared" / "digests"
MAX_BYTES = 200_000_000

_WORDS = (
    "adaptive sparse graph latent diffusion kernel bayesian robust neural stochastic spectral causal contrastive "
    "hierarchical federated quantum tensor gradient variational attention transformer retrieval reinforcement "
    "policy reward embedding manifold token protein molecule weather vision speech language memory scaling "
    "pruning distillation calibration uncertainty benchmark dataset inference sampling optimisation convex "
    "temporal spatial multimodal equivariant symbolic program compiler cache streaming quantile sketch"
).split()
_CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "stat.ML", "cs.AI", "cs.DS", "q-bio.BM", "physics.ao-ph")
_SURNAMES = "Okafor Lindqvist Quispe Haddad Virtanen Sarraf Diallo Holm Park Baldi Lobo Amadi".split()


def generate_feed(count: int, seed: int = 0) -> str:
    """An RSS 2.0 arXiv-style listing of `count` distinct invented papers (deterministic for a seed)."""
    rng = random.Random(seed)
    items = []
    for number in range(count):
        title = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 10))).title() + f" {number}"
        abstract = " ".join(
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 20))).capitalize() + "."
            for _ in range(rng.randint(4, 8))
        )
        arxiv = f"26{number // 100000 % 100:02d}.{number % 100000:05d}"
        authors = ", ".join(f"{chr(65 + rng.randrange(26))}. {rng.choice(_SURNAMES)}" for _ in range(rng.randint(1, 5)))
        categories = "".join(f"<category>{c}</category>" for c in rng.sample(_CATEGORIES, rng.randint(1, 3)))
        items.append(
            f"<item><title>{escape(title)}</title><link>https://arxiv.org/abs/{arxiv}</link>"
            f"<description>arXiv:{arxiv}v1 Announce Type: new \nAbstract: {escape(abstract)}</description>"
            f'<guid isPermaLink="false">oai:arXiv.org:{arxiv}v1</guid>{categories}'
            f"<dc:creator>{escape(authors)}</dc:creator></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>'
        "<title>Generated benchmark listing</title><link>https://example.org/</link>"
        "<description>Invented papers for the ingest benchmark</description>\n"
        + "\n".join(items)
        + "\n</channel></rss>\n"
    )


def time_ingest(sources: list[str], workdir: Path, runs: int) -> tuple[list[float], IngestReport]:
    """Seconds per run, each into a fresh store, and the last run's report."""
    times: list[float] = []
    report = IngestReport()
    for run in range(runs):
        with Store(workdir / f"run-{run}.db") as store:
            start = time.perf_counter()
            report = ingest_sources(store, sources, max_bytes=MAX_BYTES)
            times.append(time.perf_counter() - start)
    return times, report


def _figure(name: str, times: list[float], report: IngestReport, say: Callable[[str], None]) -> dict[str, object]:
    median = statistics.median(times)
    figure: dict[str, object] = {
        "name": name,
        "runs": len(times),
        "median_s": round(median, 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "entries": report.entries,
        "new": report.new,
        "rejected": len(report.rejected),
        "entries_per_s": round(report.entries / median) if median else None,
    }
    say(
        f"{name:<28} median {median:8.3f} s  (min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)  "
        f"{report.entries} entries, {report.new} new, {len(report.rejected)} rejected, "
        f"{figure['entries_per_s']} entries/s"
    )
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digests", type=Path, default=DEFAULT_DIGESTS, help="folder of the real digests")
    parser.add_argument("--runs", type=int, default=5, help="runs of the digest ingest (median reported)")
    parser.add_argument("--feed-runs", type=int, default=3, help="runs of the generated-feed ingest")
    parser.add_argument("--feed-papers", type=int, default=10_000, help="papers in the generated feed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    say: Callable[[str], None] = (lambda _: None) if args.json else print

    figures: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        workdir = Path(tmp)
        digests = sorted(args.digests.glob("*.txt")) if args.digests.is_dir() else []
        if digests:
            times, report = time_ingest([str(p) for p in digests], workdir / "digests", args.runs)
            figures.append(_figure(f"{len(digests)} shared digests", times, report, say))
        else:
            say(f"skipped the shared digests: none found in {args.digests}")

        feed = workdir / "generated-feed.xml"
        feed.write_text(generate_feed(args.feed_papers), encoding="utf-8")
        say(f"generated feed: {args.feed_papers} papers, {feed.stat().st_size / 1e6:.1f} MB")
        times, report = time_ingest([str(feed)], workdir / "feed", args.feed_runs)
        figures.append(_figure(f"{args.feed_papers}-paper RSS feed", times, report, say))

    if args.json:
        print(json.dumps({"benchmark": "ingest", "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
