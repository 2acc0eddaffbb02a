"""The characters a reader should never get: one definition, used wherever text leaves or enters the program.

- CONTROLS: C0 and C1 control characters (what a log line or a URL must not carry);
- INVISIBLE: controls, zero-width and bidirectional formatting characters, line/paragraph separators, the BOM and
  lone surrogates: what could hide or reorder text in a title or an email (a single line of plain text);
- INVISIBLE_BUT_LINES: the same but tab and newline, for multi-line text (abstracts keep their lines);
- NOT_XML: what XML 1.0 forbids or shows as garbage (an Atom feed).
"""

from __future__ import annotations

import re

_C0_C1 = r"\x00-\x1f\x7f-\x9f"
_FORMATTING = r"\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff"
_SURROGATES = r"\ud800-\udfff"

CONTROLS = re.compile(f"[{_C0_C1}]")
INVISIBLE = re.compile(f"[{_C0_C1}{_FORMATTING}{_SURROGATES}]")
INVISIBLE_BUT_LINES = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{_FORMATTING}{_SURROGATES}]")
NOT_XML = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}\ufffe\uffff]")
