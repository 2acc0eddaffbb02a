"""Render time per email and the size of the demo email.

    .venv/bin/python benchmarks/render.py [--renders 200] [--papers 10]

Prints the median time to render one 10-paper digest (subject + text part + HTML part with CSS inlined, the
work `digest send` does per subscriber, with the environment made once), the Markdown subscriber's median,
and the size of the demo HTML email (the 5-paper sample, as sent).
"""

from __future__ import annotations

import argparse
import statistics
import time

from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan

from digest.render import make_environment, render_email


def median_ms(renders: int, papers: int, format: str) -> float:
    env = make_environment(None)
    plan = sample_plan(papers, format=format)  # type: ignore[arg-type]
    render_email(env, plan, now=SAMPLE_NOW, links=SAMPLE_LINKS)  # warm-up: first-use costs are not per email
    times = []
    for _ in range(renders):
        start = time.perf_counter()
        render_email(env, plan, now=SAMPLE_NOW, links=SAMPLE_LINKS)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--papers", type=int, default=10)
    args = parser.parse_args()
    start = time.perf_counter()
    make_environment(None)
    setup = (time.perf_counter() - start) * 1000
    html_ms = median_ms(args.renders, args.papers, "html")
    markdown_ms = median_ms(args.renders, args.papers, "markdown")
    demo = render_email(make_environment(None), sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    ten = render_email(make_environment(None), sample_plan(10), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    print(f"environment setup (once per process): {setup:.1f} ms")
    print(f"median render, {args.papers}-paper digest, html subscriber (subject+text+inlined HTML): {html_ms:.2f} ms")
    print(f"median render, {args.papers}-paper digest, markdown subscriber: {markdown_ms:.2f} ms")
    print(f"10,000 html emails at that median: {html_ms * 10:.1f} s")
    print(f"demo HTML email (5 papers): {len(demo.html.encode('utf-8')) / 1024:.1f} KB")
    print(f"10-paper HTML email: {len(ten.html.encode('utf-8')) / 1024:.1f} KB")


if __name__ == "__main__":
    main()
