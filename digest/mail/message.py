"""Composing the MIME message: text/plain first, HTML last, with the headers a good list sender sets.

Header values come from our own validated data; anything with CR/LF is refused rather than folded into a
new header (header injection). The message is built with the stdlib's compat32 classes and every header
value is encoded here, once: the newer header registry re-parses each header and cost more than rendering
the email (this runs 10,000 times per newsletter issue).
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, make_msgid, parseaddr
from io import BytesIO

from digest.errors import DeliveryError
from digest.links import Links


@dataclass(frozen=True)
class RenderedEmail:
    """What the templates produced for one subscriber."""

    subject: str
    text: str  # the text/plain part: plain text, or the Markdown source for Markdown subscribers
    html: str  # the text/html part


def single_line(value: str, what: str) -> str:
    if re.search(r"[\r\n]", value):
        raise DeliveryError(f"{what} contains a line break; refusing to build a header from it")
    return value


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def new_message_id(sender: str) -> str:
    """A globally unique Message-ID on the sender's domain, made (and stored) before sending."""
    return make_msgid(idstring="digest", domain=sender_domain(sender))


# An encoded word may be 75 characters long, and a line holding one 76 (RFC 2047). 33 bytes of UTF-8 make
# 44 base64 characters, a 56-character word: it fits after the longest header name we write (X-Digest-Papers).
_ENCODED_WORD_BYTES = 33
# A word longer than this could not be folded under SMTP's 998-character line limit (a title made of one
# huge "word", a DOI without bounds): such a value is written as encoded words, which split anywhere.
_LONGEST_PLAIN_WORD = 200
# Characters that make a display name need quotes (as email.utils.formataddr decides).
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def encoded_words(value: str) -> str:
    """Header text as RFC 2047 base64 encoded words, split between characters (never inside one) and
    separated by spaces, which readers drop between encoded words and our header folding breaks at."""
    chunks: list[bytes] = []
    chunk = b""
    for char in value:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _ENCODED_WORD_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += data
    if chunk:
        chunks.append(chunk)
    return " ".join(f"=?utf-8?b?{binascii.b2a_base64(c, newline=False).decode('ascii')}?=" for c in chunks)


def _needs_encoding(value: str) -> bool:
    """Non-ASCII text; text a reader would decode ("=?" starts an encoded word: an ASCII title could spoof a
    decoded line break); or a word too long to fold."""
    if not value.isascii() or "=?" in value:
        return True
    return len(value) > _LONGEST_PLAIN_WORD and any(len(word) > _LONGEST_PLAIN_WORD for word in value.split())


def header_text(value: str) -> str:
    """Unstructured header text: as it is when that is safe, else as encoded words."""
    return encoded_words(value) if _needs_encoding(value) else value


def wire_address(email: str) -> str:
    """The address as headers and SMTP carry it: a non-ASCII domain in IDNA (punycode), so that only a
    non-ASCII local part needs a server with SMTPUTF8."""
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # left in UTF-8: the server must take SMTPUTF8
    return f"{local}@{domain}"


def header_address(display: str, email: str) -> str:
    """'Name <local@domain>': the name quoted or RFC 2047-encoded as needed; the address in its wire form
    (raw UTF-8 when its local part is not ASCII, as RFC 6532 has it)."""
    display, email = single_line(display, "name"), wire_address(single_line(email, "email"))
    if not display:
        return email
    if _needs_encoding(display):
        name = encoded_words(display)
    elif _SPECIALS.search(display):
        name = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        name = display
    return f"{name} <{email}>"


def text_part(body: str) -> MIMENonMultipart:
    """text/plain, quoted-printable: readable in the raw message, and binascii encodes it in C."""
    part = MIMENonMultipart("text", "plain", charset="utf-8")
    del part["MIME-Version"]  # belongs on the message, not on each part
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii"))
    return part


