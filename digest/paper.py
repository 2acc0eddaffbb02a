"""What a paper is, and how we tell that two records are the same paper."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field, replace

# New-style ids (0704.0001, 2403.01234) and old-style (hep-th/9901001, math.AG/0601001), optional version.
_NEW_ARXIV = r"(?P<new>\d{4}\.\d{4,5})"
_OLD_ARXIV = r"(?P<old>[a-z][a-z\-]+(?:\.[A-Z]{2})?/\d{7})"
ARXIV_RE = re.compile(rf"(?:{_NEW_ARXIV}|{_OLD_ARXIV})(?:v(?P<version>\d+))?", re.IGNORECASE)
ARXIV_URL_RE = re.compile(
    rf"arxiv\.org/(?:abs|pdf|html)/(?:{_NEW_ARXIV}|{_OLD_ARXIV})(?:v(?P<version>\d+))?", re.IGNORECASE
)
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
    base = match.group("new") or match.group("old")
    if match.group("old"):
        archive, number = base.split("/")
        base = f"{archive.lower()}/{number}"
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


_LATEX_CMD = re.compile(r"\\[a-zA-Z]+\*?\s*")
_LATEX_ACCENT = re.compile(r"\\[`'^\"~=.uvHtcdbk]\{?([a-zA-Z])\}?")


def title_key(title: str) -> str:
    """Case, punctuation, whitespace, accents and LaTeX markup folded, so the same title always matches."""
    text = html.unescape(title)
    text = _LATEX_ACCENT.sub(r"\1", text)
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
    parsed = None
    for candidate in (arxiv, url):
        if candidate and parsed is None:
            parsed = parse_arxiv_id(candidate, anywhere=candidate is url)
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
