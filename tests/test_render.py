"""Rendering: packaged templates and user overrides, the sandbox, one-line template errors, the context,
real email HTML (valid, inlined, small), and Markdown subscribers' sanitised HTML."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from pathlib import Path

import html5lib
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan, unwrapped

from digest.errors import ConfigError, RenderError
from digest.links import Links
from digest.render import PACKAGED_TEMPLATES, TEMPLATE_NAMES, build_context, make_environment, render_email
from digest.render.text import ARXIV_TITLE_SEARCH, markdown_escape, one_line, safe_url, short_authors, teaser

REPO = Path(__file__).resolve().parent.parent
MIRROR = REPO / "templates"


def html_errors(document: str) -> list[str]:
    parser = html5lib.HTMLParser(strict=False)
    parser.parse(document)
    return [f"{pos}: {code} {data}" for pos, code, data in parser.errors]


def visible_text(document: str) -> str:
    """The text a reader sees: html5lib parses, entities resolve, tags vanish; whitespace folded."""
    tree = html5lib.parse(document, namespaceHTMLElements=False)
    for element in tree.iter():
        if element.tag in ("style", "script", "title"):
            element.text = ""
    return re.sub(r"\s+", " ", "".join(tree.itertext())).strip()


# --- templates: packaged, mirrored, overridable ---------------------------------------------------------------


def test_there_is_one_copy_of_the_default_templates() -> None:
    """digest/templates links to the top-level templates/ (what users copy and edit): nothing can drift."""
    assert (REPO / "digest" / "templates").resolve() == MIRROR.resolve() == PACKAGED_TEMPLATES.resolve()
    assert set(TEMPLATE_NAMES) <= {p.name for p in MIRROR.glob("*.j2")}, "a template the renderer loads is missing"


def test_an_override_can_extend_the_default_and_change_one_block(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text(
        '{% extends "!default/subject.txt.j2" %}', encoding="utf-8"
    )  # a whole override that is the default
    (tmp_path / "email.txt.j2").write_text(
        '{% extends "!default/email.txt.j2" %}{% block footer %}Sent by the lab.\n{% endblock %}', encoding="utf-8"
    )
    env = make_environment(tmp_path)
    plain = render_email(make_environment(None), sample_plan(), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    rendered = render_email(env, sample_plan(), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert rendered.subject == plain.subject
    assert rendered.text.endswith("Sent by the lab.\n") and "Sent by the lab." not in plain.text
    assert rendered.text.split("Sent by the lab.")[0].startswith(plain.text[:200])


def test_an_override_wins_and_the_packaged_defaults_fill_the_rest(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("Custom: {{ count }} for {{ subscriber.name }}", encoding="utf-8")
    env = make_environment(tmp_path)
    rendered = render_email(env, sample_plan(3), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert rendered.subject == "Custom: 3 for Ada Example"
    assert "Your papers for Friday, 20 November 2026" in rendered.text  # email.txt.j2 still the packaged one
    default = render_email(make_environment(None), sample_plan(3), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert default.subject.startswith("Papers for 20 Nov 2026: ")


def test_a_missing_templates_folder_means_packaged_defaults(tmp_path: Path) -> None:
    env = make_environment(tmp_path / "not-there")
    assert render_email(env, sample_plan(1), now=SAMPLE_NOW, links=SAMPLE_LINKS).subject


def test_a_templates_path_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "templates").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a folder"):
        make_environment(tmp_path / "templates")


# --- one-line errors naming file and line ----------------------------------------------------------------------


def test_a_syntax_error_in_an_override_names_file_and_line_at_environment_creation(tmp_path: Path) -> None:
    bad = tmp_path / "email.txt.j2"
    bad.write_text("line one\nline two\n{% for p in papers %}\nno endfor\n", encoding="utf-8")
    with pytest.raises(RenderError) as caught:
        make_environment(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{bad}:" in message and "syntax error" in message


def test_a_runtime_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "email.txt.j2"
    bad.write_text("Hello\n{% for p in papers %}\n{{ p.titel }}\n{% endfor %}\n", encoding="utf-8")
    env = make_environment(tmp_path)
    with pytest.raises(RenderError) as caught:
        render_email(env, sample_plan(2), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{bad}:3: UndefinedError")
    assert "titel" in message


def test_a_missing_included_template_names_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "email.txt.j2").write_text("one\n{% include 'footer.j2' %}\n", encoding="utf-8")
    env = make_environment(tmp_path)
    with pytest.raises(RenderError, match=r"email\.txt\.j2:2: included template 'footer\.j2' not found"):
        render_email(env, sample_plan(1), now=SAMPLE_NOW, links=SAMPLE_LINKS)


def test_the_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    env = make_environment(tmp_path)
    with pytest.raises(RenderError, match=r"subject\.txt\.j2:1: SecurityError"):
        render_email(env, sample_plan(1), now=SAMPLE_NOW, links=SAMPLE_LINKS)


def test_an_empty_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("{# nothing #}\n", encoding="utf-8")
    with pytest.raises(RenderError, match="empty subject"):
        render_email(make_environment(tmp_path), sample_plan(1), now=SAMPLE_NOW, links=SAMPLE_LINKS)


# --- the context ----------------------------------------------------------------------------------------------


def test_the_context_carries_what_the_readme_documents() -> None:
    context = build_context(sample_plan(3), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert set(context) == {
        "subscriber",
        "issue_date",
        "issue_date_long",
        "issue_date_short",
        "papers",
        "count",
        "candidates",
        "preheader",
        "links_enabled",
        "unsubscribe_url",
        "feed_url",
        "settings_url",
        "first_digest",
    }
    assert context["subscriber"]["name"] == "Ada Example"
    assert context["issue_date"] == "2026-11-20"  # 07:00 UTC is 07:00 in London in November
    assert (context["count"], context["candidates"]) == (3, 42)
    first = context["papers"][0]
    assert first["authors_short"] == "Mira Okafor, Jonas Lindqvist, Priya Raman et al."
    assert first["code_links"] == [{"url": "https://github.com/example-lab/residual-gates", "label": "GitHub"}]
    assert first["like_url"] == "https://digest.example.org/feedback/tok-3f9a1c/2611.10001/like"
    assert context["unsubscribe_url"] == "https://digest.example.org/unsubscribe/tok-3f9a1c"
    assert context["feed_url"].startswith("https://digest.example.org/feeds/ada.xml?token=")
    assert context["settings_url"] == "https://digest.example.org/settings/set-8b41d0"  # the key, not the token


def test_the_issue_date_is_the_subscribers_local_date() -> None:
    plan = sample_plan(1)
    late = plan.subscriber.model_copy(update={"timezone": "Pacific/Auckland"})  # UTC+13 in November
    context = build_context(replace(plan, subscriber=late), now=SAMPLE_NOW.replace(hour=14), links=Links())
    assert context["issue_date"] == "2026-11-21"
    assert context["issue_date_long"] == "Saturday, 21 November 2026"


def test_without_base_url_the_links_are_empty_and_the_email_still_reads_well() -> None:
    env = make_environment(None)
    rendered = render_email(env, sample_plan(2), now=SAMPLE_NOW, links=Links())
    context = build_context(sample_plan(2), now=SAMPLE_NOW, links=Links())
    assert context["unsubscribe_url"] is None and context["feed_url"] is None and context["settings_url"] is None
    assert context["papers"][0]["like_url"] is None
    assert "More like this" not in rendered.html and "More like this" not in rendered.text
    assert "use your mail app's Unsubscribe button" in visible_text(rendered.html)


def test_a_non_http_paper_url_is_not_linked() -> None:
    plan = sample_plan(1)
    scored = plan.picks[0]
    bad = replace(scored, paper=replace(scored.paper, url="javascript:alert(1)", links=("javascript:x",)))
    context = build_context(replace(plan, picks=(bad,)), now=SAMPLE_NOW, links=Links())
    # Not linked as given: the paper's arXiv page is its link instead.
    assert context["papers"][0]["url"] == "https://arxiv.org/abs/2611.10001"
    assert context["papers"][0]["code_links"] == []
    rendered = render_email(make_environment(None), replace(plan, picks=(bad,)), now=SAMPLE_NOW, links=Links())
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text


def test_every_paper_has_a_link_an_arxiv_search_when_no_source_gave_one() -> None:
    plan = sample_plan(1)
    scored = plan.picks[0]
    bare = replace(scored.paper, url=None, arxiv_id=None, title="Gates: Deep (Message) Passing & 50% Less")
    context = build_context(replace(plan, picks=(replace(scored, paper=bare),)), now=SAMPLE_NOW, links=Links())
    paper = context["papers"][0]
    assert paper["url_is_search"] and paper["pdf_url"] is None and paper["arxiv_id"] is None
    assert paper["url"] == ARXIV_TITLE_SEARCH + "Gates+Deep+Message+Passing+50+Less"
    long_title = " ".join(f"Word{i}" for i in range(40))
    url = build_context(
        replace(plan, picks=(replace(scored, paper=replace(bare, title=long_title)),)), now=SAMPLE_NOW, links=Links()
    )["papers"][0]["url"]
    assert len(url) <= 90 and url.startswith(ARXIV_TITLE_SEARCH + "Word0+Word1+")  # fits one text line
    rendered = render_email(
        make_environment(None), replace(plan, picks=(replace(scored, paper=bare),)), now=SAMPLE_NOW, links=Links()
    )
    assert "Find on arXiv" in rendered.html and f"Find it on arXiv:\n   {paper['url']}\n" in rendered.text


@pytest.mark.parametrize(
    ("authors", "expected"),
    [((), ""), (("A",), "A"), (("A", "B", "C"), "A, B, C"), (("A", "B", "C", "D"), "A, B, C et al.")],
)
def test_short_authors(authors: tuple[str, ...], expected: str) -> None:
    assert short_authors(authors) == expected


def test_teaser_keeps_whole_sentences_when_they_fit_and_cuts_at_a_word_otherwise() -> None:
    sentences = "First sentence is here and it is long enough to count. " * 3 + "Last one."
    assert teaser(sentences, limit=120) == ("First sentence is here and it is long enough to count. " * 2).strip()
    cut = teaser("word " * 100, limit=50)
    assert cut.endswith("…") and len(cut) <= 50 and "wor…" not in cut
    assert teaser("Short.") == "Short."


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://arxiv.org/abs/2611.00001", True),
        ("http://example.org/x?a=1", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<b>x</b>", False),
        ("//example.org/x", False),
        ("https://exa mple.org", False),
        ("", False),
    ],
)
def test_safe_url(url: str, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok


MARKDOWN_ENV = make_environment(None)  # built once for every example


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
@example("<script>alert(1)</script>")
@example("[x](javascript:alert(1)) *bold* _it_ `code` # heading \\ back")
@example("1. not a list")
@example("- not a list either")
@example("> not a quote")
@example("=====")
@example("&copy; &#60; AT&T")
@example("<http://example.org> <a@b.org> <!-- c -->")
@example("\x02klzzwxh:0000\x03")
@example("{{ 7*7 }} {% raw %}")
@example("![img](http://x/y.png)")
def test_markdown_escape_round_trips_any_text_literally(text: str) -> None:
    """Whatever a title holds, escaped Markdown converted to HTML shows exactly that text (whitespace folded)."""
    html = MARKDOWN_ENV.markdown_to_html(f"A paragraph: {markdown_escape(text)}")
    expected = f"A paragraph: {one_line(text)}".strip()
    assert visible_text(html) == re.sub(r"\s+", " ", expected).strip()


# --- the HTML part is real email HTML --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    return render_email(make_environment(None), sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)


def test_html_parses_without_a_single_error_in_strict_html5(demo) -> None:  # type: ignore[no-untyped-def]
    assert html_errors(demo.html) == []
    html5lib.HTMLParser(strict=True).parse(demo.html)  # raises on the first parse error


def test_css_is_inlined_and_only_the_media_queries_stay_in_a_style_block(demo) -> None:  # type: ignore[no-untyped-def]
    assert re.search(r'<h2 class="title wrap" style="[^"]*font-size: 18px', demo.html)
    style_blocks = re.findall(r"<style>(.*?)</style>", demo.html, flags=re.S)
    assert len(style_blocks) == 1
    block = style_blocks[0]
    assert "@media (max-width: 620px)" in block and "@media (prefers-color-scheme: dark)" in block
    assert ".card-body { padding: 22px" not in block  # plain rules were inlined, not kept twice


def test_html_is_a_600px_single_column_with_a_hidden_preheader(demo) -> None:  # type: ignore[no-untyped-def]
    assert 'width="600"' in demo.html and "max-width: 600px" in demo.html
    preheader = re.search(r'<div class="preheader" style="([^"]*)">([^<]*)</div>', demo.html)
    assert preheader and "display: none" in preheader.group(1)
    assert preheader.group(2).startswith("5 picks from 42 new papers: Residual Gates")
    assert "<script" not in demo.html and "<img" not in demo.html


def test_ten_papers_stay_well_under_100_kb() -> None:
    rendered = render_email(make_environment(None), sample_plan(10), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert len(rendered.html.encode("utf-8")) < 60_000


def test_every_paper_is_in_every_part(demo) -> None:  # type: ignore[no-untyped-def]
    text = visible_text(demo.html)
    for scored in sample_plan(5).picks:
        assert scored.paper.title in text
        assert scored.paper.title in unwrapped(demo.text)
        assert scored.why in text


# --- Markdown subscribers ---------------------------------------------------------------------------------------


def test_markdown_subscribers_get_markdown_as_text_and_it_converted_as_html() -> None:
    plan = sample_plan(3, format="markdown")
    rendered = render_email(make_environment(None), plan, now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert rendered.text.startswith("# Your papers for Friday, 20 November 2026")
    assert "## 1. [Residual Gates Keep Deep Message Passing Networks From Oversmoothing](https://arxiv.org/abs/" in (
        rendered.text
    )
    assert html_errors(rendered.html) == []
    assert re.search(
        r'<a href="https://arxiv\.org/abs/2611\.10001" rel="noopener noreferrer"[^>]*>Residual', rendered.html
    )
    assert re.search(r"<ol[^>]*>", rendered.html)  # the at-a-glance list
    assert "@media (prefers-color-scheme: dark)" in rendered.html and 'width="600"' in rendered.html


def test_a_user_markdown_template_cannot_smuggle_html_past_the_sanitiser(tmp_path: Path) -> None:
    (tmp_path / "email.md.j2").write_text(
        "# Hi\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n[x](javascript:alert(3))\n",
        encoding="utf-8",
    )
    rendered = render_email(
        make_environment(tmp_path), sample_plan(1, format="markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS
    )
    assert "<script" not in rendered.html and "<img" not in rendered.html
    assert "onerror" not in rendered.html and "javascript:" not in rendered.html


def test_the_environment_is_reusable_across_subscribers_and_formats() -> None:
    env = make_environment(None)
    first = render_email(env, sample_plan(2, format="markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    render_email(env, sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    again = render_email(env, sample_plan(2, format="markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert first == again  # no state leaks between renders (the Markdown converter is reset)


def test_the_memoised_wordwrap_wraps_exactly_like_jinjas() -> None:
    from jinja2.filters import do_wordwrap
    from jinja2.sandbox import SandboxedEnvironment

    from digest.render import make_environment

    env = make_environment(None)
    plain = SandboxedEnvironment()
    texts = [
        "",
        "short",
        "a well-known, hyphen-heavy state-of-the-art sentence " * 5,
        "averyveryverylongwordwithoutanyspaces" * 4 + " tail",
        "tabs\tand\nnewlines\n\nkept   apart",
    ]
    for text in texts:
        for args in [(), (20,), (70, False), (30, True, "\n   "), (40, False, None, False)]:
            # twice: the second answer comes from the cache
            for _ in range(2):
                assert env.filters["wordwrap"](text, *args) == do_wordwrap(plain, text, *args)
    # Markup equals and hashes like str but wraps differently: neither may be served the other's answer.
    from markupsafe import Markup

    for value, wrapstring in [(Markup("<b>x</b> y & z"), Markup("<br>")), ("<b>x</b> y & z", "<br>")]:
        for _ in range(2):
            assert env.filters["wordwrap"](value, 5, True, wrapstring) == do_wordwrap(plain, value, 5, True, wrapstring)
    template = env.from_string("{{ t|wordwrap(12, break_long_words=False) }}")
    assert template.render(t="one two three four five") == "one two\nthree four\nfive"


def _columns(line: str) -> int:
    """Terminal columns: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


