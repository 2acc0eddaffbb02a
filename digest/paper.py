"""What a paper is, and how we tell that two records are the same paper."""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from digest.characters import INVISIBLE_BUT_LINES

# New-style ids (0704.0001, 2403.01234) and old-style (hep-th/9901001, math.AG/0601001), optional version.
# The subject class of an old-style id (".AG") is not part of the identifier: math.AG/0601001 is math/0601001.
# Digits never run on: 2403.012345 is not an arXiv id followed by a 5.
_NEW_ARXIV = r"(?<![\w.])(?P<new>\d{4}\.\d{4,5})(?!\d)"
_OLD_ARXIV = r"(?<![\w.-])(?P<old>[a-z][a-z\-]+)(?:\.[A-Z]{2})?/(?P<number>\d{7})(?!\d)"
# A version has at most 6 digits: more is not an arXiv id (and would not fit an SQLite integer).
_VERSION = r"(?:v(?P<version>\d{1,6})(?!\d))?"
ARXIV_RE = re.compile(rf"(?:{_NEW_ARXIV}|{_OLD_ARXIV}){_VERSION}", re.IGNORECASE)
ARXIV_URL_RE = re.compile(rf"arxiv\.org/(?:abs|pdf|html)/(?:{_NEW_ARXIV}|{_OLD_ARXIV}){_VERSION}", re.IGNORECASE)
_ARXIV_OAI_RE = re.compile(rf"oai:arxiv\.org:(?:{_NEW_ARXIV}|{_OLD_ARXIV}){_VERSION}", re.IGNORECASE)
DOI_RE = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)
# arXiv's own DataCite DOIs: 10.48550/arXiv.2403.01234 names the arXiv paper 2403.01234.
_ARXIV_DOI_RE = re.compile(r"10\.48550/arxiv\.(?P<id>\S+)", re.IGNORECASE)
URL_RE = re.compile(r"https?://[^\s<>\"')\]{}]+", re.IGNORECASE)
CODE_HOSTS = ("github.com", "gitlab.com", "huggingface.co", "bitbucket.org", "codeberg.org", "paperswithcode.com")
# Control characters, zero-width marks, line/paragraph separators, BOMs and lone surrogates (which SQLite cannot
# store) become spaces.
# Every Unicode Bidi_Control character (LRM/RLM, ALM, embeddings, overrides, isolates): invisible, and able to
# reorder what follows them in a mail client or a Subject line. Removed outright.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# Caps on what one source can put into a paper (and so into every email that carries it).
TITLE_MAX = 300
ABSTRACT_MAX = 10_000
AUTHORS_MAX = 100
AUTHOR_MAX = 200
CATEGORIES_MAX = 50
CATEGORY_MAX = 100
URL_MAX = 2_048
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class ArxivId:
    base: str
    version: int | None


def parse_arxiv_id(text: str, *, anywhere: bool = False) -> ArxivId | None:
    """'2403.01234v2' -> ArxivId('2403.01234', 2); also old-style 'hep-th/9901001'."""
    text = text.strip()
    match = ARXIV_URL_RE.search(text) if anywhere else None
    if match is None:
        match = (ARXIV_RE.search if anywhere else ARXIV_RE.fullmatch)(re.sub(r"^arxiv:", "", text, flags=re.I))
    if not match:
        return None
    if match.group("new"):
        base = match.group("new")
    else:
        base = f"{match.group('old').lower()}/{match.group('number')}"
    version = match.group("version")
    return ArxivId(base, int(version) if version else None)


def normalise_doi(text: str) -> str | None:
    match = DOI_RE.search(text)
    return match.group(1).rstrip(".,;").lower() if match else None


def arxiv_id_from_doi(text: str) -> ArxivId | None:
    """The arXiv id an arXiv DOI names (10.48550/arXiv.2403.01234, any case, bare or as a doi.org URL), else None."""
    doi = normalise_doi(text)
    match = _ARXIV_DOI_RE.fullmatch(doi) if doi else None
    return parse_arxiv_id(match.group("id")) if match else None


