"""One email to one person that is not a digest: the sign-up confirmation (digest.web.signup).

It is a message the reader asked for, not a list message: no List-Id, List-Unsubscribe or Precedence. The
headers are built by digest.mail.message's helpers, which refuse a line break in any of them; the subject is our
own text and the address one that digest.subscribers.Profile validated.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime

from digest.mail.message import (
    base64_part,
    header_address,
    header_text,
    new_message_id,
    sender_address,
    single_line,
    text_part,
)


def compose_notice(*, subject: str, text: str, html: str, to_email: str, sender: str, now: datetime) -> Message:
    """A multipart/alternative message (text, then HTML) to one address, from `[smtp] from`."""
    from_name, from_email = sender_address(sender)
    message = MIMEMultipart("alternative", boundary=f"=_digest_{secrets.token_hex(12)}")
    message["From"] = header_address(from_name, from_email)
    message["To"] = header_address("", to_email)
    message["Subject"] = header_text(re.sub(r"\s+", " ", single_line(subject, "subject")).strip())
    message["Date"] = format_datetime(now)
    message["Message-ID"] = new_message_id(sender)
    message["Auto-Submitted"] = "auto-generated"
    for name in ("MIME-Version", "Content-Type"):  # after the headers people read, as compose_message has them
        value = message[name]
        del message[name]
        message[name] = value
    message.attach(text_part(text))
    message.attach(base64_part(html, "html"))
    return message
