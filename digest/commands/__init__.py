"""CLI commands, one module per command noun (ingest, subscribers, rank, preview, send, feeds, web, demo, init);
each only wires options to one library call.

Commands are imported on first use: `digest ingest` should not pay for loading scikit-learn.
"""

from __future__ import annotations

import importlib

import click

# command name -> the module (under digest.commands) that defines it in its COMMANDS list
COMMAND_MODULES: dict[str, str] = {
    "ingest": "ingest",
    "papers": "ingest",
    "subscribers": "subscribers",
    "rank": "rank",
    "feedback": "rank",
    "preview": "preview",
    "send": "send",
    "history": "send",
    "run": "send",
    "feeds": "feeds",
    "serve": "web",
    "token": "web",
    "resume": "subscribers",
    "profile": "subscribers",
    "demo": "demo",
    "init": "init",
}


# The first paragraph of each command's help, for `digest --help` without importing every command (and with them
# scikit-learn): tests/test_cli_basics.py checks that each still matches its command.
COMMAND_SUMMARIES: dict[str, str] = {
    "ingest": "Ingest digest files, folders or URLs (default: the inbox and [sources] urls).",
    "papers": "List the stored papers, newest first.",
    "subscribers": "List the subscribers with their state: paused, last sent, papers sent, next due.",
    "rank": "Show what SUBSCRIBER's next digest would hold right now, best first, with why. Writes nothing.",
    "feedback": "Record that SUBSCRIBER likes or dislikes PAPER (our id, arXiv id, DOI or title).",
    "preview": "Show the email the next send would produce for SUBSCRIBER, without sending or recording anything.",
    "send": "Send the next digest now to the named subscribers (or --due, or --all).",
    "history": "What was sent to whom, when, with which papers and Message-ID (newest first).",
    "run": "Run the scheduler: ingest every [schedule] ingest_every, and send to each subscriber on their own crontab"
    " and time zone.",
    "feeds": "Write an Atom feed per subscriber (DIR/<id>.xml) and the shared DIR/all.xml.",
    "serve": "Serve feeds, unsubscribe, feedback, settings and sign-up pages over HTTP (Starlette on uvicorn).",
    "token": "Print SUBSCRIBER's secret token (made on first use) and their feed and settings URLs.",
    "profile": "Print SUBSCRIBER's profile as the store holds it, or its earlier versions.",
    "resume": "Resume SUBSCRIBER's digest after they unsubscribed (the web link pauses them; this undoes it).",
    "demo": "Run the whole pipeline on built-in sample data (no network, no server) and say where the output is.",
    "init": "Start your own digest in DIR (default: here): a commented config.toml, inbox/, and a first profile.",
}


def load_command(name: str) -> click.Command | None:
    module_name = COMMAND_MODULES.get(name)
    if module_name is None:
        return None
    module = importlib.import_module(f"digest.commands.{module_name}")
    for command in module.COMMANDS:
        if command.name == name:
            return command
    raise LookupError(f"digest.commands.{module_name} does not define the command {name!r}")
