"""digest feeds, digest serve, digest token, digest resume."""

from __future__ import annotations

from pathlib import Path

import click

from digest.atom import write_feeds
from digest.cli import App, echo_json
from digest.clock import utc_now
from digest.links import Links
from digest.unsubscribes import apply_pending_unsubscribes


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


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: [web] port, 8080).")
@click.pass_obj
def serve(app: App, host: str | None, port: int | None) -> None:
    """Serve feeds, one-click unsubscribe and feedback links over HTTP (Starlette on uvicorn).

    Endpoints: GET /feeds/<id>.xml?token=..., GET and POST /unsubscribe/<token>,
    GET and POST /feedback/<token>/<paper>/like|dislike (GET shows a button, POST records),
    GET /healthz. Put it behind a TLS reverse proxy and set
    [web] base_url to the public URL so that emails link to it. Tokens are never written to the log.
    """
    from digest.web.app import serve as run_server

    config = app.config
    host = host or config.web.host
    port = port or config.web.port
    click.echo(
        f"serving on http://{host}:{port} (public URL: {config.web.base_url or 'unset: set [web] base_url'})", err=True
    )
    run_server(config, host, port)


@click.command()
@click.argument("subscriber")
@click.option(
    "--rotate", is_flag=True, help="Replace the token: old feed, unsubscribe and feedback links stop working."
)
@click.pass_obj
def token(app: App, subscriber: str, rotate: bool) -> None:
    """Print SUBSCRIBER's secret token (made on first use) and their feed URL."""
    profile = app.subscribers(report=False).get(subscriber)
    with app.store() as store:
        if rotate:  # a pending unsubscribe may be known only by the old token's hash
            apply_pending_unsubscribes(store, app.config)
        secret = store.token(profile.id, rotate=rotate)
    click.echo(secret)
    feed_url = Links(app.config.web.base_url, secret, profile.id).feed()
    click.echo(feed_url or f"/feeds/{profile.id}.xml?token={secret} (set [web] base_url for the full URL)")


@click.command()
@click.argument("subscriber")
@click.pass_obj
def resume(app: App, subscriber: str) -> None:
    """Resume SUBSCRIBER's digest after they unsubscribed (the web link pauses them; this undoes it)."""
    profile = app.subscribers(report=False).get(subscriber)
    with app.store() as store:
        apply_pending_unsubscribes(store, app.config)  # the resume comes after any unsubscribe it answers
        changed = store.set_paused(profile.id, False, utc_now())
    click.echo(f"{profile.id}: resumed" if changed else f"{profile.id}: was not paused; nothing to do")


COMMANDS = [feeds, serve, token, resume]
