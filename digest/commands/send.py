"""digest send, digest history, digest run."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from digest.cli import App, echo_json
from digest.clock import utc_now
from digest.send import SendReport, lock_path, resolve_stuck, send_lock
from digest.service import Selection, send
from digest.subscribers import Profile


class _ProgressBar:
    """A rich progress bar on stderr for one send; stopped by close() however the send ends (finished,
    interrupted, failed), so the terminal never keeps a hidden cursor or a half-drawn bar."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, total: int) -> Callable[[Profile], None]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=Console(stderr=True),  # stdout carries the report, and may be piped to a file
        )
        self._bar.start()
        task = self._bar.add_task("send", total=total)

        def advance(_profile: Profile) -> None:
            self._bar.advance(task)

        return advance

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_report(report: SendReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.as_json())
    else:
        verb = "would send" if report.dry_run else "sent"
        for sent in report.sent:
            picked = (
                f"{len(sent.papers)} of {sent.candidates} new papers"
                if sent.candidates
                else f"{len(sent.papers)} papers"
            )
            click.echo(f"{verb}: {sent.subscriber} ({picked}) {sent.message_id or ''}".rstrip())
        left = [sent for sent in report.sent if sent.left_unsent]
        if left:
            total = sum(sent.left_unsent for sent in left)
            click.echo(
                f"note: {total} new paper(s) were weighed and not picked for {len(left)} subscriber(s); they are not "
                "offered again. For more per digest, raise max_papers or lower min_score in the profile "
                "(digest preview shows the effect).",
                err=True,
            )
        for skipped in report.skipped:
            click.echo(f"skipped: {skipped.subscriber}: {skipped.reason}")
        for failed in report.failed:
            click.echo(f"failed: {failed.subscriber}: {failed.error}", err=True)
        for stuck in report.stuck:
            click.echo(
                f"stuck: {stuck.subscriber}: message {stuck.message_id} was handed over but never confirmed; "
                f"{stuck.fix}",
                err=True,
            )
    click.echo(report.summary(), err=True)


@click.command(name="send")
@click.argument("subscribers", nargs=-1)
@click.option("--all", "send_all", is_flag=True, help="Send to every subscriber.")
@click.option("--due", is_flag=True, help="Send to the subscribers whose schedule says a digest is due.")
@click.option("--dry-run", is_flag=True, help="Compose everything; send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--wait",
    "lock_wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another sender to finish before giving up.",
)
@click.option(
    "--resolve-stuck",
    "resolve",
    metavar="SUBSCRIBER",
    default=None,
    help="Settle SUBSCRIBER's stuck message(s) by hand (with --as).",
)
@click.option(
    "--as",
    "resolve_as",
    type=click.Choice(["sent", "failed"]),
    default=None,
    help="With --resolve-stuck: sent (it arrived) or failed (its papers become candidates again).",
)
@click.option(
    "--retry-stuck",
    is_flag=True,
    help="Mark the named subscribers' stuck messages failed and send their digest again now.",
)
@click.pass_obj
def send_command(
    app: App,
    subscribers: tuple[str, ...],
    send_all: bool,
    due: bool,
    dry_run: bool,
    as_json: bool,
    lock_wait: float,
    resolve: str | None,
    resolve_as: str | None,
    retry_stuck: bool,
) -> None:
    """Send the next digest now to the named subscribers (or --due, or --all).

    Every message is recorded in the send ledger before it is handed to the server, so no paper ever
    reaches a subscriber twice; a message whose fate is unknown after a crash is reported as stuck until
    settled with --resolve-stuck SUBSCRIBER --as sent|failed, or --retry-stuck. Exit status 1 when any
    message failed or is stuck.
    """
    config = app.config
    if resolve:
        if not resolve_as:
            raise click.UsageError("--resolve-stuck needs --as sent|failed")
        app.subscribers(report=False).get(resolve)
        # Under the send lock: a sender that is mid-hand-over has a `sending` row that only looks stuck.
        with send_lock(lock_path(config), wait=lock_wait), app.store() as store:
            settled = resolve_stuck(store, resolve, resolve_as, utc_now())
        if as_json:
            echo_json({"subscriber": resolve, "resolved": settled, "as": resolve_as})
        else:
            click.echo(f"{resolve}: {len(settled)} stuck message(s) settled as {resolve_as}")
        return
    if sum([bool(subscribers), send_all, due]) != 1:
        raise click.UsageError("name subscribers, or give exactly one of --all / --due")
    selection: Selection = "all" if send_all else "due" if due else "named"
    loaded = app.subscribers()
    stop = threading.Event()
    bar = _ProgressBar() if not as_json and sys.stderr.isatty() else None  # never in a pipe or a log
    try:
        report = send(
            config,
            selection=selection,
            names=subscribers,
            dry_run=dry_run,
            lock_wait=lock_wait,
            retry_stuck=retry_stuck,
            progress_factory=bar,
            subscribers=loaded,
            stop=stop,
        )
    finally:
        if bar is not None:
            bar.close()
    _print_report(report, as_json)
    if report.stopped_by:
        click.echo(f"error: {report.stopped_by}", err=True)
    if report.failed or report.stuck or report.stopped_by:
        raise SystemExit(1)


