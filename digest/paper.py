"""What a paper is, and how we tell that two records are the same paper."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field, replace

# New-style ids (0704.0001, 2403.01234) and old-style (hep-th/9901001, math.AG/0601001), optional version.
# The subject class of an old-style id (".AG") is not part of the identifier: math.AG/0601001 is math/0601001.
# Digits never run on: 2403.012345 is not an arXiv id followed by a 5.
_NEW_ARXIV = r"(?<![\w.])(?P<new>\d{4}\.\d{4,5})(?!\d)"
_OLD_ARXIV = r"(?<![\w.-])(?P<old>[a-z][a-z\-]+)(?:\.[A-Z]{2})?/(?P<number>\d{7})(?!\d)"
ARXIV_RE = re.compile(rf"(?:{_NEW_ARXIV}|{_OLD_ARXIV})(?:v(?P<version>\d+))?", re.IGNORECASE)
ARXIV_URL_RE = re.compile(
    rf"arxiv\.org/(?:abs|pdf|html)/(?:{_NEW_ARXIV}|{_OLD_ARXIV})(?:v(?P<version>\d+))?", re.IGNORECASE
)
_ARXIV_OAI_RE = re.compile(rf"oai:arxiv\.org:(?:{_NEW_ARXIV}|{_OLD_ARXIV})(?:v(?P<version>\d+))?", re.IGNORECASE)
DOI_RE = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)
URL_RE = re.compile(r"https?://[^\s<>\"')\]}]+", re.IGNORECASE)
CODE_HOSTS = ("github.com", "gitlab.com", "huggingface.co", "bitbucket.org", "codeberg.org", "paperswithcode.com")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")


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


def clean_text(text: str) -> str:
    """Plain, single-spaced text: control characters, zero-width marks and CR/LF runs folded to spaces."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    return re.sub(r"\s+", " ", text).strip()


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
    authors: list[str] | tuple[str, ...] = (),
    url: str | None = None,
    arxiv: str | None = None,
    doi: str | None = None,
    categories: list[str] | tuple[str, ...] = (),
    published: str | None = None,
) -> Paper:
    """Build a clean Paper from raw fields: text folded, ids parsed from whatever carries them."""
    title = clean_text(title)
    abstract = clean_text(abstract)
    # An explicit id may be bare ("2403.01234v2", "arXiv:...") or an arXiv URL; a URL only counts when it is
    # an arXiv URL, so a journal's "/articles/2024.12345" is never mistaken for an arXiv id.
    parsed = None
    if arxiv:
        parsed = parse_arxiv_id(arxiv) or arxiv_id_from_url(arxiv)
    if parsed is None and url:
        parsed = arxiv_id_from_url(url)
    found_doi = normalise_doi(doi) if doi else None
    return Paper(
        title=title,
        abstract=abstract,
        authors=tuple(a for a in (clean_text(a) for a in authors) if a),
        url=url.strip() if url else (f"https://arxiv.org/abs/{parsed.base}" if parsed else None),
        arxiv_id=parsed.base if parsed else None,
        arxiv_version=parsed.version if parsed else None,
        doi=found_doi,
        categories=tuple(dict.fromkeys(c.strip() for c in categories if c and c.strip())),
        published=published,
        links=tuple(find_links(abstract)),
    )


def with_store_fields(paper: Paper, *, id: str, first_seen: str, sources: tuple[str, ...]) -> Paper:
    return replace(paper, id=id, first_seen=first_seen, sources=sources)
