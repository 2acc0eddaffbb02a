"""The one context object every template receives. Plain data only (str, int, float, bool, None, lists,
dicts): it is safe to hand to a sandboxed user template, and easy to dump as JSON when writing one."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from digest.links import Links
from digest.paper import Paper
from digest.picks import DigestPlan, Scored
from digest.render.text import (
    ARXIV_ABS,
    ARXIV_PDF,
    code_label,
    one_line,
    safe_url,
    short_authors,
    teaser,
    title_search_url,
)

# English names, not the process locale's: the same digest must render the same way on every machine.
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
PREHEADER_LIMIT = 150


def short_date(iso: str | None) -> str:
    """'2026-11-19' (or a longer ISO timestamp) as '19 Nov 2026'; anything else as given, or ''."""
    text = one_line(iso)
    try:
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
    except ValueError:
        return text[:40]
    if text[4:5] != "-" or text[7:8] != "-" or not 1 <= month <= 12 or not 1 <= day <= 31:
        return text[:40]
    return f"{day} {_MONTHS[month - 1][:3]} {year}"


def reading_links(paper: Paper) -> tuple[str, str | None, bool]:
    """Where to read a paper: (page, PDF or None, whether the page is only a search). Every paper has a page:
    the source's link, else its arXiv abstract, else an arXiv title search."""
    arxiv_page = f"{ARXIV_ABS}{paper.arxiv_id}" if paper.arxiv_id else None
    pdf = f"{ARXIV_PDF}{paper.arxiv_id}" if paper.arxiv_id else None
    page = safe_url(paper.url) or arxiv_page
    if page is None:
        return title_search_url(paper.title), None, True
    return page, pdf, False


@functools.lru_cache(maxsize=4096)
def _paper_facts(paper: Paper) -> tuple[tuple[str, Any], ...]:
    """What a paper shows, the same in every subscriber's digest: worked out once per paper in a big send
    (cleaning titles and cutting teasers was a third of the cost of rendering)."""
    paper_id = paper.id or paper.stable_id()
    code = [url for url in (safe_url(u) for u in paper.code_links) if url]
    page, pdf, search_only = reading_links(paper)
    return (
        ("id", paper_id),
        ("title", one_line(paper.title)),
        ("authors", tuple(one_line(a) for a in paper.authors)),
        ("authors_short", short_authors(paper.authors)),
        ("url", page),
        ("url_is_search", search_only),
        ("pdf_url", pdf),
        ("arxiv_id", one_line(paper.arxiv_id) or None),
        ("date", short_date(paper.published)),
        ("code_links", tuple((url, code_label(url)) for url in code)),
        ("teaser", teaser(paper.abstract)),
        ("abstract", one_line(paper.abstract)),
        ("categories", paper.categories),
        ("published", paper.published),
    )


def _paper(rank: int, scored: Scored, links: Links) -> dict[str, Any]:
    facts = dict(_paper_facts(scored.paper))
    paper_id = facts["id"]
    return {
        "rank": rank,
        **facts,
        # Fresh lists and dicts for each render: a template must never change what the next one sees.
        "authors": list(facts["authors"]),
        "code_links": [{"url": url, "label": label} for url, label in facts["code_links"]],
        "categories": list(facts["categories"]),
        "score": round(float(scored.score), 3),
        "why": one_line(scored.why),
        "like_url": links.feedback(paper_id, "like"),
        "dislike_url": links.feedback(paper_id, "dislike"),
    }


def _preheader(count: int, candidates: int, titles: list[str]) -> str:
    """The grey line a mail client shows after the subject; counts first, then as many titles as fit."""
    head = f"{count} pick{'s' if count != 1 else ''} from {candidates} new paper{'s' if candidates != 1 else ''}: "
    text = head + " · ".join(titles)
    if len(text) <= PREHEADER_LIMIT:
        return text
    return text[: PREHEADER_LIMIT - 1].rsplit(" ", 1)[0].rstrip(" ·,;:") + "…"


def build_context(plan: DigestPlan, *, now: datetime, links: Links) -> dict[str, Any]:
    """Everything a template may show about one digest (documented in the README's template table)."""
    profile = plan.subscriber
    local = now.astimezone(profile.zone)
    papers = [_paper(rank, scored, links) for rank, scored in enumerate(plan.picks, start=1)]
    return {
        "subscriber": {
            "id": profile.id,
            "name": profile.name,
            "email": profile.email,
            "format": profile.format,
            "keywords": list(profile.interests.keywords),
            "schedule": profile.schedule,
            "timezone": profile.timezone,
            "lookback_days": profile.lookback_days,
        },
        "first_digest": plan.first,
        "issue_date": local.date().isoformat(),
        "issue_date_long": f"{_DAYS[local.weekday()]}, {local.day} {_MONTHS[local.month - 1]} {local.year}",
        "issue_date_short": f"{local.day} {_MONTHS[local.month - 1][:3]} {local.year}",
        "papers": papers,
        "count": len(papers),
        "candidates": plan.candidates,
        "preheader": _preheader(len(papers), plan.candidates, [p["title"] for p in papers]),
        "links_enabled": links.enabled,
        "unsubscribe_url": links.unsubscribe(),
        "feed_url": links.feed(),
        "settings_url": links.settings(),
    }
