"""Untrusted text never becomes markup: hostile titles, authors, abstracts and explanations show up literally
and harmlessly in the HTML, the text part, the Markdown (and its HTML), the subject and the message headers."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from typing import Literal

import html5lib
import pytest
from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan, unwrapped

from digest.links import Links
from digest.mail.message import compose_message
from digest.plan import DigestPlan
from digest.rank import Scored
from digest.render import make_environment, render_email

HOSTILE_TITLES = [
    "<img src=x onerror=alert(1)>",
    "</table></td></tr></table><b>broken layout",
    "{{ 7*7 }} and {% raw %} left open",
    "*bold* _it_ [x](javascript:alert(1)) # not a heading `code` <script>alert(1)</script>",
    "- dash & &amp; &lt;tag&gt; \\ backslash ![i](http://x/y.png) <http://evil.example>",
]
HOSTILE_AUTHOR = "<b>Mallory</b> *Eve*"
HOSTILE_WHY = "[click](javascript:alert(3)) <i>x</i> {{ 6*7 }}"
HOSTILE_ABSTRACT = "Abstract </p><script>alert(4)</script> **bold** <a href=javascript:alert(5)>link</a>. " * 3


def hostile_plan(format: Literal["html", "markdown"]) -> DigestPlan:
    plan = sample_plan(len(HOSTILE_TITLES), format=format)
    picks = []
    for scored, title in zip(plan.picks, HOSTILE_TITLES, strict=True):
        paper = replace(scored.paper, title=title, authors=(HOSTILE_AUTHOR, "B", "C", "D"), abstract=HOSTILE_ABSTRACT)
        picks.append(Scored(paper, scored.score, HOSTILE_WHY))
    return replace(plan, picks=tuple(picks))


def parse(document: str):  # type: ignore[no-untyped-def]
    parser = html5lib.HTMLParser(strict=False, namespaceHTMLElements=False)
    tree = parser.parse(document)
    return tree, parser.errors


def text_of(tree) -> str:  # type: ignore[no-untyped-def]
    for element in tree.iter():
        if element.tag in ("style", "title"):
            element.text = ""
    return re.sub(r"\s+", " ", "".join(tree.itertext()))


def assert_harmless_html(document: str) -> str:
    tree, errors = parse(document)
    assert errors == [], "hostile text broke the document structure"
    tags = {element.tag for element in tree.iter()}
    assert not tags & {"script", "img", "iframe", "object", "embed", "b", "i"}, tags
    for element in tree.iter():
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (element.tag, name)
            assert not value.strip().lower().startswith("javascript:"), (element.tag, name, value)
    return text_of(tree)


@pytest.fixture(scope="module")
def env():  # type: ignore[no-untyped-def]
    return make_environment(None)


def test_html_escapes_every_hostile_field(env) -> None:  # type: ignore[no-untyped-def]
    rendered = render_email(env, hostile_plan("html"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    text = assert_harmless_html(rendered.html)
    for title in HOSTILE_TITLES:
        assert title in text, title
    assert HOSTILE_AUTHOR in text and HOSTILE_WHY in text
    assert "<script>alert(4)</script>" in text
    # The layout survives "</table>": exactly one card table per paper, inside the two layout tables.
    assert rendered.html.count('class="paper-title"') == len(HOSTILE_TITLES)


def test_text_part_shows_everything_literally(env) -> None:  # type: ignore[no-untyped-def]
    rendered = render_email(env, hostile_plan("html"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    text = unwrapped(rendered.text)
    for title in HOSTILE_TITLES:
        assert title in text, title
    assert HOSTILE_AUTHOR in text and HOSTILE_WHY in text
    assert "&lt;" not in rendered.text.replace("&lt;tag&gt;", "")  # no HTML escaping leaked into plain text
    assert "49" not in rendered.text and "42 new papers" in rendered.text  # {{ 7*7 }} was never evaluated


def test_markdown_escapes_so_the_converted_html_shows_everything_literally(env) -> None:  # type: ignore[no-untyped-def]
    rendered = render_email(env, hostile_plan("markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    text = assert_harmless_html(rendered.html)
    for title in HOSTILE_TITLES:
        assert title in text, title
    assert HOSTILE_AUTHOR in text and HOSTILE_WHY in text
    tree, _ = parse(rendered.html)
    assert not [e for e in tree.iter() if e.tag in ("em", "strong", "code") and "bold" in "".join(e.itertext())]
    assert len([e for e in tree.iter() if e.tag == "h2"]) == len(HOSTILE_TITLES)  # "#" made no extra heading
    hrefs = [e.get("href") for e in tree.iter() if e.tag == "a"]
    assert all(h.startswith("https://") for h in hrefs), hrefs
    # The Markdown source itself (the text/plain part) holds no live link to anything but our own URLs.
    links = re.findall(r"(?<!\\)\]\(([^)]*)\)", rendered.text)
    assert links and all(link.startswith("https://") for link in links), links


def test_subject_is_literal_and_single_line(env) -> None:  # type: ignore[no-untyped-def]
    rendered = render_email(env, hostile_plan("html"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert rendered.subject == "Papers for 20 Nov 2026: <img src=x onerror=alert(1)> + 4 more"


@pytest.mark.parametrize("format", ["html", "markdown"])
def test_a_line_break_in_a_title_cannot_inject_a_header(env, format) -> None:  # type: ignore[no-untyped-def]
    plan = hostile_plan(format)
    first = plan.picks[0]
    evil = replace(first, paper=replace(first.paper, title="Hello\r\nBcc: victim@example.org\r\n\r\n<b>body</b>"))
    plan = replace(plan, picks=(evil, *plan.picks[1:]))
    rendered = render_email(env, plan, now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    message = compose_message(
        rendered,
        to_name="Ada Example",
        to_email="ada@example.org",
        sender="Paper Digest <digest@lab.example>",
        message_id="<fixed@lab.example>",
        list_id="paper-digest",
        now=SAMPLE_NOW,
        links=Links(),
        paper_ids=tuple(s.paper.id or "" for s in plan.picks),
    )
    raw = message.as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"(?im)^bcc:", head)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Bcc" not in parsed
    # strip(): for this subject the stdlib folds right after "Subject:", and parsing keeps that one space.
    assert parsed["Subject"].strip().startswith("Papers for 20 Nov 2026: Hello Bcc: victim@example.org <b>body</b>")


def test_bidirectional_overrides_never_reach_the_subject_or_the_text() -> None:
    from digest.render.text import one_line

    title = "Safe \u202egnp.exe\u202c title \u2066isolated\u2069 \u061cmark"
    cleaned = one_line(title)
    assert not any(ch in cleaned for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")
    assert cleaned == "Safe gnp.exe title isolated mark"
