"""Rendering a digest into an email: Jinja2 templates (packaged defaults under a user's overrides, sandboxed),
one documented context object, CSS inlined for mail clients, Markdown sanitised for Markdown subscribers.

    env = make_environment(config.paths.templates)        # once per process: templates compiled here
    rendered = render_email(env, plan, now=now, links=links)  # per subscriber
"""

from __future__ import annotations

from digest.render.context import build_context
from digest.render.email import markdown_html, render_email, render_markdown, render_subject
from digest.render.environment import (
    PACKAGED_TEMPLATES,
    TEMPLATE_NAMES,
    DigestEnvironment,
    make_environment,
    render_template,
)

__all__ = [
    "PACKAGED_TEMPLATES",
    "TEMPLATE_NAMES",
    "DigestEnvironment",
    "build_context",
    "make_environment",
    "markdown_html",
    "render_email",
    "render_markdown",
    "render_subject",
    "render_template",
]
