"""JSON paper lists: the Hugging Face daily-papers API shape, and our own simple shape.

Our shape is a list (or {"papers": [...]}) of objects:
    {"id"?: arXiv id or DOI, "doi"?: str, "title": str, "abstract": str, "url"?: str, "authors"?: [str],
     "categories"?: [str], "published"?: "YYYY-MM-DD"}
Every identifier given is kept: an arXiv "id" and a "doi" both; an arXiv DOI (10.48550/arXiv.ID) also gives
the arXiv id. The Hugging Face shape is a list of objects whose "paper" object holds id, title, summary, authors
([{"name": ...}]) and publishedAt.

One entry that cannot be read is one problem line naming the file and the entry; the other entries still count.
"""

from __future__ import annotations

import json
from typing import Any

from digest.errors import IngestError
from digest.ingest.text import describe, one_line
from digest.paper import Paper, arxiv_id_from_url, make_paper, normalise_doi, parse_arxiv_id


class _Invalid(ValueError):
    """An entry that breaks the shape; its message already names the file and the entry."""


def _strings(value: Any, field: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _Invalid(f"{where}: {field!r} must be a list of strings")
    names = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
        elif isinstance(item, str):
            names.append(item)
        else:
            raise _Invalid(f"{where}: {field!r} must be a list of strings or {{'name': ...}} objects")
    return names


def _text(obj: dict[str, Any], keys: tuple[str, ...], where: str, required: bool = True) -> str:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if value is not None and not isinstance(value, str):
            raise _Invalid(f"{where}: {key!r} must be a string")
    if required:
        raise _Invalid(f"{where}: missing {keys[0]!r}")
    return ""


def _optional_string(obj: dict[str, Any], key: str, where: str, hint: str = "a string") -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _Invalid(f"{where}: {key!r} must be {hint}")
    return value or None


def _identifiers(identifier: str | None, doi: str | None) -> tuple[str | None, list[str]]:
    """Every identifier an entry gives: (the arXiv id or URL, the DOIs). An 'id' may be either; an arXiv DOI,
    in 'id' or 'doi', also names the arXiv id (make_paper reads it from there)."""
    dois = [doi] if doi else []
    if identifier and not (parse_arxiv_id(identifier) or arxiv_id_from_url(identifier)) and normalise_doi(identifier):
        return None, [identifier, *dois]
    return identifier, dois


def _paper(item: Any, where: str) -> Paper:
    if not isinstance(item, dict):
        raise _Invalid(f"{where}: must be an object with title and abstract")
    if isinstance(item.get("paper"), dict):  # Hugging Face daily-papers API
        inner = item["paper"]
        title = _text(inner, ("title",), where) if inner.get("title") else _text(item, ("title",), where)
        abstract = _text(inner, ("summary", "abstract"), where)
        identifier = inner.get("id") if isinstance(inner.get("id"), str) else None
        published = _optional_string(inner, "publishedAt", where, "a date string like 2024-03-14T17:59:01Z")
        arxiv, dois = _identifiers(identifier, inner["doi"] if isinstance(inner.get("doi"), str) else None)
        return make_paper(
            title=title,
            abstract=abstract,
            authors=_strings(inner.get("authors"), "authors", where),
            arxiv=arxiv,
            doi=dois,
            url=f"https://arxiv.org/abs/{identifier}" if identifier and parse_arxiv_id(identifier) else None,
            published=published[:10] if published else None,
        )
    identifier = _optional_string(item, "id", where)
    doi = _optional_string(item, "doi", where)
    published = _optional_string(item, "published", where, "a date string like 2024-03-14")
    url = _optional_string(item, "url", where)
    arxiv, dois = _identifiers(identifier, doi)
    return make_paper(
        title=_text(item, ("title",), where),
        abstract=_text(item, ("abstract", "summary"), where),
        authors=_strings(item.get("authors"), "authors", where),
        categories=_strings(item.get("categories"), "categories", where),
        url=url,
        arxiv=arxiv,
        doi=dois,
        published=published[:10] if published else None,
    )


def _integer(digits: str) -> int | float:
    """JSON integers: a number too long for int() (Python refuses over 4,300 digits) is read as a float, so one
    absurd number in a field we do not even use cannot make the whole file unreadable."""
    return int(digits) if len(digits) <= 100 else float(digits)


def parse_json(text: str, source: str) -> tuple[list[Paper], list[str]]:
    try:
        data = json.loads(text, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise IngestError(f"{source}: JSON nested too deeply to read") from None
    except (ValueError, OverflowError) as exc:
        raise IngestError(f"{source}: invalid JSON ({one_line(exc)})") from None
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        data = data["papers"]
    if not isinstance(data, list):
        raise IngestError(
            f'{source}: JSON must be a list of papers (or {{"papers": [...]}}), got {type(data).__name__}'
        )
    papers: list[Paper] = []
    problems: list[str] = []
    for number, item in enumerate(data, start=1):
        where = f"{source}: entry {number}"
        try:
            papers.append(_paper(item, where))
        except _Invalid as exc:
            problems.append(f"{one_line(exc)}; skipped")
        except Exception as exc:  # one entry we cannot read is that entry's problem, never the whole file's
            problems.append(f"{where}: cannot read ({describe(exc)}); skipped")
    if not papers and not problems:
        raise IngestError(f"{source}: JSON list is empty")
    return papers, problems
