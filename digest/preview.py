"""`digest preview`: the email the next send would produce for one subscriber, in the format asked for.

It composes through digest.compose.compose_digest: the same candidates, ranking, templates and headers as
`digest send` (one plan function, one render_and_compose), and it writes nothing to the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jinja2 import Environment

from digest.compose import ComposedDigest, compose_digest
from digest.config import Config
from digest.mail.message import message_bytes
from digest.render.context import build_context, reading_links
from digest.render.email import render_markdown
from digest.render.environment import DigestEnvironment
from digest.store import Store
from digest.subscribers import Profile

PreviewFormat = Literal["html", "markdown", "text", "json", "eml"]
PREVIEW_FORMATS: tuple[PreviewFormat, ...] = ("html", "markdown", "text", "json", "eml")


@dataclass(frozen=True)
class Preview:
    format: PreviewFormat
    output: bytes | None  # what to print or write; None when there is nothing to send (except for json)
    html: str | None  # the HTML part, for --open
    reason: str | None  # why there is nothing to send
    composed: ComposedDigest


def _json(composed: ComposedDigest, profile: Profile, reason: str | None) -> bytes:
    data: dict[str, object] = {
        "subscriber": profile.id,
        "subject": composed.rendered.subject if composed.rendered else None,
        "papers": [
            {
                "id": s.paper.id,
                "title": s.paper.title,
                "url": s.paper.url,
                "score": round(s.score, 4),
                "why": s.why,
                # What the email links: the source's URL, the arXiv page, else an arXiv title search.
                "link": reading_links(s.paper)[0],
            }
            for s in composed.plan.picks
        ],
    }
    if reason is not None:
        data["reason"] = reason
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def preview_digest(
    store: Store,
    config: Config,
    env: Environment,
    profile: Profile,
    now: datetime,
    format: PreviewFormat | None = None,
) -> Preview:
    """Compose the next digest without recording anything and return it in `format` (default: the
    subscriber's own format)."""
    chosen: PreviewFormat = format or profile.format
    composed = compose_digest(store, config, env, profile, now)
    if composed.is_empty or composed.rendered is None or composed.message is None:
        reason = composed.plan.empty_reason or "nothing to send"
        return Preview(chosen, _json(composed, profile, reason) if chosen == "json" else None, None, reason, composed)
    rendered = composed.rendered
    if chosen == "html":
        output = rendered.html.encode("utf-8")
    elif chosen == "text":
        output = rendered.text.encode("utf-8")
    elif chosen == "markdown":
        if profile.format == "markdown":
            source = rendered.text
        else:  # an html subscriber: render the Markdown template anyway, from the same plan and links
            if not isinstance(env, DigestEnvironment):
                raise TypeError("preview_digest needs the environment made by digest.render.make_environment")
            context = build_context(composed.plan, now=now, links=composed.links)
            context["subject"] = rendered.subject
            source = render_markdown(env, context)
        output = source.encode("utf-8")
    elif chosen == "eml":
        output = message_bytes(composed.message)
    else:
        output = _json(composed, profile, None)
    return Preview(chosen, output, rendered.html, None, composed)