@pytest.mark.parametrize("count", [1, 10])
def test_the_text_part_reads_in_a_terminal(count: int) -> None:
    """Prose wrapped at 72 columns; only a line that is a link may be longer, and none passes 100 (a 32-character
    token, as `digest serve` issues, on a realistic host name)."""
    plan = sample_plan(count)
    first = plan.picks[0]
    long_title = "A Surprisingly Long Title About Message Passing " * 4 + "全角の題名も二桁"
    # The first paper has no link of its own (a daily-papers entry): it gets the longest, the title search.
    unlinked = replace(first.paper, title=long_title.strip(), url=None, arxiv_id=None)
    plan = replace(plan, picks=(replace(first, paper=unlinked), *plan.picks[1:]))
    links = Links("https://digest.research-group.org", "x" * 32, "ada")
    text = render_email(make_environment(None), plan, now=SAMPLE_NOW, links=links).text
    for line in text.splitlines():
        assert _columns(line) <= 100, line
        if "http" not in line:
            assert _columns(line) <= 72, line
    assert long_title.strip() in unwrapped(text)
    assert text.count("https://arxiv.org/abs/") == count - 1  # every paper's link, once, on its own line
    assert text.count("\n   https://arxiv.org/search/?searchtype=title&query=A+Surprisingly+Long+Title") == 1
    ranks = re.findall(r"^-{72}\n(\d+)\. ", text, flags=re.M)
    assert ranks == [str(i) for i in range(1, count + 1)]


