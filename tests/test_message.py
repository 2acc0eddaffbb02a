"""The MIME message: headers of a good list sender, and no header injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from digest.errors import DeliveryError
from digest.links import Links
from digest.mail.message import RenderedEmail, compose_message, message_bytes, new_message_id

NOW = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)


def compose(**overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        to_name="Ada Lovelace",
        to_email="ada@example.org",
        sender="Paper Digest <digest@lab.example>",
        message_id=new_message_id("digest@lab.example"),
        list_id="paper-digest",
        now=NOW,
        links=Links(),
    )
    rendered = overrides.pop("rendered", RenderedEmail("Your papers", "text body", "<p>html body</p>"))
    args.update(overrides)
    return compose_message(rendered, **args)  # type: ignore[arg-type]


def test_utf8_subject_is_encoded_and_round_trips() -> None:
    message = compose(rendered=RenderedEmail("Ünïcode — 3 papers on graphs ✓", "t", "<p>h</p>"))
    raw = message_bytes(message)
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Ünïcode — 3 papers on graphs ✓"


def test_crlf_in_a_subject_is_folded_never_a_new_header() -> None:
    message = compose(rendered=RenderedEmail("Hello\r\nBcc: victim@evil.example", "t", "<p>h</p>"))
    headers = message_bytes(message).split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in headers
    assert message["Bcc"] is None
    parsed = email.message_from_bytes(message_bytes(message), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "victim@evil.example" in parsed["Subject"]


def test_non_ascii_names_long_subject_and_bodies_round_trip_through_a_mail_parser() -> None:
    subject = "Ünïcode — " + " ".join(f"Gräph {i} ✓" for i in range(30))
    text = "Grüße, Zoë\n" + "x" * 2000 + "\n"  # a line far past SMTP's 998-character limit
    html = "<p>Ångström — «quotes» ✓</p>" + "<b>" + "y" * 3000 + "</b>"
    message = compose(
        rendered=RenderedEmail(subject, text, html),
        to_name="Zoë Ångström",
        sender="Digest Ünïversity <digest@lab.example>",
    )
    raw = message_bytes(message)
    assert raw.isascii()
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere, no bare LF
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == "Zoë Ångström"
    assert parsed["From"].addresses[0].display_name == "Digest Ünïversity"
    assert parsed["From"].addresses[0].addr_spec == "digest@lab.example"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == text  # CRLF on the wire
    assert parsed.get_body(("html",)).get_content() == html
    assert parsed.get_all("MIME-Version") == ["1.0"]


@pytest.mark.parametrize("field", ["to_name", "to_email"])
def test_crlf_in_a_recipient_is_refused(field: str) -> None:
    with pytest.raises(DeliveryError, match="line break"):
        compose(**{field: "x\r\nBcc: victim@evil.example"})


def test_one_click_unsubscribe_only_with_an_https_link() -> None:
    plain = compose()
    assert plain["List-Unsubscribe-Post"] is None
    assert plain["List-Unsubscribe"] == "<mailto:digest@lab.example?subject=unsubscribe>"
    linked = compose(links=Links("https://digest.lab.example", "tok123", "ada"))
    assert linked["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert linked["List-Unsubscribe"].startswith("<https://digest.lab.example/unsubscribe/tok123>")


def test_message_id_is_on_the_senders_domain_and_unique() -> None:
    ids = {new_message_id("Paper Digest <digest@lab.example>") for _ in range(100)}
    assert len(ids) == 100
    assert all(i.endswith("@lab.example>") for i in ids)


@pytest.mark.parametrize(
    "subject",
    [
        "Short",
        "y" * 69,  # exactly 78 characters with "Subject: "
        "z" * 70,  # one past
        "two  spaces and a tail ",
        "Ünïcode — " + "word " * 40,
        "a long ascii subject " * 8,
        "one-word-longer-than-any-line-" * 4 + " then short words",
    ],
)
def test_fast_wire_form_reads_back_as_the_stdlib_generators(subject: str) -> None:
    """message_bytes folds plain headers itself and writes bodies in one piece: a mail parser must read
    exactly what it reads from the stdlib generator's output, and the bodies must be byte for byte the same."""
    from email.policy import compat32

    message = compose(
        rendered=RenderedEmail(subject, "line one\nline two " + "w" * 300 + "\n\n=end", "<p>" + "h" * 5000 + "</p>"),
        to_name="Zoë " + "N" * 50,
        links=Links("https://digest.lab.example", "tok123", "ada"),
        paper_ids=tuple(f"2611.{i:05d}" for i in range(40)),
    )
    ours = message_bytes(message)
    stdlib = message.as_bytes(policy=compat32.clone(linesep="\r\n"))
    ours_head, ours_body = ours.split(b"\r\n\r\n", 1)
    stdlib_head, stdlib_body = stdlib.split(b"\r\n\r\n", 1)
    assert ours_body == stdlib_body
    for line in ours_head.split(b"\r\n"):
        words = line if line.startswith(b" ") else line.split(b":", 1)[1]
        assert len(line) <= 78 or b" " not in words.strip(), f"only a single long word may pass 78: {line!r}"
    read = email.message_from_bytes(ours, policy=email.policy.default)
    expected = email.message_from_bytes(stdlib, policy=email.policy.default)
    # (.strip(): the stdlib itself starts a single over-long word on a line of its own, read back with a space)
    assert [(k, v.strip()) for k, v in read.items()] == [(k, v.strip()) for k, v in expected.items()]
    assert read["Subject"] == " ".join(subject.split())
    assert read["X-Digest-Papers"].split() == [f"2611.{i:05d}" for i in range(40)]


@pytest.mark.parametrize("text", ["é", "Zoë Ångström", "数学" * 40, "emoji 🧪🔬" * 12, "a" * 44 + "€" + "b" * 44])
def test_encoded_words_are_short_whole_characters_and_decode_back(text: str) -> None:
    from email.header import decode_header, make_header

    from digest.mail.message import encoded_words

    encoded = encoded_words(text)
    assert encoded.isascii()
    assert all(len(word) <= 75 for word in encoded.split(" ")), "RFC 2047 caps an encoded word at 75 characters"
    assert str(make_header(decode_header(encoded))) == text


def test_unbreakable_words_are_encoded_so_no_line_passes_smtps_limit() -> None:
    doi = "10.1000/" + "z" * 1100  # the DOI pattern sets no length
    title = "A " + "W" * 1100 + " title"
    message = compose(rendered=RenderedEmail(title, "t", "<p>h</p>"), to_name="N" * 1000, paper_ids=("2611.00001", doi))
    raw = message_bytes(message)
    head = raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == title
    assert parsed["X-Digest-Papers"].split() == ["2611.00001", doi]


def test_a_title_that_looks_like_an_encoded_word_reads_back_literally() -> None:
    spoof = "=?utf-8?q?=0D=0ABcc:_victim@evil.example?= Deep nets"
    parsed = email.message_from_bytes(
        message_bytes(compose(rendered=RenderedEmail(spoof, "t", "<p>h</p>"))), policy=email.policy.default
    )
    assert parsed["Subject"] == spoof
    assert parsed["Bcc"] is None


def test_display_names_with_specials_are_quoted() -> None:
    parsed = email.message_from_bytes(
        message_bytes(compose(to_name='Lovelace, Ada "the Countess"')), policy=email.policy.default
    )
    assert parsed["To"].addresses[0].display_name == 'Lovelace, Ada "the Countess"'
    assert parsed["To"].addresses[0].addr_spec == "ada@example.org"
