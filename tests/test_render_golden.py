"""Golden files: the sample digest (tests/sample_digest.py, a fixed clock and invented papers) rendered in every
format must match tests/golden/ byte for byte. After a deliberate template change, regenerate with

    DIGEST_REGEN=1 .venv/bin/python -m pytest tests/test_render_golden.py

and review the diff of tests/golden/ like any other change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan

from digest.mail.message import RenderedEmail, compose_message, message_bytes
from digest.render import build_context, make_environment, render_email, render_markdown

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("DIGEST_REGEN") == "1"

_ENV = make_environment(None)


def _html() -> RenderedEmail:
    return render_email(_ENV, sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)


def _markdown() -> RenderedEmail:
    return render_email(_ENV, sample_plan(5, format="markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS)


def _markdown_for_html_subscriber() -> str:
    context = build_context(sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    context["subject"] = _html().subject
    return render_markdown(_ENV, context)


def _eml() -> str:
    """The whole message minus what changes on every run: Date is fixed here, the MIME boundary is random."""
    message = compose_message(
        _html(),
        to_name="Ada Example",
        to_email="ada@example.org",
        sender="Paper Digest <digest@lab.example>",
        message_id="<golden@lab.example>",
        list_id="paper-digest",
        now=SAMPLE_NOW,
        links=SAMPLE_LINKS,
        paper_ids=tuple(s.paper.id or "" for s in sample_plan(5).picks),
    )
    raw = message_bytes(message).decode("ascii").replace("\r\n", "\n")
    raw = re.sub(r"^(Message-ID|Date): .*\n", "", raw, flags=re.M)
    boundary = message.get_boundary()
    assert boundary
    return raw.replace(boundary, "BOUNDARY")


CASES: dict[str, Callable[[], str]] = {
    "subject.txt": lambda: _html().subject + "\n",
    "email.html": lambda: _html().html,
    "email.txt": lambda: _html().text,
    "email.md": lambda: _markdown().text,
    "email-markdown.html": lambda: _markdown().html,
    "email-html-subscriber.md": _markdown_for_html_subscriber,
    "email.eml": _eml,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    rendered = CASES[name]()
    path = GOLDEN / name
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(rendered.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing; run with DIGEST_REGEN=1 to create it"
    expected = path.read_bytes().decode("utf-8")
    assert rendered == expected, f"{name} differs from {path}; if the change is intended, regenerate (DIGEST_REGEN=1)"


def test_every_golden_file_is_checked() -> None:
    """A golden file nobody compares against is a stale promise: each one must have a case."""
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(CASES)
