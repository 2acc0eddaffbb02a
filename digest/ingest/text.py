"""Bytes to text: encodings detected from content, binary refused, HTML flattened to plain text."""

from __future__ import annotations

import codecs
import html
import re
import unicodedata

import nh3

from digest.characters import INVISIBLE
from digest.errors import IngestError
from digest.paper import clean_text

_BLOCK_END = re.compile(r"<\s*(?:br|/p|/div|/li|/h[1-6]|/tr|/blockquote)\b[^>]*>", re.IGNORECASE)


def _looks_binary(text: str) -> bool:
    if "\x00" in text:
        return True
    sample = text[:4096]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    return bool(sample) and controls / len(sample) > 0.02


def decode(data: bytes, source: str) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM or the NUL pattern of ASCII text), else Windows-1252/Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        text = data[3:].decode("utf-8", errors="replace")
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    elif len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0] and data[2]:
        text = data.decode("utf-16-le", errors="replace")
    elif len(data) >= 4 and data[0:4:2] == b"\x00\x00" and data[1] and data[3]:
        text = data.decode("utf-16-be", errors="replace")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if b"\x00" in data:
                raise IngestError(f"{source}: binary file, not a digest, feed or JSON list") from None
            text = data.decode("cp1252", errors="strict") if _cp1252_ok(data) else data.decode("latin-1")
    if _looks_binary(text):
        raise IngestError(f"{source}: binary file, not a digest, feed or JSON list")
    return text


def _cp1252_ok(data: bytes) -> bool:
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True


def html_to_text(fragment: str) -> str:
    """Untrusted HTML to plain text: every tag dropped (script and style with their content)."""
    spaced = _BLOCK_END.sub(" ", fragment)
    stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    return clean_text(html.unescape(stripped))


# What a LaTeX-to-text conversion upstream leaves behind: "\\href{url}{text}" with the command dropped reads
# "url{text}", and the text may be the URL again ("https://x/a{https://x/a}").
_HREF_LEFTOVER = re.compile(r"(https?://[^\s{}]+)\{([^{}]{0,300})\}")
_FONT_GROUP = re.compile(r"\{\\(?:em|it|bf|sc|tt|rm|sl|sf)\s+([^{}]*)\}")
_FONT_COMMAND = re.compile(r"\\(?:emph|textbf|textit|texttt|textsc|textrm|textsf|underline)\{([^{}]*)\}")
_ACCENT_MARKS = {
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    '"': "\u0308",
    "~": "\u0303",
    "=": "\u0304",
    ".": "\u0307",
}
_ACCENT = re.compile(r"\{?\\([`'^\"~=.])\{?([A-Za-z])\}?\}?")
# "instructions.Although": a sentence run into the next when the source lost the space after its full stop. A
# lowercase word of three or more letters, a full stop, a capitalised word; never inside a URL or a file name.
_GLUED = re.compile(r"(?<![\w./:@])([a-z]{3,}[.!?])([A-Z][a-z]+)\b")


def _href(match: re.Match[str]) -> str:
    url, text = match.group(1), match.group(2).strip()
    # The link text goes (the URL itself, or "project page", "here."); its closing punctuation stays.
    tail = "" if re.match(r"https?://", text) else re.search(r"[.,;:!?]*$", text).group(0)  # type: ignore[union-attr]
    return url + tail


def _unglue(text: str) -> str:
    words = text.split(" ")
    return " ".join(word if "://" in word or "/" in word else _GLUED.sub(r"\1 \2", word) for word in words)


def repair_prose(text: str) -> str:
    """Undo what a LaTeX-to-text conversion upstream left in an abstract: \\href leftovers ("url{text}"),
    font groups ("{\\em labeled}"), accents ("Pok{\\'e}mon"), escaped underscores, and sentences glued at a
    full stop ("instructions.Although"). Mathematics ("W_{ij}", "O(d^{k})") is left alone."""
    text = _HREF_LEFTOVER.sub(_href, text.replace("\\_", "_"))
    text = _FONT_GROUP.sub(r"\1", text)
    text = _FONT_COMMAND.sub(r"\1", text)
    text = _ACCENT.sub(lambda m: unicodedata.normalize("NFC", m.group(2) + _ACCENT_MARKS[m.group(1)]), text)
    return _unglue(text)


def one_line(value: object, limit: int = 300) -> str:
    """Any text (an exception, a URL from a server) as one short line, safe to print on stderr."""
    text = re.sub(r"\s+", " ", INVISIBLE.sub(" ", str(value))).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def describe(exc: BaseException) -> str:
    """An unexpected exception as one short line: its type, and its message when it has one."""
    message = one_line(exc)
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
