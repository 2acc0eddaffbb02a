"""digest init."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import click

from digest.cli import invocation
from digest.errors import ConfigError
from digest.starter import Reader, StarterError, check_value, init_workspace, parse_keywords

# A StarterError's key -> the option that sets it.
FLAGS = {"name": "--name", "email": "--email", "keywords": "--keywords", "id": "--id", "timezone": "--timezone"}
QUESTIONS = {"name": "Your name", "email": "Your email address", "keywords": "Topics you follow, comma-separated"}


def stdin_is_a_terminal() -> bool:
    return sys.stdin.isatty()


@click.command()
@click.argument("directory", metavar="[DIR]", type=click.Path(path_type=Path), default=Path("."))
@click.option("--name", metavar="NAME", help="The first subscriber's name.")
@click.option("--email", metavar="ADDRESS", help="Their email address.")
@click.option(
    "--keywords",
    metavar="LIST",
    help='What they read about, comma-separated: "graph neural networks, message passing".',
)
@click.option(
    "--id", "subscriber_id", metavar="ID", help="The subscriber id, the profile's file name (default: from the email)."
)
@click.option(
    "--timezone", metavar="ZONE", help="Their time zone, e.g. Europe/London (default: this machine's, else UTC)."
)
@click.option(
    "-y", "--yes", "no_input", is_flag=True, help="Ask nothing: a missing --name, --email or --keywords is an error."
)
def init(
    directory: Path,
    name: str | None,
    email: str | None,
    keywords: str | None,
    subscriber_id: str | None,
    timezone: str | None,
    no_input: bool,
) -> None:
    """Start your own digest in DIR (default: here): a commented config.toml, inbox/, and a first profile.

    On a terminal it asks for the name, email address and keywords that no option gave; with --yes, or when
    stdin is not a terminal, they must come from the options. An existing config.toml or profile is never
    overwritten. It ends with the commands to run next.
    """
    answers = {"name": name, "email": email, "keywords": keywords}
    missing = [FLAGS[key] for key, value in answers.items() if value is None]
    if missing and (no_input or not stdin_is_a_terminal()):
        why = "--yes was given" if no_input else "stdin is not a terminal"
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{', '.join(missing)} {verb} required: digest init cannot ask ({why}); pass them as options")
    for key, value in answers.items():
        if value is None:
            answers[key] = click.prompt(QUESTIONS[key], value_proc=_checked(key))
    reader = Reader(
        name=answers["name"] or "",
        email=answers["email"] or "",
        keywords=parse_keywords(answers["keywords"] or ""),
        subscriber_id=subscriber_id,
        timezone=timezone,
    )
    try:
        workspace = init_workspace(directory, reader)
    except StarterError as exc:
        raise ConfigError(f"{FLAGS.get(exc.key, exc.key)} {exc.problem}") from None

    command = f"{invocation()} --config {shlex.quote(str(workspace.config))}"
    delivery = workspace.settings.delivery
    click.echo(f"wrote {workspace.config}  (every setting, with its default)")
    click.echo(f"wrote {workspace.profile}  (subscriber {workspace.subscriber_id!r}: edit it to tune the digest)")
    click.echo(f"inbox: {workspace.inbox}")
    click.echo("\nnext steps:")
    click.echo(f"  1. put digest files (daily-papers text, RSS/Atom feeds, JSON paper lists) in {workspace.inbox}/")
    click.echo(f"  2. {command} ingest")
    click.echo(f"  3. {command} preview {workspace.subscriber_id} --open")
    click.echo(f"  4. {command} send {workspace.subscriber_id}")
    if delivery.method == "maildir":
        click.echo(f"     (delivers into the Maildir {delivery.maildir} until [delivery] and [smtp] in config.toml say")
        click.echo("      how to reach a mail server)")


def _checked(key: str) -> Callable[[str], str]:
    """A prompt's check: a bad answer is said, and asked again."""

    def check(value: str) -> str:
        try:
            return check_value(key, value)
        except StarterError as exc:
            raise click.BadParameter(str(exc)) from None

    return check


COMMANDS = [init]
