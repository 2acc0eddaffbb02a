"""Why a paper was picked, in one short plain-text line (at most WHY_LIMIT characters), deterministically.

The engine (digest.rank.engine) finds the facts of each pick; this module words them for one digest:
- the strongest reason first, in the order a reader trusts them: an author they follow, their keyword in the
  title, their keyword in the abstract, a liked paper it is close to, the keyword it is closest to in meaning
  (when none is in the text), a category they asked for;
- varied across a digest: a reason already given for an earlier pick (the same liked paper, the same keyword)
  gives way to the pick's next one, so ten picks close to one liked paper do not say so ten times;
- a quote only when it adds something: the abstract's best-matching sentence, never one the email's teaser
  already shows (TEASER_CHARS), cut at a clause boundary when it is long, and left out when it would be a stub;
- no filler: a pick with no fact but its score says nothing rather than "related to your interests".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

WHY_LIMIT = 200
# The email's teaser shows about this many characters of the abstract (digest.render.text.teaser): a sentence
# that starts within them is already on screen.
TEASER_CHARS = 240
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE_END = re.compile(r"[,;:](?=\s)|\s[-–—]\s")
SHORTEST_QUOTE = 40


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def quotable(abstract: str, parts: Sequence[str]) -> list[bool]:
    """For each of the abstract's sentences (`parts`, from sentences()), whether it starts after the teaser."""
    flat = " ".join(abstract.split())
    result = []
    position = 0
    for sentence in parts:
        found = flat.find(" ".join(sentence.split()), position)
        start = found if found >= 0 else position
        result.append(start >= TEASER_CHARS)
        position = start + len(sentence)
    return result


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0] if limit > 10 else text[: max(limit - 1, 0)]
    return cut.rstrip(" ,;:") + "…"


def clause(sentence: str, limit: int) -> str | None:
    """The sentence if it fits in `limit`, else its longest opening that ends at a clause boundary (a comma,
    semicolon, colon or dash) and fits, with an ellipsis; None when that would be shorter than SHORTEST_QUOTE."""
    if len(sentence) <= limit:
        return sentence
    ends = [m.start() for m in _CLAUSE_END.finditer(sentence) if SHORTEST_QUOTE <= m.start() <= limit - 1]
    if not ends:
        return None
    return sentence[: ends[-1]].rstrip() + "…"


@dataclass(frozen=True)
class Facts:
    """What is true of one pick for one reader (found by the engine)."""

    authors: tuple[str, ...] = ()  # the paper's authors the reader follows, as written on the paper
    in_title: tuple[str, ...] = ()  # the reader's keywords found in the title
    in_abstract: tuple[str, ...] = ()  # ... found in the abstract (not the title)
    concept: str | None = None  # the reader's keyword closest in meaning, when none is in the text
    liked: str | None = None  # the title of the liked paper it is closest to
    categories: tuple[str, ...] = ()  # the paper's categories the reader asked for
    sentence: str | None = None  # the abstract's best-matching sentence that the teaser does not show


def _quoted(items: Sequence[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _reasons(facts: Facts) -> list[tuple[str, str]]:
    """(what it is about, its wording), strongest first; the first part says when two picks give the same reason."""
    reasons: list[tuple[str, str]] = []
    if facts.authors:  # never counted as given: who wrote it is news on every paper
        reasons.append(("", "by " + ", ".join(facts.authors)))
    if facts.in_title:
        reasons.append(("title:" + "|".join(facts.in_title), f"title matches {_quoted(facts.in_title)}"))
    if facts.in_abstract:
        reasons.append(("abstract:" + "|".join(facts.in_abstract), f"mentions {_quoted(facts.in_abstract)}"))
    if facts.liked:
        reasons.append(("liked:" + facts.liked, f'close to "{_shorten(facts.liked, 70)}", which you liked'))
    if facts.concept:
        reasons.append(("concept:" + facts.concept, f'closest in meaning to "{facts.concept}"'))
    if facts.categories:
        reasons.append(("category:" + "|".join(facts.categories), "in " + ", ".join(facts.categories)))
    return reasons


def why_lines(picks: Sequence[Facts]) -> list[str]:
    """One line per pick of one digest, in the digest's order (see the module docstring)."""
    given: set[str] = set()
    lines = []
    for facts in picks:
        reasons = _reasons(facts)
        # The strongest reason when it is a fact the reader can check on the page (an author, a keyword in the
        # text), and the strongest reason not given for an earlier pick; else the strongest, once more.
        checkable = bool(reasons) and (reasons[0][0] == "" or reasons[0][0].startswith(("title:", "abstract:")))
        chosen = reasons[:1] if checkable else []
        fresh = next((r for r in reasons if r not in chosen and (not r[0] or r[0] not in given)), None)
        if fresh is not None:
            chosen.append(fresh)
        chosen = sorted(chosen, key=reasons.index) or reasons[:1]
        given.update(kind for kind, _ in chosen)
        head = _shorten("; ".join(text for _, text in chosen), WHY_LIMIT)
        if facts.sentence:
            room = WHY_LIMIT - len(head) - len('; key sentence: ""') if head else WHY_LIMIT - len('key sentence: ""')
            quote = clause(facts.sentence, room) if room >= SHORTEST_QUOTE else None
            if quote:
                head = f'{head}; key sentence: "{quote}"' if head else f'key sentence: "{quote}"'
        lines.append(head)
    return lines
