"""Composing the MIME message: text/plain first, HTML last, with the headers a good list sender sets.

Header values come from our own validated data; anything with CR/LF is refused rather than folded into a
new header (header injection), and the stdlib policy refuses it a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from digest.errors import DeliveryError
from digest.links import Links


@dataclass(frozen=True)
class RenderedEmail:
    """What the templates produced for one subscriber."""

    subject: str
    text: str  # the text/plain part: plain text, or the Markdown source for Markdown subscribers
    html: str  # the text/html part


def _single_line(value: str, what: str) -> str:
    if re.search(r"[\r\n]", value):
        raise DeliveryError(f"{what} contains a line break; refusing to build a header from it")
    return value


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rpartition("@")[2] or "localhost"


def new_message_id(sender: str) -> str:
    """A globally unique Message-ID on the sender's domain, made (and stored) before sending."""
    return make_msgid(idstring="digest", domain=sender_domain(sender))


def _address(display: str, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=_single_line(display, "name"), username=local, domain=domain)


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
) -> EmailMessage:
    """A multipart/alternative message ready for SMTP or a Maildir."""
    subject = re.sub(r"\s+", " ", rendered.subject).strip()
    from_name, from_email = parseaddr(_single_line(sender, "[smtp] from"))
    if "@" not in from_email:
        raise DeliveryError(f"[smtp] from {sender!r} has no email address; use 'Name <address@domain>'")
    message = EmailMessage(policy=SMTP)
    message["From"] = _address(from_name, from_email)
    message["To"] = _address(to_name, _single_line(to_email, "email"))
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = _single_line(message_id, "Message-ID")
    domain = sender_domain(sender)
    message["List-Id"] = f"{_single_line(list_id, 'list id')} <{re.sub(r'[^A-Za-z0-9.-]', '-', list_id)}.{domain}>"
    unsubscribe = [f"<mailto:{from_email}?subject=unsubscribe>"]
    https = links.unsubscribe()
    if https:
        unsubscribe.insert(0, f"<{https}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Unsubscribe"] = ", ".join(unsubscribe)
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "list"
    if paper_ids:
        # Lets a mail filter, or a person debugging a complaint, see which papers a digest carried.
        message["X-Digest-Papers"] = " ".join(_single_line(pid, "paper id") for pid in paper_ids)
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message