def test_order_and_number_agree() -> None:
    """Cards are numbered in the order they are shown; no relevance figure contradicts that order."""
    plan = sample_plan(10)
    reordered = replace(plan, picks=(plan.picks[3], *plan.picks[:3], *plan.picks[4:]))  # diversity moved #4 up
    rendered = render_email(make_environment(None), reordered, now=SAMPLE_NOW, links=SAMPLE_LINKS)
    assert re.findall(r'<span class="rank"[^>]*>(\d+)\.</span>', rendered.html) == [str(i) for i in range(1, 11)]
    titles = re.findall(r'class="paper-title"[^>]*>([^<]*)<', rendered.html)
    assert titles == [s.paper.title for s in reordered.picks]
    assert "relevance" not in rendered.html and "relevance" not in rendered.text


def test_a_first_digest_welcomes_the_reader_in_every_part() -> None:
    plan = replace(sample_plan(3), first=True)
    for format in ("html", "markdown"):
        profile = plan.subscriber.model_copy(update={"format": format})
        rendered = render_email(
            make_environment(None), replace(plan, subscriber=profile), now=SAMPLE_NOW, links=Links()
        )
        for part in (rendered.html, unwrapped(rendered.text)):
            assert "Welcome! This first digest reaches back 7 days" in part
    later = render_email(make_environment(None), sample_plan(3), now=SAMPLE_NOW, links=Links())
    assert "Welcome" not in later.html and "Welcome" not in later.text
