"""One subscriber's email: subject, text/plain part and the inlined HTML part."""

from __future__ import annotations

from datetime import datetime
from email.message import Message
from typing import Any

import css_inline
import nh3
from jinja2 import Environment
from markupsafe import Markup

from digest import trace
from digest.errors import RenderError
from digest.links import Links
from digest.mail.message import RenderedEmail, compose_message
from digest.picks import DigestPlan
from digest.render.context import build_context
from digest.render.environment import (
    HTML,
    MARKDOWN,
    MARKDOWN_LAYOUT,
    SUBJECT,
    TEXT,
    DigestEnvironment,
    render_template,
)
from digest.render.text import one_line

# What Markdown may produce after sanitising: structure and links, nothing that runs or loads anything.
_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "a",
    "em",
    "strong",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "blockquote",
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
_ALLOWED_SCHEMES = {"http", "https", "mailto"}
SUBJECT_LIMIT = 200


def render_subject(env: DigestEnvironment, context: dict[str, Any]) -> str:
    """subject.txt.j2 as one line (a header cannot hold a line break; composing refuses one)."""
    subject = one_line(render_template(env, SUBJECT, context))
    if not subject:
        raise RenderError(f"{SUBJECT}: rendered an empty subject")
    return subject[:SUBJECT_LIMIT]


def inline_css(env: DigestEnvironment, html: str, name: str) -> str:
    try:
        inlined = env.inliner.inline(html)
    except (css_inline.InlineError, ValueError) as exc:
        raise RenderError(f"{name}: cannot inline its CSS: {one_line(str(exc))}") from None
    # The inliner drops the final newline; a file (or a terminal) is better off with one, and MIME adds it anyway.
    return inlined if inlined.endswith("\n") else inlined + "\n"


def markdown_html(env: DigestEnvironment, source: str) -> str:
    """Markdown → HTML, sanitised: the Markdown template escapes untrusted text, nh3 is the second wall."""
    converted = env.markdown_to_html(source)
    return nh3.clean(
        converted,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_ALLOWED_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(env: DigestEnvironment, context: dict[str, Any]) -> str:
    return render_template(env, MARKDOWN, context)


def render_email(env: Environment, plan: DigestPlan, *, now: datetime, links: Links) -> RenderedEmail:
    """html subscribers: text = email.txt.j2, html = inlined email.html.j2.
    markdown subscribers: text = email.md.j2, html = that Markdown converted, sanitised, in markdown.html.j2."""
    if not isinstance(env, DigestEnvironment):
        raise TypeError("render_email needs the environment made by digest.render.make_environment")
    context = build_context(plan, now=now, links=links)
    subject = render_subject(env, context)
    context["subject"] = subject
    if plan.subscriber.format == "markdown":
        source = render_markdown(env, context)
        body = Markup(markdown_html(env, source))  # sanitised just above; the layout must not escape it again
        html = render_template(env, MARKDOWN_LAYOUT, {**context, "content": body})
        return RenderedEmail(subject, source, inline_css(env, html, MARKDOWN_LAYOUT))
    text = render_template(env, TEXT, context)
    html = render_template(env, HTML, context)
    return RenderedEmail(subject, text, inline_css(env, html, HTML))


def render_and_compose(
    env: Environment,
    plan: DigestPlan,
    links: Links,
    *,
    sender: str,
    list_id: str,
    message_id: str,
    now: datetime,
) -> tuple[RenderedEmail, Message]:
    """A planned digest as the rendered email and its MIME message: the one way both are made, in a preview,
    in a send, and in the worker processes of digest.mail.composer."""
    with trace.stage("rendering"):
        rendered = render_email(env, plan, now=now, links=links)
    profile = plan.subscriber
    with trace.stage("composing"):
        message = compose_message(
            rendered,
            to_name=profile.name,
            to_email=profile.email,
            sender=sender,
            message_id=message_id,
            list_id=list_id,
            now=now,
            links=links,
            paper_ids=tuple(s.paper.id or "" for s in plan.picks),
        )
    return rendered, message
