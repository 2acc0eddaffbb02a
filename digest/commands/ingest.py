"""digest ingest, digest papers."""

from __future__ import annotations

import click

from digest.cli import App, echo_json


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_obj
def ingest(app: App, sources: tuple[str, ...], as_json: bool) -> None:
    """Ingest digest files, folders or URLs (default: the inbox and [sources] urls).

    Formats are detected from content: daily-papers text digests, RSS 2.0 / Atom feeds (arXiv listings
    and API results included) and JSON paper lists. Each paper is stored once; a file already ingested
    is recognised by its content hash. Papers without a link are then looked up on arXiv by title
    ([enrich]; DIGEST_ENRICH=off skips it). Exit status 1 when anything was rejected.
    """
    from digest.service import ingest as run_ingest  # here: `digest papers` need not load the ranking model

    with app.store() as store:
        report = run_ingest(store, app.config, list(sources) or None)
        total = store.count_papers()
    if as_json:
        echo_json(report.as_json())
    else:
        click.echo(
            f"{report.files} file(s): {report.new} new, {report.updated} updated, "
            f"{report.duplicates} duplicate(s); {total} papers in the store"
        )
        if report.enriched or report.not_on_arxiv or report.lookups_pending:
            left = f", {report.lookups_pending} left for the next ingest" if report.lookups_pending else ""
            click.echo(f"arXiv: {report.enriched} paper(s) enriched, {report.not_on_arxiv} not on arXiv{left}")
    for rejection in report.rejected:
        click.echo(f"rejected: {rejection.error}", err=True)
    for notice in report.notices:  # the ingest itself went well: said, but not an error
        click.echo(f"notice: {notice}", err=True)
    if report.rejected:
        raise SystemExit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
@click.pass_obj
def papers(app: App, as_json: bool, limit: int | None) -> None:
    """List the stored papers, newest first."""
    with app.store() as store:
        stored = store.list_papers(limit)
    if as_json:
        echo_json(
            [
                {"id": p.id, "title": p.title, "url": p.url, "first_seen": p.first_seen, "sources": list(p.sources)}
                for p in stored
            ]
        )
        return
    for paper in stored:
        click.echo(f"{paper.id}\t{(paper.first_seen or '')[:16]}\t{paper.title}")
    click.echo(f"{len(stored)} paper(s)", err=True)


COMMANDS = [ingest, papers]
