"""digest feeds."""

from __future__ import annotations

from pathlib import Path

import click

from digest.atom import write_feeds
from digest.cli import App, echo_json
from digest.clock import utc_now


@click.command()
@click.argument("subscribers", nargs=-1)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the feeds (default: [paths] feeds).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the paths written as a JSON list.")
@click.pass_obj
def feeds(app: App, subscribers: tuple[str, ...], output_dir: Path | None, as_json: bool) -> None:
    """Write an Atom feed per subscriber (DIR/<id>.xml) and the shared DIR/all.xml.

    A subscriber's feed holds the papers of their last [schedule] feeds_recent_digests digests, newest
    first; all.xml the latest 500 papers ingested. With SUBSCRIBER names, only theirs (and all.xml).
    Files are replaced atomically; running it twice writes the same feeds.
    """
    loaded = app.subscribers()
    profiles = [loaded.get(name) for name in dict.fromkeys(subscribers)] if subscribers else list(loaded.profiles)
    target = output_dir or app.config.paths.feeds
    with app.store() as store:
        written = write_feeds(store, app.config, profiles, target, now=utc_now())
    if as_json:
        echo_json([str(path) for path in written])
    else:
        for path in written:
            click.echo(str(path))


COMMANDS = [feeds]
