"""Small text helpers the templates use: Markdown escaping, safe URLs, short author lists, teasers.

Everything here takes untrusted text (titles, abstracts, author names come from feeds anyone can write) and
returns text that a template can place without it turning into markup.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from digest.characters import INVISIBLE

# C0/C1 controls, zero-width marks, line separators, and the bidirectional embeddings, overrides and isolates (a
# right-to-left override makes a subject line read backwards). Python-Markdown also uses STX/ETX (\x02, \x03)
# as its own placeholder markers, so a title carrying them could smuggle stashed HTML back in: they must go.
_SPACES = re.compile(r"\s+")
# Characters with inline meaning in Python-Markdown (emphasis, code, links, headings' closing hashes, escapes).
_MD_INLINE = re.compile(r"([\\`*_\[\]#])")
# "&copy;" or "&#60;" would be read as an entity; a bare "&" is already shown literally.
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# "<" followed by a letter, "/", "!" or "?" starts raw HTML or an autolink; Python-Markdown has no backslash
# escape for "<", so it becomes an entity, which Markdown passes through and the HTML shows as "<".
_MD_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
# Block markers only count at the start of a line; values are folded to one line, so only their start matters.
_MD_BLOCK_START = re.compile(r"^(\d+)([.)])|^([>+\-=])")
_URL_SAFE = "/:?&=#%+,;@-.~!$"
_CODE_HOST_NAMES = {
    "github.com": "GitHub",
    "gitlab.com": "GitLab",
    "huggingface.co": "Hugging Face",
    "bitbucket.org": "Bitbucket",
    "codeberg.org": "Codeberg",
    "paperswithcode.com": "Papers with Code",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def one_line(text: str | None) -> str:
    """Control characters and every run of whitespace (CR/LF included) folded to one space."""
    if not text:
        return ""
    return _SPACES.sub(" ", INVISIBLE.sub(" ", str(text))).strip()


def markdown_escape(text: object) -> str:
    """Text that Python-Markdown renders literally: no emphasis, links, code, raw HTML, entities or blocks."""
    value = one_line("" if text is None else str(text))
    # Entities first: escaping "#" would turn "&#60;" into "&\#60;", which slips past the entity check and
    # still reaches the HTML as "<" once Markdown drops the backslash.
    value = _MD_ENTITY.sub("&amp;", value)
    value = _MD_INLINE.sub(r"\\\1", value)
    value = _MD_TAG_OPEN.sub("&lt;", value)

    def block(match: re.Match[str]) -> str:
        if match.group(1) is not None:  # "1. " would start an ordered list
            return f"{match.group(1)}\\{match.group(2)}" if match.group(2) == "." else match.group(0)
        marker = match.group(3)
        return "&#61;" if marker == "=" else f"\\{marker}"  # "=" has no backslash escape in Python-Markdown

    return _MD_BLOCK_START.sub(block, value, count=1)


def markdown_url(url: object) -> str:
    """A URL safe inside a Markdown link destination: spaces, quotes, brackets and parentheses percent-encoded."""
    return quote(one_line(str(url or "")), safe=_URL_SAFE)


def safe_url(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL, else None: autoescaping does not stop a javascript: href."""
    if not url:
        return None
    url = url.strip()
    if INVISIBLE.search(url) or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


ARXIV_ABS = "https://arxiv.org/abs/"
ARXIV_PDF = "https://arxiv.org/pdf/"
ARXIV_TITLE_SEARCH = "https://arxiv.org/search/?searchtype=title&query="
# A fallback search link stays short enough for a line of a plain-text email (a terminal is 80-100 columns),
# indented under its paper.
SEARCH_URL_LIMIT = 90


def title_search_url(title: str) -> str:
    """An arXiv title search for a paper no source linked: the title's words while the URL fits one line."""
    words = re.findall(r"[^\W_]+(?:[-'][^\W_]+)*", one_line(title))
    url = ARXIV_TITLE_SEARCH
    for index, word in enumerate(words):
        longer = url + ("+" if index else "") + quote(word, safe="")
        if len(longer) > SEARCH_URL_LIMIT and index:
            break
        url = longer
    return url


def columns(text: str) -> int:
    """How many terminal columns `text` takes: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@functools.lru_cache(maxsize=16384)
def wrap(text: str, width: int = 72, indent: int = 0) -> str:
    """One line of text wrapped into lines of at most `width` terminal columns (a CJK character counts two),
    every line after the first prefixed with `indent` spaces (the template places the first). A word longer
    than a line is cut. Cached: every subscriber who gets a paper gets the same wrapped teaser."""
    width = max(width, 10)
    lines: list[str] = []
    current, used = "", 0
    for word in one_line(text).split(" "):
        if not word:
            continue
        size = columns(word)
        if current and used + 1 + size <= width:
            current, used = f"{current} {word}", used + 1 + size
            continue
        if current:
            lines.append(current)
        while size > width:  # a URL or a CJK run with no space: cut where the line ends
            head, taken = "", 0
            for ch in word:
                if taken + columns(ch) > width:
                    break
                head, taken = head + ch, taken + columns(ch)
            lines.append(head)
            word, size = word[len(head) :], size - taken
        current, used = word, size
    if current:
        lines.append(current)
    return ("\n" + " " * indent).join(lines)


def short_authors(authors: Sequence[str], keep: int = 3) -> str:
    """'A, B, C et al.' for long lists; the whole list when it has `keep` names or fewer."""
    names = [one_line(a) for a in authors if one_line(a)]
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + " et al."


def code_label(url: str) -> str:
    """'GitHub' for a github.com link; the host name for any other."""
    host = (urlsplit(url).hostname or "").lower().removeprefix("www.")
    for known, name in _CODE_HOST_NAMES.items():
        if host == known or host.endswith("." + known):
            return name
    return host or "Code"


def teaser(abstract: str, limit: int = 240, *, whole_sentences: bool = True) -> str:
    """The abstract's opening in at most `limit` characters: whole sentences when they fill at least half of it
    (`whole_sentences`), else cut at a word and marked with an ellipsis (the email and the feeds both use it)."""
    text = one_line(abstract)
    if len(text) <= limit:
        return text
    if whole_sentences:
        taken = ""
        for sentence in _SENTENCE_END.split(text):
            candidate = f"{taken} {sentence}".strip()
            if len(candidate) > limit:
                break
            taken = candidate
        # A single short first sentence makes a thin teaser; better to fill the space and cut at a word.
        if len(taken) >= limit // 2:
            return taken
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a very long word (a URL) is cut in the middle rather than dropped
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"
