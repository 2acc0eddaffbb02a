"""The few HTML pages `digest serve` answers with: self-contained (inline CSS, no external assets, no
scripts), rendered by Jinja2 with autoescaping on, so a paper title can never become markup."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }} · paper-digest</title>
<style>
  :root { color-scheme: light dark; }
  body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 3rem 1rem;
         background: #f6f7f9; color: #1d2330; }
  main { max-width: 32rem; margin: 0 auto; background: #fff; border-radius: 12px; padding: 2rem;
         box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  h1 { font-size: 1.35rem; margin: 0 0 1rem; }
  p { margin: 0 0 1rem; }
  .paper { font-style: italic; overflow-wrap: anywhere; }
  .muted { color: #5b6472; font-size: .9rem; }
  button { font: inherit; padding: .6rem 1.2rem; border: 0; border-radius: 8px; background: #b42318; color: #fff;
           cursor: pointer; }
  button.like { background: #1a7f37; }
  a { color: #1a56db; }
  @media (prefers-color-scheme: dark) {
    body { background: #111418; color: #e6e8eb; } main { background: #1b1f24; box-shadow: none; }
    .muted { color: #9aa3ad; } a { color: #7aa7ff; }
  }
</style>
</head>
<body>
<main>
{% block body %}{% endblock %}
<p class="muted">paper-digest</p>
</main>
</body>
</html>
"""

_TEMPLATES = {
    "layout.html": _LAYOUT,
    "unsubscribe_confirm.html": """{% extends "layout.html" %}{% block body %}
<h1>Unsubscribe from paper-digest?</h1>
{% if paused %}
<p>The digest for <strong>{{ name }}</strong> is already stopped. Nothing more to do.</p>
{% else %}
<p>This stops the paper digest for <strong>{{ name }}</strong>. No further emails will be sent.</p>
{# No action attribute: the form posts back to this very URL, whatever prefix a proxy serves it under. #}
<form method="post">
  <input type="hidden" name="List-Unsubscribe" value="One-Click">
  <button type="submit">Unsubscribe</button>
</form>
{% endif %}
{% endblock %}""",
    "unsubscribed.html": """{% extends "layout.html" %}{% block body %}
<h1>You are unsubscribed</h1>
{# name is None when the request was taken while the store could not even be read (it is applied later). #}
{% set verb = "is now" if changed else "was already" %}
<p>The paper digest{% if name %} for <strong>{{ name }}</strong>{% endif %} {{ verb }} stopped.
You will not receive another one.</p>
<p class="muted">Changed your mind? Ask whoever runs this digest to resume it.</p>
{% endblock %}""",
    "feedback.html": """{% extends "layout.html" %}{% block body %}
<h1>Thanks for the feedback</h1>
<p>You {{ "liked" if rating == "like" else "disliked" }} <span class="paper">{{ paper_title }}</span>.</p>
<p>Your next digest ranks papers like it {{ "higher" if rating == "like" else "lower" }}.</p>
<p class="muted">Clicked the wrong one? <a href="{{ other }}">{{ other }} it instead</a>.</p>
{% endblock %}""",
    "feedback_confirm.html": """{% extends "layout.html" %}{% block body %}
<h1>{{ "Like" if rating == "like" else "Dislike" }} this paper?</h1>
<p class="paper">{{ paper_title }}</p>
{% if current == rating %}
<p>You already {{ "liked" if rating == "like" else "disliked" }} it. Nothing more to do.</p>
{% else %}
<p>Your next digest will rank papers like it {{ "higher" if rating == "like" else "lower" }}.</p>
{# No action attribute: the form posts back to this very URL (the link in the email), and only that records. #}
<form method="post">
  <button type="submit" class="{{ rating }}">{{ "Like it" if rating == "like" else "Dislike it" }}</button>
</form>
{% endif %}
<p class="muted">Meant the other way? <a href="{{ other }}">{{ other }} it instead</a>.</p>
{% endblock %}""",
    "error.html": """{% extends "layout.html" %}{% block body %}
<h1>{{ title }}</h1>
<p>{{ message }}</p>
{% endblock %}""",
}

_ENV = Environment(
    loader=DictLoader(_TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_page(template: str, /, **context: object) -> str:
    return _ENV.get_template(template).render(**context)
