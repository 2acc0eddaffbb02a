"""The few HTML pages `digest serve` answers with (digest/web/templates/): self-contained (inline CSS, no
external assets, no scripts), rendered by Jinja2 with autoescaping on, so a paper title can never become markup."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape

_ENV = Environment(
    loader=PackageLoader("digest.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_page(template: str, /, **context: object) -> str:
    return _ENV.get_template(template).render(**context)
