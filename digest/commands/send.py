"""digest send, digest history, digest run."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import click

from digest.cli import App, echo_json
from digest.errors import DigestError
from digest.pipeline import AfterSend, CycleReport, Selection, ingest_configured, run_cycle, send, utc_now
from digest.schedule import Daemon
from digest.send import SendReport, resolve_stuck
from digest.subscribers import Profile, SubscriberSet

log = logging.getLogger("digest.run")


def _progress_factory() -> Callable[[int], Callable[[Profile], None]] | None:
    """A rich progress bar on a terminal; nothing when output is piped or logged."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def factory(total: int) -> Callable[[Profile], None]:
        bar = Progress(
            TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        )
        bar.start()
        task = bar.add_task("send", total=total)

        def advance(_profile: Profile) -> None:
            bar.advance(task)
            if bar.finished:
                bar.stop()

        if total == 0:
            bar.stop()
        return advance

    return factory


def _print_report(report: SendReport, as_json: bool) -> None:
    if as_json:
        echo_json(report.as_json())
    else:
        for item in report.sent:
            verb = "would send" if report.dry_run else "sent"
            click.echo(f"{verb}: {item['subscriber']} ({len(item['papers'])} papers) {item.get('message_id') or ''}")
        for item in report.skipped:
            click.echo(f"skipped: {item['subscriber']}: {item['reason']}")
        for item in report.failed:
            click.echo(f"failed: {item['subscriber']}: {item['error']}", err=True)
        for item in report.stuck:
            click.echo(
                f"stuck: {item['subscriber']}: message {item['message_id']} was handed over but never confirmed; "
                f"{item['fix']}",
                err=True,
            )
    click.echo(report.summary(), err=True)


@click.command(name="send")
@click.argument("subscribers", nargs=-1)
@click.option("--all", "send_all", is_flag=True, help="Send to every subscriber.")
@click.option("--due", is_flag=True, help="Send to the subscribers whose schedule says a digest is due.")
@click.option("--dry-run", is_flag=True, help="Compose everything; send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option("--wait", "lock_wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another sender to finish before giving up.")
@click.option("--resolve-stuck", "resolve", metavar="SUBSCRIBER", default=None,
              help="Settle SUBSCRIBER's stuck message(s) by hand (with --as).")
@click.option("--as", "resolve_as", type=click.Choice(["sent", "failed"]), default=None,
              help="With --resolve-stuck: sent (it arrived) or failed (its papers become candidates again).")
@click.option("--retry-stuck", is_flag=True,
              help="Mark the named subscribers' stuck messages failed and send their digest again now.")
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
        with app.store() as store:
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
    if retry_stuck:
        targets = subscribers or tuple(p.id for p in loaded.profiles)
        with app.store() as store:
            for name in targets:
                if store.stuck_messages(name):
                    resolve_stuck(store, name, "failed", utc_now())
                    click.echo(f"{name}: stuck message marked failed; sending again", err=True)
    stop = threading.Event()
    report = send(
        config,
        selection=selection,
        names=subscribers,
        dry_run=dry_run,
        lock_wait=lock_wait,
        progress_factory=None if as_json else _progress_factory(),
        subscribers=loaded,
        stop=stop,
    )
    _print_report(report, as_json)
    if report.failed or report.stuck:
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
                        {"id": p.paper_id, "title": titles.get(p.paper_id, ""), "score": round(p.score, 4), "why": p.why}
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
@click.option("--once", is_flag=True, help="One cycle (ingest, every due send, feeds), then exit: for cron or systemd timers.")
@click.pass_obj
def run(app: App, once: bool) -> None:
    """Run the scheduler: ingest every [schedule] ingest_every, and send to each subscriber on their own
    crontab and time zone. Subscriber files added, changed or removed are picked up without a restart;
    SIGTERM finishes the message in flight and exits. A send missed during downtime runs once on start."""
    config = app.config
    after_send = _feeds_hook()
    stop = threading.Event()

    def _terminate(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the message in flight, then exiting", signum)
        stop.set()

    # Installed before the first cycle: a SIGTERM during the catch-up send must not leave a stuck message.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    report = run_cycle(config, after_send=after_send, stop=stop)
    _log_cycle(report)
    if stop.is_set():
        log.info("digest run: stopped")
        return
    if once:
        if report.errors or (report.send and (report.send.failed or report.send.stuck)):
            raise SystemExit(1)
        return

    def ingest() -> None:
        cycle_ingest(app)

    def send_some(names: Sequence[str], stop: threading.Event) -> None:
        try:
            loaded = app.subscribers(report=False)
            wanted = [n for n in names if any(p.id == n for p in loaded.profiles)]
            result = send(app.config, selection="due", clock=utc_now, stop=stop, subscribers=_only(loaded, wanted), lock_wait=600)
            log.info("send: %s", result.summary())
            if after_send:
                after_send(app.config, result)
        except DigestError as exc:
            log.error("send: %s", exc)

    daemon = Daemon(
        subscribers_dir=config.paths.subscribers,
        load_profiles=lambda: app.subscribers(report=True).profiles,
        ingest=ingest,
        send=send_some,
        ingest_every=config.schedule.ingest_every,
        misfire_grace_time=config.schedule.misfire_grace_time,
        stop=stop,
    )
    log.info("digest run: scheduler started (ingest every %gs)", config.schedule.ingest_every)
    daemon.run()
    log.info("digest run: stopped")


def _only(loaded: SubscriberSet, names: Sequence[str]) -> SubscriberSet:
    return SubscriberSet(tuple(p for p in loaded.profiles if p.id in names), ())


def cycle_ingest(app: App) -> None:
    try:
        with app.store() as store:
            report = ingest_configured(store, app.config)
        log.info("ingest: %d file(s), %d new, %d updated", report.files, report.new, report.updated)
        for rejection in report.rejected:
            log.warning("ingest rejected: %s", rejection.error)
    except DigestError as exc:
        log.error("ingest: %s", exc)


def _log_cycle(report: CycleReport) -> None:
    if report.ingest:
        log.info("ingest: %d file(s), %d new, %d updated, %d rejected", report.ingest.files, report.ingest.new,
                 report.ingest.updated, len(report.ingest.rejected))
        for rejection in report.ingest.rejected:
            log.warning("ingest rejected: %s", rejection.error)
    if report.send:
        log.info("send: %s", report.send.summary())
        for item in report.send.failed:
            log.error("send failed: %s: %s", item["subscriber"], item["error"])
        for item in report.send.stuck:
            log.error("stuck: %s: %s (%s)", item["subscriber"], item["message_id"], item["fix"])
    for path in report.feeds:
        log.info("feed written: %s", path)
    for error in report.errors:
        log.error("%s", error)


def _feeds_hook() -> AfterSend | None:
    """Feeds are refreshed after each send once the feeds module exists."""
    try:
        from digest.feeds import refresh_after_send
    except ImportError:
        return None
    return refresh_after_send


COMMANDS = [send_command, history, run]
