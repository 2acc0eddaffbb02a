"""Authors and arXiv categories as interests: matching that survives how sources write names and categories.

A name matches when the surnames agree and the given names do not disagree: "Ada Lovelace" is "A. Lovelace",
"LOVELACE, Ada", "Ada K. Lovelace" and "Àda Lovelace", but not "Adam Lovelace" nor "B. Lovelace". Accents, case,
punctuation and hyphens are folded; "Surname, Given" is turned round. A category matches exactly, ignoring case
("cs.LG" is "cs.lg"), or by archive: "cs" or "math" matches every category of that archive, "astro-ph" every
astro-ph.* category.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_NON_LETTER = re.compile(r"[^\w\s]|_|\d")
# Particles that belong to the surname: "Ludwig van Beethoven" -> surname "van beethoven".
_PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "le", "la", "ter", "ten", "dos"}

NameKey = tuple[str, tuple[str, ...]]  # (surname, given names or initials)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(_NON_LETTER.sub(" ", plain.replace("-", " ")).split())


def name_key(name: str) -> NameKey | None:
    """(surname, given names) of a person's name, folded; None when there is no name in it."""
    if "," in name:
        surname, _, given = name.partition(",")
        surname_words, given_words = _fold(surname).split(), _fold(given).split()
    else:
        words = _fold(name).split()
        if not words:
            return None
        cut = len(words) - 1
        while cut > 0 and words[cut - 1] in _PARTICLES:
            cut -= 1
        surname_words, given_words = words[cut:], words[:cut]
    if not surname_words:
        return None
    return " ".join(surname_words), tuple(given_words)


def same_person(wanted: NameKey, written: NameKey) -> bool:
    """Surnames equal; each given name present on both sides agrees (in full, or by initial if either is one)."""
    if wanted[0] != written[0]:
        return False
    for mine, theirs in zip(wanted[1], written[1], strict=False):
        if len(mine) > 1 and len(theirs) > 1:
            if mine != theirs:
                return False
        elif mine[0] != theirs[0]:
            return False
    return True


def matching_authors(wanted: Sequence[NameKey], authors: Sequence[str]) -> list[str]:
    """The paper's authors (as written) who are among the wanted people."""
    found = []
    for author in authors:
        key = name_key(author)
        if key is not None and any(same_person(w, key) for w in wanted):
            found.append(author)
    return found


def category_matches(wanted: str, category: str) -> bool:
    wanted, category = wanted.strip().lower(), category.strip().lower()
    if not wanted or not category:
        return False
    if "." in wanted:
        return category == wanted
    return category == wanted or category.startswith(wanted + ".")


def matching_categories(wanted: Sequence[str], categories: Sequence[str]) -> list[str]:
    """The paper's categories (as written) that the profile asks for."""
    return [c for c in categories if any(category_matches(w, c) for w in wanted)]
