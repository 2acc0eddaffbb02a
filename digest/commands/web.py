"""digest serve, digest token."""

from __future__ import annotations

import click

from digest.cli import App
from digest.links import Links
from digest.tokens import server_secret, settings_key
from digest.unsubscribes import apply_pending_unsubscribes


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default: [web] port, 8080).")
@click.pass_obj
def serve(app: App, host: str | None, port: int | None) -> None:
    """Serve feeds, unsubscribe, feedback, settings and sign-up pages over HTTP (Starlette on uvicorn).

    Endpoints: GET /feeds/<id>.xml?token=..., GET and POST /unsubscribe/<token>,
    GET and POST /feedback/<token>/<paper>/like|dislike, GET and POST /settings/<settings key>,
    GET and POST /subscribe and /confirm/<code> (with [web] signup = true), GET /healthz.
    GET never changes anything (it shows a button; the button POSTs), and every form that changes a profile
    carries a form token and must come from this site. Put it behind a TLS reverse proxy and set
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
    "--rotate",
    is_flag=True,
    help="Replace the token: old feed, unsubscribe, feedback and settings links stop working.",
)
@click.pass_obj
def token(app: App, subscriber: str, rotate: bool) -> None:
    """Print SUBSCRIBER's secret token (made on first use) and their feed and settings URLs."""
    profile = app.subscribers(report=False).get(subscriber)
    with app.store() as store:
        if rotate:  # a pending unsubscribe may be known only by the old token's hash
            apply_pending_unsubscribes(store, app.config)
        secret = store.token(profile.id, rotate=rotate)
        key = settings_key(server_secret(store) or b"", secret)
    click.echo(secret)
    links = Links(app.config.web.base_url, secret, profile.id, key)
    click.echo(links.feed() or f"/feeds/{profile.id}.xml?token={secret} (set [web] base_url for the full URL)")
    click.echo(links.settings() or f"/settings/{key} (set [web] base_url for the full URL)")


COMMANDS = [serve, token]