@click.command()
@click.argument("subscriber", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many messages.")
@click.pass_obj
def history(app: App, subscriber: str | None, as_json: bool, limit: int | None) -> None:
    """What was sent to whom, when, with which papers and Message-ID (newest first)."""
    with app.store() as store:
        messages = store.history(subscriber, limit)
        titles = {p.id: p.title for p in store.get_papers(sorted({pk.paper_id for m in messages for pk in m.papers}))}
    if subscriber and not messages:
        app.subscribers(report=False).get(subscriber)  # "no subscriber 'x'" rather than "no messages yet"
    if as_json:
        echo_json(
            [
                {
                    "subscriber": m.subscriber,
                    "message_id": m.message_id,
                    "state": m.state,
                    "channel": m.channel,
                    "subject": m.subject,
                    "created_at": m.created_at,
                    "finished_at": m.finished_at,
                    "error": m.error,
                    "papers": [
                        {
                            "id": p.paper_id,
                            "title": titles.get(p.paper_id, ""),
                            "score": round(p.score, 4),
                            "why": p.why,
                        }
                        for p in m.papers
                    ],
                }
                for m in messages
            ]
        )
        return
    for m in messages:
        click.echo(f"{m.created_at[:19]}  {m.subscriber}  {m.state:<7} {m.channel:<5} {m.message_id}")
        for p in m.papers:
            click.echo(f"    {p.paper_id:<16} {titles.get(p.paper_id, '')[:70]}")
        if m.error:
            click.echo(f"    error: {m.error}")
    if not messages:
        click.echo("no messages yet", err=True)


@click.command()
@click.option(
    "--once", is_flag=True, help="One cycle (ingest, every due send, feeds), then exit: for cron or systemd timers."
)
@click.pass_obj
def run(app: App, once: bool) -> None:
    """Run the scheduler: ingest every [schedule] ingest_every, and send to each subscriber on their own
    crontab and time zone. Subscriber files added, changed or removed are picked up without a restart;
    SIGTERM finishes the message in flight and exits. A send missed during downtime runs once on start."""
    from digest.clock import ENV_VAR, fixed_instant
    from digest.errors import ConfigError
    from digest.runner import run_service

    if not once and fixed_instant() is not None:
        raise ConfigError(
            f"{ENV_VAR} fixes the clock, and a scheduler cannot wait for a time that never moves; "
            f"unset it, or run `digest run --once` for each instant to replay"
        )
    report = run_service(app.config, once=once)
    sent = report.send
    if once and (report.errors or (sent and (sent.failed or sent.stuck or sent.stopped_by))):
        raise SystemExit(1)


COMMANDS = [send_command, history, run]
