"""digest subscribers, digest profile, digest resume."""

from __future__ import annotations

import click

from digest.cli import App, echo_json
from digest.clock import utc_now
from digest.errors import DigestError
from digest.profile_book import ProfileBook
from digest.subscribers import id_problem, subscriber_statuses
from digest.unsubscribes import apply_pending_unsubscribes


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the subscribers as JSON.")
@click.option(
    "--remove-missing",
    is_flag=True,
    help="Remove the profiles whose files left the subscribers folder, even when that is most of them (a sync"
    " otherwise holds such a mass removal back, as an unmounted or half-copied folder looks the same).",
)
@click.option(
    "--adopt-folder",
    is_flag=True,
    help="Make this host's subscribers folder the one the store's profiles are synced with (when the previous"
    " folder is gone); its files then win where they differ.",
)
@click.pass_obj
def subscribers(app: App, as_json: bool, remove_missing: bool, adopt_folder: bool) -> None:
    """List the subscribers with their state: paused, last sent, papers sent, next due.

    Next due comes from each profile's crontab and time zone. A profile that does not validate is reported
    on stderr and skipped (exit status 1). Profiles are synced with the store first (see `digest profile`).
    """
    if adopt_folder:
        with app.store() as store:
            ProfileBook.of(app.config, store).adopt_folder()
    loaded = app.subscribers(allow_removals=remove_missing)
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
@click.option("--history", "list_history", is_flag=True, help="List its earlier versions, newest first.")
@click.option("--show", "show_version", metavar="VERSION", help="Print an earlier version (a prefix of it will do).")
@click.option(
    "--restore",
    "restore_version",
    metavar="VERSION",
    help="Make an earlier version the current one again, in the store and in the subscribers folder.",
)
@click.option("--json", "as_json", is_flag=True, help="With --history: print the versions as JSON.")
@click.pass_obj
def profile(
    app: App, subscriber: str, list_history: bool, show_version: str | None, restore_version: str | None, as_json: bool
) -> None:
    """Print SUBSCRIBER's profile as the store holds it, or its earlier versions.

    Profiles live in the store (on PostgreSQL, shared by every host), synced on every run with the subscribers
    folder where this host has it. Every version a write replaced (a hand edit, the settings page, a sign-up, a
    restore) or removed is kept: --history lists them, --show VERSION prints one, --restore VERSION makes it
    current again (the version it replaces is kept in turn).
    """
    problem = id_problem(subscriber)
    if problem:
        raise DigestError(f"{subscriber!r}: {problem}")
    now = utc_now()
    with app.store() as store:
        book = ProfileBook.of(app.config, store)
        if restore_version is not None:
            version = book.restore(subscriber, restore_version, now)
            click.echo(f"{subscriber}: version {restore_version} restored (now {version[:12]})")
            return
        if show_version is not None:
            click.echo(book.earlier(subscriber, show_version, now).data.decode("utf-8", errors="replace"), nl=False)
            return
        if list_history:
            versions = book.history(subscriber, now)
            if as_json:
                echo_json(
                    [
                        {"version": v.version, "replaced_at": v.replaced_at.isoformat(), "replaced_by": v.replaced_by}
                        for v in versions
                    ]
                )
            for v in [] if as_json else versions:
                click.echo(f"{v.version[:12]}\treplaced {v.replaced_at:%Y-%m-%d %H:%M} UTC by {v.replaced_by}")
            return
        data = book.data(subscriber, now)
    if data is None:
        raise DigestError(f"no subscriber {subscriber!r}; `digest subscribers` lists them")
    click.echo(data.decode("utf-8", errors="replace"), nl=False)


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


COMMANDS = [subscribers, profile, resume]
