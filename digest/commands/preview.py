"""digest preview."""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

import click

from digest.cli import App
from digest.clock import utc_now
from digest.errors import DigestError
from digest.files import write_atomically
from digest.preview import PREVIEW_FORMATS, preview_digest
from digest.render import make_environment

FORMAT_BY_SUFFIX = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".json": "json",
    ".eml": "eml",
}


def _open_in_browser(html: str) -> Path:
    # The file must outlive this process for the browser to read it, so it is not deleted. A UTF-8 BOM: the
    # charset <meta> may sit past the first 1024 bytes (after the inlined <style>), where browsers stop looking.
    handle = tempfile.NamedTemporaryFile("wb", prefix="digest-preview-", suffix=".html", delete=False)
    with handle:
        handle.write(b"\xef\xbb\xbf" + html.encode("utf-8"))
    path = Path(handle.name)
    if not webbrowser.open(path.as_uri()):
        raise DigestError(f"no web browser found to open {path}; open the file yourself")
    return path


@click.command()
@click.argument("subscriber")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(PREVIEW_FORMATS),
    default=None,
    help="html, markdown, text (the text/plain part), json (subject and papers) or eml (the whole message). "
    "Default: the one -o's extension names (.html, .md, .txt, .json, .eml), else the subscriber's own format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (atomically) instead of stdout.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML part in a web browser (from a temp file).")
@click.pass_obj
def preview(app: App, subscriber: str, fmt: str | None, output: Path | None, open_browser: bool) -> None:
    """Show the email the next send would produce for SUBSCRIBER, without sending or recording anything.

    Same candidates, ranking, templates and headers as `digest send`. When there is nothing to send, the
    reason goes to stderr and the exit status is 0. With --open, the HTML part opens in a browser and is not
    printed (unless -o names a file to write as well).
    """
    config = app.config
    if fmt is None and output is not None:
        fmt = FORMAT_BY_SUFFIX.get(output.suffix.lower())  # out.html holds HTML, whatever the subscriber reads
    profile = app.subscribers(report=False, write=False).get(subscriber)
    env = make_environment(config.paths.templates)
    with app.store() as store:
        if store.subscriber_state(profile.id).paused:
            click.echo(f"note: {profile.id} is paused (unsubscribed); `digest send` skips them", err=True)
        result = preview_digest(store, config, env, profile, utc_now(), fmt)  # type: ignore[arg-type]
    if result.reason is not None:
        click.echo(f"nothing to send to {profile.id}: {result.reason}", err=True)
    if result.output is not None:
        if output is not None:
            write_atomically(output, result.output)
            click.echo(f"wrote {output}", err=True)
        elif not open_browser:
            click.echo(result.output, nl=False)  # bytes go to the binary stream, as-is
    if open_browser and result.html is not None:
        path = _open_in_browser(result.html)
        click.echo(f"opened {path}", err=True)


COMMANDS = [preview]