def clean_text(text: str) -> str:
    """Plain, single-spaced text: control characters, zero-width marks and CR/LF runs folded to spaces, bidi
    controls removed."""
    text = unicodedata.normalize("NFC", _BIDI.sub("", text))
    text = INVISIBLE_BUT_LINES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return re.sub(r"\s+", " ", text).strip()


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters: cut at the last word boundary that keeps at least half, ending with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    head = head[:space] if space >= limit // 2 else head[: limit - 1]
    return (head.rstrip(" ,;:.-\u2013\u2014") or head[: limit - 1]) + ELLIPSIS


def arxiv_id_from_url(text: str) -> ArxivId | None:
    """The arXiv id of an arxiv.org abs/pdf/html URL (or an oai:arXiv.org: identifier), else None."""
    match = ARXIV_URL_RE.search(text) or _ARXIV_OAI_RE.search(text)
    if not match:
        return None
    base = match.group("new") or f"{match.group('old').lower()}/{match.group('number')}"
    version = match.group("version")
    return ArxivId(base, int(version) if version else None)


_LATEX_CMD = re.compile(r"\\[a-zA-Z]+\*?\s*")
# Accents: symbol commands take the next letter (\"o, \'{e}); letter commands (\v{c}, \c c) need a brace or a
# space, so that \textbf is not read as the tie accent \t on "e".
_LATEX_ACCENT = re.compile(r"\\[`'^\"~=.]\{?([a-zA-Z])\}?|\\[uvHtcdbk](?:\{([a-zA-Z])\}|\s+([a-zA-Z])(?![a-zA-Z]))")
_GREEK = {
    name: chr(code)
    for name, code in (
        ("alpha", 0x3B1),
        ("beta", 0x3B2),
        ("gamma", 0x3B3),
        ("delta", 0x3B4),
        ("epsilon", 0x3B5),
        ("varepsilon", 0x3B5),
        ("zeta", 0x3B6),
        ("eta", 0x3B7),
        ("theta", 0x3B8),
        ("vartheta", 0x3B8),
        ("iota", 0x3B9),
        ("kappa", 0x3BA),
        ("lambda", 0x3BB),
        ("mu", 0x3BC),
        ("nu", 0x3BD),
        ("xi", 0x3BE),
        ("pi", 0x3C0),
        ("rho", 0x3C1),
        ("sigma", 0x3C3),
        ("tau", 0x3C4),
        ("upsilon", 0x3C5),
        ("phi", 0x3C6),
        ("varphi", 0x3C6),
        ("chi", 0x3C7),
        ("psi", 0x3C8),
        ("omega", 0x3C9),
        ("Gamma", 0x393),
        ("Delta", 0x394),
        ("Theta", 0x398),
        ("Lambda", 0x39B),
        ("Xi", 0x39E),
        ("Pi", 0x3A0),
        ("Sigma", 0x3A3),
        ("Phi", 0x3A6),
        ("Psi", 0x3A8),
        ("Omega", 0x3A9),
    )
}
_LATEX_GREEK = re.compile(r"\\(" + "|".join(sorted(_GREEK, key=len, reverse=True)) + r")(?![a-zA-Z])")


