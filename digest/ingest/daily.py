"""Daily-papers text digests: the Hugging Face "Daily Papers" page saved as text.

Two layouts are known. The spaced one: header lines (`new`, `Get trending papers in your email inbox!`,
`Subscribe`, `byAK and the research community`, a date such as `Mar 14`), then title / blank / abstract /
blank. The compact one: no blank lines, no date, and `Subscribe` glued to the first title. In both, titles
and abstracts alternate; we tell them apart by shape, so a title with no abstract is caught, not misread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from digest.ingest.text import describe, repair_prose
from digest.paper import Paper, make_paper

HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "get trending papers in your email inbox once a day!",
        "subscribe",
        "byak and the research community",
        "daily papers",
    }
)
_DATE = re.compile(
    r"(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? (?P<day>\d{1,2})(?:,? (?P<year>\d{4}))?",
    re.IGNORECASE,
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


def _is_header(line: str) -> bool:
    return line.casefold() in HEADER_LINES or bool(_DATE.fullmatch(line))


def _is_abstract(line: str) -> bool:
    """Abstracts are prose: long, or several sentences; titles are short and rarely end in a full stop."""
    words = len(line.split())
    if len(line) >= 300:
        return True
    return words >= 12 and (line.rstrip().endswith(".") or ". " in line)


def _lines(text: str) -> list[str]:
    """Lines ended by LF, CRLF or CR only: str.splitlines() would also split at \\v, \\f, \\x1c-\\x1e, \\x85 and
    U+2028, stray characters inside one abstract, and so misnumber the lines and cut the abstract in two."""
    return _LINE_BREAK.split(text.removesuffix("\n"))


def digest_date(line: str, today: date | None) -> date | None:
    """The day a header such as "Mar 14" names: with no year, the latest such day not after `today` (a digest
    is about papers already out); None when it names no real day or the year cannot be told."""
    match = _DATE.fullmatch(line)
    if match is None:
        return None
    month, day = _MONTHS.index(match.group("month").lower()) + 1, int(match.group("day"))
    years = [int(match.group("year"))] if match.group("year") else ([today.year, today.year - 1] if today else [])
    for year in years:
        try:
            found = date(year, month, day)
        except ValueError:
            continue
        if match.group("year") or today is None or found <= today:
            return found
    return None


def looks_like_daily(text: str) -> bool:
    head = [line.strip() for line in _lines(text)[:12] if line.strip()]
    return any(_is_header(line) or line.startswith("Subscribe") for line in head)


def parse_daily(text: str, today: date | None = None) -> tuple[list[Paper], list[Problem]]:
    """Papers in file order, and the entries that could not be read (with their line numbers). The header's date
    (the day of the digest) becomes each paper's date until a better source gives the real one."""
    lines: list[tuple[int, str]] = []
    in_header = True
    day: date | None = None
    for number, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or _is_header(line):
            if in_header and day is None and line:
                day = digest_date(line, today)
            continue
        if in_header and line.startswith("Subscribe") and len(line) > len("Subscribe"):
            line = line[len("Subscribe") :].strip()
        in_header = False
        lines.append((number, line))

    papers: list[Paper] = []
    problems: list[Problem] = []
    index = 0
    while index < len(lines):
        number, title = lines[index]
        following = lines[index + 1][1] if index + 1 < len(lines) else None
        if len(title) >= 300:
            problems.append(Problem(number, f"abstract with no title ({title[:60]!r}...); skipped"))
            index += 1
            continue
        if following is None or not _is_abstract(following):
            problems.append(Problem(number, f"title {title[:80]!r} has no abstract; skipped"))
            index += 1
            continue
        try:
            papers.append(
                make_paper(
                    title=repair_prose(title),
                    abstract=repair_prose(following),
                    published=day.isoformat() if day else None,
                )
            )
        except Exception as exc:  # one entry we cannot read is that entry's problem, never the whole digest's
            problems.append(Problem(number, f"cannot read title {title[:80]!r} ({describe(exc)}); skipped"))
        index += 2
    return papers, problems
