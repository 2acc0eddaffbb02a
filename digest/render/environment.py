"""The Jinja2 environment: packaged templates under a user's overrides, sandboxed, compiled once.

Templates may come from users (`[paths] templates`), so they run in a SandboxedEnvironment and every failure,
whether syntax, runtime or a missing file, becomes one RenderError line naming the template file and line.
"""

from __future__ import annotations

import functools
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import css_inline
import markdown
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.filters import do_wordwrap
from jinja2.sandbox import SandboxedEnvironment

from digest.errors import ConfigError, RenderError
from digest.render.text import markdown_escape, markdown_url, one_line, wrap

# The default templates: the top-level templates/ folder, which digest/templates links to (the wheel holds a copy).
PACKAGED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

SUBJECT = "subject.txt.j2"
HTML = "email.html.j2"
TEXT = "email.txt.j2"
MARKDOWN = "email.md.j2"
MARKDOWN_LAYOUT = "markdown.html.j2"  # the frame around the HTML converted from email.md.j2
TEMPLATE_NAMES = (SUBJECT, HTML, TEXT, MARKDOWN, MARKDOWN_LAYOUT)


class DigestEnvironment(SandboxedEnvironment):
    """A sandboxed environment that also carries the per-process tools every render reuses.

    The CSS inliner and the Markdown converter are built once here rather than per email: a send renders
    thousands of messages with the same environment.
    """

    search_paths: tuple[Path, ...]
    inliner: css_inline.CSSInliner
    _markdown: markdown.Markdown
    _markdown_lock: threading.Lock

    def markdown_to_html(self, source: str) -> str:
        # A Markdown instance keeps state between conversions; reset() makes it reusable, the lock makes it
        # safe if a caller ever renders from several threads.
        with self._markdown_lock:
            self._markdown.reset()
            return self._markdown.convert(source)


_PLAIN = (str, int, bool, type(None))


def _memoised_wordwrap(env: SandboxedEnvironment) -> Any:
    """Jinja's wordwrap, remembered: every subscriber who gets a paper gets the same wrapped teaser, and
    textwrap was half the time of rendering the text part. Same arguments, same output as the built-in."""
    wrap = functools.lru_cache(maxsize=16384)(functools.partial(do_wordwrap, env))

    def wordwrap(value: Any, *args: Any, **kwargs: Any) -> str:
        # Only plain values are remembered: Markup equals and hashes like str but wraps differently.
        if all(type(a) in _PLAIN for a in (value, *args, *kwargs.values())):
            return wrap(value, *args, **kwargs)
        return do_wordwrap(env, value, *args, **kwargs)

    return wordwrap


def make_environment(user_templates: Path | None) -> DigestEnvironment:
    """The environment for every render: a user's folder (when it exists) shadows single packaged templates.

    All default templates are loaded and compiled here, so a broken override fails before anything is sent.
    """
    loaders: list[BaseLoader] = []
    search: list[Path] = []
    if user_templates is not None:
        if user_templates.exists() and not user_templates.is_dir():
            raise ConfigError(f"{user_templates}: [paths] templates must be a folder, not a file")
        if user_templates.is_dir():
            loaders.append(FileSystemLoader(user_templates))
            search.append(user_templates.resolve())
    defaults = PackageLoader("digest", "templates")
    # "!default/email.html.j2" is always the packaged template, so an override can extend it and change one block
    # instead of copying the whole file (as pelican's "!simple/").
    loaders += [PrefixLoader({"!default": defaults}), defaults]
    search.append(PACKAGED_TEMPLATES)
    env = DigestEnvironment(
        loader=ChoiceLoader(loaders),
        # Only HTML templates escape: text, Markdown and the subject are not HTML, and escaping them would show
        # "&amp;" to the reader. Markdown templates escape explicitly with the `md` filter instead.
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2", "htm"), default_for_string=False),
        undefined=StrictUndefined,  # a misspelt field is an error naming the line, not a silently blank email
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # no stat() per email; a running `digest run` picks up template edits on restart
        cache_size=-1,
    )
    env.search_paths = tuple(search)
    env.filters["md"] = markdown_escape
    env.filters["md_url"] = markdown_url
    env.filters["one_line"] = one_line
    env.filters["wordwrap"] = _memoised_wordwrap(env)
    env.filters["wrap"] = wrap
    # The <style> block goes away after inlining except its @media rules (dark mode, narrow screens), which
    # cannot be inlined; no remote stylesheet is ever fetched.
    env.inliner = css_inline.CSSInliner(keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False)
    env._markdown = markdown.Markdown(extensions=[], output_format="html")
    env._markdown_lock = threading.Lock()
    for name in TEMPLATE_NAMES:
        load_template(env, name)
    return env


def load_template(env: DigestEnvironment, name: str) -> Any:
    try:
        return env.get_template(name)
    except TemplateNotFound as exc:
        where = " or ".join(str(p) for p in env.search_paths)
        raise RenderError(f"template {exc.name!r} not found in {where}") from None
    except TemplateSyntaxError as exc:
        raise RenderError(
            f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {one_line(exc.message)}"
        ) from None


def render_template(env: DigestEnvironment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template; any failure is a RenderError "file:line: what" in one line."""
    template = load_template(env, name)
    try:
        return template.render(context)
    except TemplateSyntaxError as exc:  # an {% include %} of a broken template
        raise RenderError(
            f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {one_line(exc.message)}"
        ) from None
    except TemplateNotFound as exc:
        raise RenderError(f"{_location(env, exc, name)}: included template {exc.name!r} not found") from None
    # Templates are user code: whatever they raise (undefined names, sandbox refusals, a division by zero)
    # is reported against the template, not as an internal error.
    except Exception as exc:
        what = one_line(str(exc)) or type(exc).__name__
        raise RenderError(f"{_location(env, exc, name)}: {type(exc).__name__}: {what}") from None


def _location(env: DigestEnvironment, exc: BaseException, name: str) -> str:
    """file:line of the innermost template frame; Jinja rewrites tracebacks so frames point at template lines."""
    roots = tuple(str(p) for p in env.search_paths)
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(roots):
            found = f"{frame.filename}:{frame.lineno}"
    return found or name
