"""digest rank, digest feedback."""

from __future__ import annotations

import click

from digest.cli import App, echo_json
from digest.clock import utc_now
from digest.feedback import record_feedback
from digest.model_cache import model_source
from digest.plan import plan_digest


@click.command()
@click.argument("subscriber")
@click.option("--json", "as_json", is_flag=True, help='Print [{"id", "title", "score", "why"}] as JSON.')
@click.pass_obj
def rank(app: App, subscriber: str, as_json: bool) -> None:
    """Show what SUBSCRIBER's next digest would hold right now, best first, with why. Writes nothing."""
    profile = app.subscribers(report=False, write=False).get(subscriber)
    with app.store() as store:
        plan = plan_digest(store, profile, utc_now(), model_source(app.config.rank.policy(), save=False))
    if as_json:
        echo_json(
            [{"id": s.paper.id, "title": s.paper.title, "score": round(s.score, 4), "why": s.why} for s in plan.picks]
        )
        return
    for pick in plan.picks:
        click.echo(f"{pick.score:.3f}\t{pick.paper.id}\t{pick.paper.title}\n\t{pick.why}")
    if plan.empty_reason:
        click.echo(f"nothing to send: {plan.empty_reason}", err=True)


@click.command()
@click.argument("subscriber")
@click.argument("paper")
@click.option("--like/--dislike", "like", required=True, help="Rate the paper up or down.")
@click.pass_obj
def feedback(app: App, subscriber: str, paper: str, like: bool) -> None:
    """Record that SUBSCRIBER likes or dislikes PAPER (our id, arXiv id, DOI or title).

    The next ranking moves the paper's neighbours up (like) or down (dislike). Rating again replaces it.
    """
    loaded = app.subscribers(report=False, write=False)
    with app.store() as store:
        found = record_feedback(store, loaded, subscriber, paper, 1 if like else -1, utc_now())
    click.echo(f"{subscriber}: {'liked' if like else 'disliked'} {found.id} ({found.title})")


COMMANDS = [rank, feedback]
