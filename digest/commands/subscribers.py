"""digest subscribers, digest resume."""

from __future__ import annotations

import click

from digest.cli import App, echo_json
from digest.clock import utc_now
from digest.subscribers import subscriber_statuses
from digest.unsubscribes import apply_pending_unsubscribes


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the subscribers as JSON.")
@click.pass_obj
def subscribers(app: App, as_json: bool) -> None:
    """List the subscribers with their state: paused, last sent, papers sent, next due.

    Next due comes from each profile's crontab and time zone. A profile that does not validate is reported
    on stderr and skipped (exit status 1).
    """
    loaded = app.subscribers()
    now = utc_now()
    with app.store() as store:
        statuses, problems = subscriber_statuses(store, loaded.profiles, now)
    for problem in problems:
        click.echo(f"warning: {problem} (skipped)", err=True)
    if as_json:
        echo_json([s.as_json() for s in statuses])
    else:
        for s in statuses:
            due = "paused" if s.paused else f"next {s.next_due:%Y-%m-%d %H:%M %Z}" if s.next_due else "-"
            last = s.last_sent[:16] if s.last_sent else "never"
            click.echo(f"{s.id}\t{s.name} <{s.email}>\t{due}\tlast sent {last}\t{s.papers_sent} paper(s) sent")
    if loaded.errors or problems:
        raise SystemExit(1)


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


COMMANDS = [subscribers, resume]