def title_key(title: str) -> str:
    """Case, punctuation, whitespace, accents and LaTeX markup folded, so the same title always matches.

    LaTeX accents become the letter (Schr\\"odinger = Schrödinger = Schrodinger), Greek letter commands the Greek
    letter ($\\alpha$ = α), other commands vanish (\\textbf{Deep} = Deep); compatibility forms (ligatures,
    full-width letters) and combining marks are folded by NFKD.
    """
    text = html.unescape(title)
    text = _LATEX_ACCENT.sub(lambda m: m.group(1) or m.group(2) or m.group(3), text)
    text = _LATEX_GREEK.sub(lambda m: _GREEK[m.group(1)], text)
    text = _LATEX_CMD.sub("", text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold()
    text = re.sub(r"[^\w]+|_", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def find_links(text: str) -> list[str]:
    """Code and project links mentioned in an abstract, in order, without duplicates."""
    seen: dict[str, None] = {}
    for url in URL_RE.findall(text):
        url = url.rstrip(".,;:")
        seen.setdefault(url, None)
    return list(seen)


def is_code_link(url: str) -> bool:
    return any(host in url.lower() for host in CODE_HOSTS)


@dataclass(frozen=True)
class Paper:
    """One record of a paper as read from a source (before, or after, it is matched in the store)."""

    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    url: str | None = None
    arxiv_id: str | None = None
    arxiv_version: int | None = None
    doi: str | None = None
    categories: tuple[str, ...] = ()
    published: str | None = None
    links: tuple[str, ...] = ()
    id: str | None = None
    first_seen: str | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return title_key(self.title)

    def stable_id(self) -> str:
        """The id a paper keeps forever: arXiv id, else DOI, else a hash of its normalised title."""
        if self.arxiv_id:
            return self.arxiv_id
        if self.doi:
            return f"doi:{self.doi}"
        return "t-" + hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:12]

    @property
    def code_links(self) -> tuple[str, ...]:
        return tuple(url for url in self.links if is_code_link(url))


def make_paper(
    *,
    title: str,
    abstract: str,
    authors: Iterable[str] = (),
    url: str | None = None,
    arxiv: str | None = None,
    doi: str | Iterable[str] | None = None,
    categories: Iterable[str] = (),
    published: str | None = None,
) -> Paper:
    """Build a clean Paper from raw fields: text folded and capped, ids parsed from whatever carries them.

    `doi` may be several DOIs a source gives: an arXiv DOI (10.48550/arXiv.ID) also gives the arXiv id; the
    paper keeps a publisher's DOI when there is one, else the arXiv DOI, so it matches either later.
    """
    title = shorten(clean_text(title), TITLE_MAX)
    abstract = shorten(clean_text(abstract), ABSTRACT_MAX)
    url = clean_text(url) if url else None
    if url and (len(url) > URL_MAX or " " in url):
        url = None
    dois = list(dict.fromkeys(d for d in (normalise_doi(c) for c in _candidates(doi)) if d))
    # The arXiv id, strongest evidence first: the explicit id (bare "2403.01234v2", "arXiv:...", an arXiv DOI or
    # an arXiv URL), then arXiv DOIs, then an arXiv URL. A URL only counts when it is an arXiv URL, so a journal's
    # "/articles/2024.12345" is never mistaken for an arXiv id.
    named = [
        parse_arxiv_id(arxiv) or arxiv_id_from_url(arxiv) or arxiv_id_from_doi(arxiv) if arxiv else None,
        *(arxiv_id_from_doi(d) for d in dois),
        arxiv_id_from_url(url) if url else None,
    ]
    found = [a for a in named if a is not None]
    base = found[0].base if found else None
    version = next((a.version for a in found if a.base == base and a.version is not None), None)
    # An arXiv DOI that names another arXiv paper than the one chosen contradicts it: dropped, never matched on.
    dois = [d for d in dois if (of := arxiv_id_from_doi(d)) is None or of.base == base]
    publisher = [d for d in dois if arxiv_id_from_doi(d) is None]
    cleaned_authors = (shorten(clean_text(a), AUTHOR_MAX) for a in authors)
    cleaned_categories = (clean_text(c) for c in categories if c)
    # Unknown categories longer than any real one are dropped rather than cut: a cut category names nothing.
    kept_categories = dict.fromkeys(c for c in cleaned_categories if c and len(c) <= CATEGORY_MAX)
    return Paper(
        title=title,
        abstract=abstract,
        authors=tuple(itertools.islice((a for a in cleaned_authors if a), AUTHORS_MAX)),
        url=url or (f"https://arxiv.org/abs/{base}" if base else None),
        arxiv_id=base,
        arxiv_version=version,
        doi=next(iter(publisher or dois), None),
        categories=tuple(kept_categories)[:CATEGORIES_MAX],
        published=(clean_text(published)[:10] or None) if published else None,
        links=tuple(find_links(abstract)),
    )


def _candidates(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [v for v in value if v]
