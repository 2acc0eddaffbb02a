"""JSON paper lists: the Hugging Face daily-papers API shape, and our own simple shape.

Our shape is a list (or {"papers": [...]}) of objects:
    {"id"?: arXiv id or DOI, "title": str, "abstract": str, "url"?: str, "authors"?: [str],
     "categories"?: [str], "published"?: "YYYY-MM-DD"}
The Hugging Face shape is a list of objects whose "paper" object holds id, title, summary, authors
([{"name": ...}]) and publishedAt.
"""

from __future__ import annotations

import json
from typing import Any

from digest.errors import IngestError
from digest.paper import Paper, make_paper, parse_arxiv_id


def _strings(value: Any, field: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{where}: {field!r} must be a list of strings")
    names = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
        elif isinstance(item, str):
            names.append(item)
        else:
            raise ValueError(f"{where}: {field!r} must be a list of strings or {{'name': ...}} objects")
    return names


def _text(obj: dict[str, Any], keys: tuple[str, ...], where: str, required: bool = True) -> str:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {key!r} must be a string")
    if required:
        raise ValueError(f"{where}: missing {keys[0]!r}")
    return ""


def _paper(item: Any, where: str) -> Paper:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object with title and abstract")
    if isinstance(item.get("paper"), dict):  # Hugging Face daily-papers API
        inner = item["paper"]
        title = _text(inner, ("title",), where) if inner.get("title") else _text(item, ("title",), where)
        abstract = _text(inner, ("summary", "abstract"), where)
        identifier = inner.get("id") if isinstance(inner.get("id"), str) else None
        return make_paper(
            title=title,
            abstract=abstract,
            authors=_strings(inner.get("authors"), "authors", where),
            arxiv=identifier,
            url=f"https://arxiv.org/abs/{identifier}" if identifier and parse_arxiv_id(identifier) else None,
            published=(inner.get("publishedAt") or "")[:10] or None,
        )
    identifier = item.get("id")
    if identifier is not None and not isinstance(identifier, str):
        raise ValueError(f"{where}: 'id' must be a string")
    doi = identifier if identifier and identifier.lower().startswith(("10.", "doi:")) else item.get("doi")
    published = item.get("published")
    if published is not None and not isinstance(published, str):
        raise ValueError(f"{where}: 'published' must be a date string like 2024-03-14")
    url = item.get("url")
    if url is not None and not isinstance(url, str):
        raise ValueError(f"{where}: 'url' must be a string")
    return make_paper(
        title=_text(item, ("title",), where),
        abstract=_text(item, ("abstract", "summary"), where),
        authors=_strings(item.get("authors"), "authors", where),
        categories=_strings(item.get("categories"), "categories", where),
        url=url,
        arxiv=identifier if identifier and not doi else None,
        doi=doi if isinstance(doi, str) else None,
        published=published[:10] if published else None,
    )


def parse_json(text: str, source: str) -> tuple[list[Paper], list[str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        data = data["papers"]
    if not isinstance(data, list):
        raise IngestError(
            f'{source}: JSON must be a list of papers (or {{"papers": [...]}}), got {type(data).__name__}'
        )
    papers: list[Paper] = []
    problems: list[str] = []
    for number, item in enumerate(data, start=1):
        try:
            papers.append(_paper(item, f"{source}: entry {number}"))
        except ValueError as exc:
            problems.append(f"{exc}; skipped")
    if not papers and not problems:
        raise IngestError(f"{source}: JSON list is empty")
    return papers, problems