def base64_part(body: str, subtype: str) -> MIMENonMultipart:
    """base64 in 76-column lines, as email.base64mime writes them, encoded in one C call instead of a loop over
    57-byte pieces. HTML goes this way: css-inlined lines can pass SMTP's 998-character limit."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    del part["MIME-Version"]
    part["Content-Transfer-Encoding"] = "base64"
    encoded = binascii.b2a_base64(body.encode("utf-8"), newline=False).decode("ascii")
    part.set_payload("".join(encoded[i : i + 76] + "\n" for i in range(0, len(encoded), 76)))
    return part


@functools.lru_cache(maxsize=16)
def sender_address(sender: str) -> tuple[str, str]:
    from_name, from_email = parseaddr(single_line(sender, "[smtp] from"))
    if "@" not in from_email:
        raise DeliveryError(f"[smtp] from {sender!r} has no email address; use 'Name <address@domain>'")
    return from_name, from_email


def compose_message(
    rendered: RenderedEmail,
    *,
    to_name: str,
    to_email: str,
    sender: str,
    message_id: str,
    list_id: str,
    now: datetime,
    links: Links,
    paper_ids: tuple[str, ...] = (),
) -> Message:
    """A multipart/alternative message ready for SMTP or a Maildir."""
    subject = re.sub(r"\s+", " ", rendered.subject).strip()
    from_name, from_email = sender_address(sender)
    # A boundary of our own: "=_" cannot start a line of base64 or quoted-printable, so the stdlib's search of
    # the whole message for a clash (a regex over 50 KB per email) is not needed.
    message = MIMEMultipart("alternative", boundary=f"=_digest_{secrets.token_hex(12)}")
    message["From"] = header_address(from_name, from_email)
    message["To"] = header_address(to_name, to_email)
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = single_line(message_id, "Message-ID")
    domain = from_email.rpartition("@")[2]
    list_name = single_line(list_id, "list id")
    list_address = f" <{re.sub(r'[^A-Za-z0-9.-]', '-', list_name)}.{domain}>"
    message["List-Id"] = header_text(list_name) + list_address
    unsubscribe = [f"<mailto:{from_email}?subject=unsubscribe>"]
    https = links.unsubscribe()
    if https:
        unsubscribe.insert(0, f"<{single_line(https, 'unsubscribe link')}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Unsubscribe"] = ", ".join(unsubscribe)
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "list"
    if paper_ids:
        # Lets a mail filter, or a person debugging a complaint, see which papers a digest carried.
        message["X-Digest-Papers"] = header_text(" ".join(single_line(pid, "paper id") for pid in paper_ids))
    for name in ("MIME-Version", "Content-Type"):  # after the headers people read, as mail clients write them
        value = message[name]
        del message[name]
        message[name] = value
    message.attach(text_part(rendered.text))
    message.attach(base64_part(rendered.html, "html"))
    return message


_LINE_END = re.compile(r"\r\n|\r|\n")


class _WirePolicy(type(compat32)):  # type: ignore[misc]
    """compat32 with CRLF, folding our headers itself: the stdlib builds a Header object to fold every header,
    even one that fits on its line (a third of the cost of a message), and it would RFC 2047-encode a UTF-8
    address into something no server delivers. Anything unusual (line breaks, runs of spaces) goes the
    stdlib's way."""

    def fold_binary(self, name: str, value: object) -> bytes:
        if (
            isinstance(value, str)
            and value == value.strip()
            and "  " not in value
            and "\n" not in value
            and "\r" not in value
        ):
            # Our values are ASCII but for a UTF-8 address (RFC 6532), which stays as it is.
            return _fold_words(name, value, self.max_line_length, self.linesep).encode("utf-8")
        return bytes(super().fold_binary(name, value))


def _fold_words(name: str, value: str, limit: int, linesep: str) -> str:
    """'Name: value', broken before a space wherever a line would pass `limit` (RFC 5322 folding; a single
    word longer than the limit keeps a line to itself, since nothing may be broken inside it)."""
    if len(name) + 2 + len(value) <= limit:
        return f"{name}: {value}{linesep}"
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > limit and line != f"{name}:" and line.strip():
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return linesep.join(lines) + linesep


_WIRE = _WirePolicy(linesep="\r\n")


class _WireGenerator(BytesGenerator):
    """The stdlib generator, writing each body in one piece instead of line by line (a 40 KB digest has a
    thousand lines). The bodies come out byte for byte as the stdlib writes them; a test compares the two."""

    def _write_lines(self, lines: str) -> None:
        if not lines:
            return
        # message_bytes always flattens with _WIRE, so its line end is the generator's (the stdlib keeps that in
        # the private `_NL`).
        if "\r" in lines:
            self.write(_WIRE.linesep.join(_LINE_END.split(lines)))
        else:
            self.write(lines.replace("\n", _WIRE.linesep))


def message_bytes(message: Message) -> bytes:
    """The message as it goes over the wire (CRLF line ends): what an .eml file holds."""
    buffer = BytesIO()
    _WireGenerator(buffer, mangle_from_=False, policy=_WIRE).flatten(message)
    return buffer.getvalue()
