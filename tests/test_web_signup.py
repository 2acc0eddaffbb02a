"""Sign-up with double opt-in, over real HTTP: the real `digest serve` in a subprocess (`[web] signup = true`,
mail into a Maildir), driven with httpx; the same app under uvicorn in a thread where a test must move its clock
(expiry) or turn sign-up off.

The reader's path (form, email, confirmation page, one profile, the settings redirect), and what an attacker
tries: other origins, forged form tokens, floods from one IP, one address signed up again and again, header
injection through the address or the name, markup in the fields, replayed and expired links, and reading the
answer page for whether an address is subscribed.

Each test signs up from its own client IP (X-Forwarded-For, which the server trusts from 127.0.0.1 as it would
from a proxy) so the per-IP limit of one test never spends another's.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DEMO_DATA, NOW
from markupsafe import escape
from pydantic import ValidationError
from smtp_server import Behaviour, SmtpServer
from test_feeds import Workspace
from test_web import start
from test_web_faults import assert_all_security_headers, dump, in_thread

from digest.config import load_config
from digest.store import Store
from digest.subscribers import Profile, load_profile
from digest.tokens import server_secret, settings_key
from digest.web.app import create_app

BASE_URL = "https://digest.example.org"
FORM = {
    "name": "Rosalind Reader",
    "keywords": "graph neural networks, message passing",
    "papers": "2611.00101\nSparse Message Passing for Billion-Edge Graphs",
    "format": "markdown",
    "schedule": "daily",
    "timezone": "Europe/Paris",
}
TOKEN_FIELD = re.compile(r'name="form_token" value="([^"]+)"')


def make_workspace(root: Path, *, web: str) -> Workspace:
    """The demo's three subscribers (ada@example.org among them), mail into a Maildir, the given [web] table."""
    shutil.copytree(DEMO_DATA / "subscribers", root / "subscribers")
    (root / "config.toml").write_text(
        '[paths]\nsubscribers = "subscribers"\ndatabase = "var/digest.db"\n'
        f'[delivery]\nmethod = "maildir"\nmaildir = "var/maildir"\n[web]\n{web}',
        encoding="utf-8",
    )
    return Workspace(root, root / "config.toml", load_config(root / "config.toml"))


@dataclass
class Site:
    ws: Workspace
    url: str

    @property
    def database(self) -> Path:
        return self.ws.config.paths.database

    @property
    def subscribers(self) -> Path:
        return self.ws.config.paths.subscribers

    def profiles(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.subscribers.glob("*.toml"))}

    def form_token(self, path: str = "/subscribe") -> str:
        page = httpx.get(f"{self.url}{path}")
        assert page.status_code == 200, page.text
        found = TOKEN_FIELD.search(page.text)
        assert found, page.text
        return found.group(1)

    def sign_up(self, ip: str, address: str, *, headers: dict[str, str] | None = None, **fields: str) -> httpx.Response:
        """The form as a browser sends it (the token from a fresh page), from client `ip`."""
        data = {"form_token": self.form_token(), "email": address, **FORM, **fields}
        return httpx.post(f"{self.url}/subscribe", data=data, headers={"x-forwarded-for": ip, **(headers or {})})

    def mail(self) -> list[EmailMessage]:
        """Every message in the Maildir, oldest first."""
        folder = self.ws.config.delivery.maildir / "new"
        files = sorted(folder.iterdir(), key=lambda path: path.stat().st_mtime_ns) if folder.is_dir() else []
        return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files]

    def mail_to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.mail() if message["To"] == address]

    def confirm_url(self, message: EmailMessage) -> str:
        """The link in a confirmation email, on this server (the email names the public base URL)."""
        found = re.search(rf"{re.escape(BASE_URL)}/confirm/(\S+)", text_of(message))
        assert found, text_of(message)
        return f"{self.url}/confirm/{found.group(1)}"

    def press(self, confirm_url: str, **headers: str) -> httpx.Response:
        """The button on the confirmation page."""
        page = httpx.get(confirm_url)
        assert page.status_code == 200, page.text
        token = TOKEN_FIELD.search(page.text)
        assert token, page.text
        return httpx.post(confirm_url, data={"form_token": token.group(1)}, headers=headers)

    def token_of(self, subscriber: str) -> str | None:
        with Store(self.database) as store:
            return store.subscriber_state(subscriber).token

    def key_of(self, subscriber: str) -> str | None:
        """The reader's settings key (digest.tokens): what the settings links carry, not the token itself."""
        token = self.token_of(subscriber)
        with Store(self.database) as store:
            secret = server_secret(store, create=False)
        return settings_key(secret, token) if token and secret else None


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def problems(page: httpx.Response) -> list[str]:
    return re.findall(r'<p class="problem" id="[a-z]+-problem">([^<]*)</p>', page.text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("signup")
    ws = make_workspace(root, web=f'base_url = "{BASE_URL}"\nsignup = true\n')
    with pytest.MonkeyPatch.context() as env:
        # The server's clock stands still (DIGEST_NOW), so the limits' windows never pass during the tests.
        env.setenv("DIGEST_NOW", NOW.isoformat())
        process, url = start(ws, root / "serve.log")
    try:
        yield Site(ws, url)
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---- the reader's path ---------------------------------------------------------------------------------------


def test_sign_up_email_confirm_page_and_button_make_one_profile_and_lead_to_the_settings_page(site: Site) -> None:
    form = httpx.get(f"{site.url}/subscribe")
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
    assert_all_security_headers(form)
    assert '<form method="post">' in form.text and "<script" not in form.text
    for field in ("email", "name", "keywords", "papers", "format", "schedule", "timezone", "form_token"):
        assert f'name="{field}"' in form.text, field
    assert 'name="viewport" content="width=device-width' in form.text
    before = site.profiles()

    answer = site.sign_up("10.0.1.1", "rosalind@example.net")
    assert answer.status_code == 200 and "Check your inbox" in answer.text, answer.text
    assert site.profiles() == before, "a sign-up creates nothing before it is confirmed"

    (message,) = site.mail_to("rosalind@example.net")
    assert message["Subject"] == "Confirm your paper digest subscription"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None and message["Precedence"] is None
    link = site.confirm_url(message)
    assert link.removeprefix(site.url) in html_of(message)
    code = link.rpartition("/")[2]
    # The store keeps the code's hash only.
    with sqlite3.connect(site.database) as db:
        stored = [row[0] for row in db.execute("SELECT code_hash FROM signups WHERE email = 'rosalind@example.net'")]
    assert stored == [hashlib.sha256(code.encode()).hexdigest()]
    assert not any(code in line for line in dump(site.database))

    # Mail scanners fetch the link, both ways: nothing changes.
    database = dump(site.database)
    for fetch in (httpx.head, httpx.get, httpx.get):
        response = fetch(link)
        assert response.status_code == 200
        assert_all_security_headers(response)
    page = httpx.get(link)
    assert '<form method="post">' in page.text and "rosalind@example.net" in page.text
    assert dump(site.database) == database and site.profiles() == before, "GET of a confirmation link wrote"

    button = TOKEN_FIELD.search(page.text)
    assert button
    done = httpx.post(link, data={"form_token": button.group(1)})
    assert done.status_code == 303
    created = sorted(set(site.profiles()) - set(before))
    assert created == ["rosalind.toml"]
    profile = load_profile(site.subscribers / "rosalind.toml", NOW)
    assert (profile.name, profile.email, profile.format, profile.schedule, profile.timezone) == (
        "Rosalind Reader",
        "rosalind@example.net",
        "markdown",
        "0 7 * * *",
        "Europe/Paris",
    )
    assert profile.interests.keywords == ("graph neural networks", "message passing")
    assert profile.interests.papers == ("2611.00101", "Sparse Message Passing for Billion-Edge Graphs")
    token = site.token_of("rosalind")
    key = site.key_of("rosalind")
    assert token and key and done.headers["location"] == f"{BASE_URL}/settings/{key}"

    # Replayed (a second tab, the back button): nothing is created again; the page says so, with the settings link.
    after = site.profiles()
    for replay in (httpx.post(link, data={"form_token": button.group(1)}), httpx.get(link)):
        assert replay.status_code == 200 and "Already confirmed" in replay.text
        assert f"{BASE_URL}/settings/{key}" in replay.text and token not in replay.text
    assert site.profiles() == after and site.token_of("rosalind") == token

    # Neither the code nor the reader's token reaches the server's log.
    log = site.ws.root / "serve.log"
    deadline = time.monotonic() + 5
    while "POST /confirm/<token> 200" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "POST /confirm/<token> 303" in log.read_text()
    assert code not in log.read_text() and token not in log.read_text()

    # Unknown codes: 404, however they are asked.
    for unknown in (link[:-1], link + "x", f"{site.url}/confirm/{'A' * 200}"):
        assert httpx.get(unknown).status_code == 404
        assert httpx.post(unknown, data={"form_token": "1.x"}).status_code == 404


def test_the_same_address_twice_gets_one_profile_and_the_same_answer(site: Site) -> None:
    first = site.sign_up("10.0.2.1", "twice@example.net")
    again = site.sign_up("10.0.2.2", "Twice@example.net", name="Someone Else")  # same address, another case
    assert first.status_code == again.status_code == 200
    assert first.content == again.content.replace(b"Twice@", b"twice@")
    one, two = site.mail_to("twice@example.net") + site.mail_to("Twice@example.net")
    before = site.profiles()
    assert site.press(site.confirm_url(one)).status_code == 303
    (new,) = set(site.profiles()) - set(before)
    # The second link finds the profile the first made, and leads to the same settings page.
    second = site.press(site.confirm_url(two))
    assert second.status_code == 303 and second.headers["location"] == f"{BASE_URL}/settings/{site.key_of('twice')}"
    assert set(site.profiles()) - set(before) == {new} == {"twice.toml"}
    assert load_profile(site.subscribers / new, NOW).name == "Rosalind Reader"


def test_the_answer_never_says_whether_an_address_is_new_waiting_or_subscribed(site: Site) -> None:
    def answer(address: str, ip: str) -> tuple[int, bytes, dict[str, str]]:
        response = site.sign_up(ip, address)
        headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
        return response.status_code, response.content.replace(address.encode(), b"ADDRESS"), headers

    new = answer("quiet@example.net", "10.0.3.1")
    waiting = answer("quiet@example.net", "10.0.3.2")
    assert site.press(site.confirm_url(site.mail_to("quiet@example.net")[0])).status_code == 303
    subscribed = answer("quiet@example.net", "10.0.3.3")
    demo_reader = answer("ada@example.org", "10.0.3.4")  # a subscriber from a hand-written file
    assert new == waiting == subscribed == demo_reader
    assert new[0] == 200

    # What differs is the email, which only the address's owner reads: a subscribed address gets its settings
    # link, and no second profile.
    notes = site.mail_to("ada@example.org")
    assert [m["Subject"] for m in notes] == ["Your paper digest subscription"]
    assert f"{BASE_URL}/settings/{site.key_of('ada')}" in text_of(notes[0])
    assert "/confirm/" not in text_of(notes[0]) + html_of(notes[0])
    assert [m["Subject"] for m in site.mail_to("quiet@example.net")][-1] == "Your paper digest subscription"
    assert sorted(p for p in site.profiles() if p.startswith(("ada", "quiet"))) == ["ada.toml", "quiet.toml"]


def test_an_id_left_in_the_store_by_a_removed_profile_is_never_given_again(site: Site) -> None:
    # "former" was a reader whose file the operator removed; their token, pause, ratings and sent history are still
    # in the store, and their old emails still carry that token. A new reader with that address gets another id.
    with Store(site.database) as store:
        old_token = store.token("former")
        store.set_paused("former", True, NOW)
    assert site.sign_up("10.0.9.1", "former@example.net").status_code == 200
    confirmed = site.press(site.confirm_url(site.mail_to("former@example.net")[0]))
    assert confirmed.status_code == 303
    assert not (site.subscribers / "former.toml").exists()
    assert load_profile(site.subscribers / "former-2.toml", NOW).email == "former@example.net"
    with Store(site.database) as store:
        assert store.subscriber_state("former").token == old_token  # the old reader's state, untouched
        new = store.subscriber_state("former-2")
    assert new.token and new.token != old_token and not new.paused
    assert confirmed.headers["location"].endswith(f"/settings/{site.key_of('former-2')}")


def test_a_taken_id_gets_a_number_and_the_other_readers_file_is_left_alone(site: Site) -> None:
    ada = (site.subscribers / "ada.toml").read_bytes()
    assert site.sign_up("10.0.9.2", "ada@elsewhere.net").status_code == 200
    assert site.press(site.confirm_url(site.mail_to("ada@elsewhere.net")[0])).status_code == 303
    assert load_profile(site.subscribers / "ada-2.toml", NOW).email == "ada@elsewhere.net"
    assert (site.subscribers / "ada.toml").read_bytes() == ada


# ---- what an attacker tries -----------------------------------------------------------------------------------


def test_posts_from_another_origin_are_refused_and_a_browser_posting_our_own_form_is_not(site: Site) -> None:
    sent = len(site.mail())
    for headers in (
        {"origin": "https://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": BASE_URL},
        {"origin": "null", "sec-fetch-site": "cross-site"},
    ):
        refused = site.sign_up("10.0.4.1", "csrf@example.net", headers=headers)
        assert refused.status_code == 403, headers
        assert_all_security_headers(refused)
    assert len(site.mail()) == sent

    # A browser on our page: under Referrer-Policy: no-referrer it sends Origin: null, with Sec-Fetch-Site.
    for headers in ({"origin": "null", "sec-fetch-site": "same-origin"}, {"origin": BASE_URL}):
        assert site.sign_up("10.0.4.2", "csrf@example.net", headers=headers).status_code == 200, headers

    # The confirmation button likewise: from another origin it creates nothing.
    link = site.confirm_url(site.mail_to("csrf@example.net")[0])
    before = site.profiles()
    assert site.press(link, origin="https://evil.example").status_code == 403
    assert site.press(link, **{"sec-fetch-site": "cross-site"}).status_code == 403
    assert site.profiles() == before


def test_a_missing_forged_or_borrowed_form_token_is_refused(site: Site) -> None:
    sent = len(site.mail())
    data = {"email": "forged@example.net", **FORM}
    ip = {"x-forwarded-for": "10.0.5.1"}
    genuine = site.form_token()
    issued, _, mac = genuine.partition(".")
    for token in (None, "", "x", f"{issued}.{'0' * len(mac)}", f"{int(issued) - 1}.{mac}", f"{issued}.{mac[:-1]}"):
        fields = data if token is None else {**data, "form_token": token}
        assert httpx.post(f"{site.url}/subscribe", data=fields, headers=ip).status_code == 403, token
    assert len(site.mail()) == sent

    # A confirmation page's token is good for its own code only, and not for the sign-up form.
    assert site.sign_up("10.0.5.2", "forged@example.net").status_code == 200
    assert site.sign_up("10.0.5.3", "forged@example.net").status_code == 200
    first, second = (site.confirm_url(m) for m in site.mail_to("forged@example.net"))
    first_token = TOKEN_FIELD.search(httpx.get(first).text)
    assert first_token
    borrowed = {"form_token": first_token.group(1)}
    assert httpx.post(second, data=borrowed).status_code == 403
    assert httpx.post(f"{site.url}/subscribe", data={**data, **borrowed}, headers=ip).status_code == 403
    assert httpx.post(second, data={"form_token": genuine}).status_code == 403
    assert not (site.subscribers / "forged.toml").exists()


def test_a_hundred_sign_ups_in_a_minute_from_one_ip_are_stopped_after_the_limit(site: Site) -> None:
    sent = len(site.mail())
    token = site.form_token()  # one page, posted again and again: what a script does
    statuses, waits = [], set()
    with httpx.Client(headers={"x-forwarded-for": "198.51.100.7"}) as client:
        for n in range(100):
            response = client.post(
                f"{site.url}/subscribe", data={**FORM, "email": f"flood{n}@example.net", "form_token": token}
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                waits.add(response.headers["retry-after"])
                assert_all_security_headers(response)
    assert statuses == [200] * 10 + [429] * 90  # [web] signup_per_ip = 10 an hour
    assert waits == {"3600"}  # the server's clock stands still: the first of the ten leaves the window in an hour
    assert len(site.mail()) == sent + 10
    # IPv6 clients count by /64: another address in the same /64 is the same client.
    for n in range(10):
        assert site.sign_up(f"2001:db8:1:2::{n + 1}", f"six{n}@example.net").status_code == 200
    assert site.sign_up("2001:db8:1:2:ffff::1", "six10@example.net").status_code == 429
    # Others are not held up.
    assert site.sign_up("198.51.100.8", "other@example.net").status_code == 200


def test_a_flood_from_many_addresses_meets_the_limit_for_everyone(tmp_path: Path) -> None:
    """A whole IPv6 /48 (or a botnet) passes the per-IP limit: [web] signup_per_hour holds them all."""
    ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\nsignup = true\nsignup_per_hour = 5\n')
    with in_thread(create_app(ws.config)) as url:
        site = Site(ws, url)
        statuses = [site.sign_up(f"2001:db8:1:{n}::1", f"wave{n}@example.net").status_code for n in range(8)]
        refused = site.sign_up("198.51.100.9", "late@example.net")
    assert statuses == [200] * 5 + [429] * 3
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3600"
    assert len(site.mail()) == 5


def test_one_network_cannot_use_up_everyones_sign_ups(tmp_path: Path) -> None:
    """[web] signup_per_network: one IPv6 /48 (many /64 clients) is held at its own limit; others still sign up."""
    web = f'base_url = "{BASE_URL}"\nsignup = true\nsignup_per_network = 3\nsignup_per_hour = 100\n'
    ws = make_workspace(tmp_path, web=web)
    with in_thread(create_app(ws.config)) as url:
        site = Site(ws, url)
        one_network = [site.sign_up(f"2001:db8:7:{n}::1", f"net{n}@example.net").status_code for n in range(5)]
        elsewhere = site.sign_up("2001:db8:8:1::1", "elsewhere@example.net").status_code
        ipv4 = [site.sign_up(f"203.0.113.{n}", f"four{n}@example.net").status_code for n in range(1, 5)]
    assert one_network == [200, 200, 200, 429, 429]
    assert elsewhere == 200
    assert ipv4 == [200, 200, 200, 429]  # an IPv4 /24 is one network


def test_one_address_is_signed_up_at_most_three_times_a_day_from_anywhere(site: Site) -> None:
    statuses = [
        site.sign_up(f"10.0.6.{n}", address).status_code
        for n, address in enumerate(
            ["often@example.net", "OFTEN@example.net", "often@EXAMPLE.net", "often@example.net"]
        )
    ]
    assert statuses == [200, 200, 200, 429]
    assert len(site.mail_to("often@example.net")) + len(site.mail_to("OFTEN@example.net")) == 3
    limited = site.sign_up("10.0.6.9", "often@example.net")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) == 24 * 3600
    # "+tags" reach the same mailbox: they share its limit.
    tagged = [site.sign_up(f"10.0.7.{n}", f"tagged+{n}@example.net").status_code for n in range(4)]
    assert tagged == [200, 200, 200, 429]


def profile_message(**fields: Any) -> str:
    """What a profile file with these values is told (the form must say the same)."""
    data = {"name": "N", "email": "n@example.org", "interests": {"keywords": ["k"]}, **fields}
    with pytest.raises(ValidationError) as raised:
        Profile.model_validate(data)
    (error,) = raised.value.errors()
    return f"{error['loc'][-1]} {error['msg'].removeprefix('Value error, ')}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "victim@example.net\r\nBcc: everyone@example.net"),
        ("email", "victim@example.net\nBcc: everyone@example.net"),
        ("email", "Victim <victim@example.net>"),
        ("email", '"two words"@example.net'),
        ("email", "victim@localhost"),
        ("email", "victim@[192.0.2.1]"),
        ("email", "victim@example.net, other@example.net"),
        ("email", "no-at-sign"),
        ("name", "Eve\r\nBcc: everyone@example.net"),
        ("name", "Eve\rX-Injected: 1"),
    ],
)
def test_line_breaks_and_odd_addresses_are_refused_with_the_profile_files_message(
    site: Site, field: str, value: str
) -> None:
    sent = len(site.mail())
    address = value if field == "email" else "eve@example.net"
    name: dict[str, Any] = {"name": value} if field == "name" else {}
    refused = site.sign_up("10.0.7.1", address, **name)
    assert refused.status_code == 400
    expected = profile_message(**{field: value})
    assert problems(refused) == [str(escape(expected))]
    # The rest of what was typed is kept.
    assert 'value="graph neural networks, message passing"' in refused.text
    assert 'value="markdown" checked' in refused.text and 'value="daily" checked' in refused.text
    assert len(site.mail()) == sent


def test_other_fields_get_one_line_each_next_to_the_field(site: Site) -> None:
    refused = site.sign_up(
        "10.0.7.2", "fields@example.net", name="", keywords=" , ", papers="", schedule="hourly", timezone="Mars/Base"
    )
    assert refused.status_code == 400
    assert problems(refused) == [
        "name must not be empty",
        "keywords must name at least one topic (comma-separated), or list a paper you liked",
        "schedule must be one of: Weekdays at 07:00, Every day at 07:00, Mondays at 07:00",
        "timezone is not a known time zone (got &#39;Mars/Base&#39;); use a name like &#39;Europe/London&#39;",
    ]
    assert 'aria-invalid="true" aria-describedby="timezone-problem timezone-hint"' in refused.text
    too_long = site.sign_up("10.0.7.3", "fields@example.net", name="x" * 101, keywords=", ".join(["k"] * 31))
    assert problems(too_long) == [
        "name is too long (at most 100 characters)",
        "keywords are too many (at most 30); keep the ones that matter most",
    ]
    hidden = site.sign_up("10.0.7.4", "fields@example.net", keywords="graphs\u202e, ok")
    assert problems(hidden) == ["keywords must not contain control or invisible characters"]


def test_markup_in_the_name_or_keywords_is_shown_as_text(site: Site) -> None:
    evil: dict[str, Any] = {"name": "<script>alert(1)</script>", "keywords": '<img src=x onerror=alert(1)>, "quoted"'}
    # Kept in the form after a refusal (here: an unknown time zone), escaped.
    refused = site.sign_up("10.0.8.1", "markup@example.net", timezone="Nowhere/Else", **evil)
    assert refused.status_code == 400
    assert "<script>" not in refused.text and "<img" not in refused.text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in refused.text
    assert 'value="&lt;img src=x onerror=alert(1)&gt;, &#34;quoted&#34;"' in refused.text
    # Shown on the confirmation page, escaped; written to the profile as it was typed.
    assert site.sign_up("10.0.8.2", "markup@example.net", **evil).status_code == 200
    link = site.confirm_url(site.mail_to("markup@example.net")[0])
    page = httpx.get(link)
    assert "<script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;, &#34;quoted&#34;" in page.text
    assert site.press(link).status_code == 303
    profile = load_profile(site.subscribers / "markup.toml", NOW)
    assert profile.name == evil["name"] and profile.interests.keywords == ("<img src=x onerror=alert(1)>", '"quoted"')


def test_what_is_not_a_small_form_is_refused(site: Site) -> None:
    url = f"{site.url}/subscribe"
    assert (
        httpx.post(
            url, content=b"x" * 20_000, headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 413
    )
    assert httpx.post(url, json={"email": "json@example.net"}).status_code == 415
    assert (
        httpx.post(url, content=b"\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"}).status_code
        == 400
    )
    assert httpx.put(url).status_code == 405


# ---- time, and sign-up off -----------------------------------------------------------------------------------


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_an_expired_link_says_to_sign_up_again_creates_nothing_and_is_purged_later(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\nsignup = true\nsignup_expiry = "48h"\n')
    clock = Clock(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))
    with in_thread(create_app(ws.config, clock=clock)) as url:
        site = Site(ws, url)
        assert site.sign_up("10.1.0.1", "late@example.net").status_code == 200
        link = site.confirm_url(site.mail_to("late@example.net")[0])
        clock.now += timedelta(hours=47)
        page = httpx.get(link)  # opened just in time...
        assert page.status_code == 200
        token = TOKEN_FIELD.search(page.text)
        assert token
        clock.now += timedelta(hours=2)  # ...the button pressed too late
        before = site.profiles()
        for expired in (httpx.post(link, data={"form_token": token.group(1)}), httpx.get(link)):
            assert expired.status_code == 410
            assert (
                "This link has expired" in expired.text and '<a href="../subscribe">Sign up again</a>' in expired.text
            )
            assert_all_security_headers(expired)
        assert site.profiles() == before

        # Signing up again gives a new link that works; the old one is purged (on a later sign-up) a day after it
        # expired, and is then unknown.
        assert site.sign_up("10.1.0.2", "late@example.net").status_code == 200
        fresh = site.confirm_url(site.mail_to("late@example.net")[-1])
        assert site.press(fresh).status_code == 303 and (site.subscribers / "late.toml").exists()
        clock.now += timedelta(days=1, minutes=1)
        assert site.sign_up("10.1.0.3", "someone@example.net").status_code == 200
        assert httpx.get(link).status_code == 404
        with sqlite3.connect(site.database) as db:
            left = db.execute("SELECT email, confirmed_at IS NOT NULL FROM signups ORDER BY id").fetchall()
        assert left == [("late@example.net", 1), ("someone@example.net", 0)]


def test_with_signup_off_there_is_no_form_and_no_confirmation(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\n')
    assert ws.config.web.signup is False  # the default
    with in_thread(create_app(ws.config)) as url:
        for response in (
            httpx.get(f"{url}/subscribe"),
            httpx.post(f"{url}/subscribe", data={"email": "off@example.net", **FORM}),
            httpx.get(f"{url}/confirm/abc"),
            httpx.post(f"{url}/confirm/abc"),
        ):
            assert response.status_code == 404
            assert_all_security_headers(response)
    assert not (ws.config.delivery.maildir / "new").exists()


def test_signup_needs_base_url(tmp_path: Path) -> None:
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[web\] signup needs base_url"):
        make_workspace(tmp_path, web="signup = true\n")


def test_over_smtp_the_confirmation_reaches_the_address_and_a_refusal_is_a_503_not_check_your_inbox(
    tmp_path: Path,
) -> None:
    with SmtpServer(Behaviour(refuse={"bounce@example.net"})) as server:
        ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\nsignup = true\n')
        text = ws.config_path.read_text(encoding="utf-8").replace('method = "maildir"', 'method = "smtp"')
        text += f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nfrom = "Lab Digest <digest@lab.example>"\n'
        ws.config_path.write_text(text, encoding="utf-8")
        config = load_config(ws.config_path)
        with in_thread(create_app(config)) as url:
            site = Site(Workspace(ws.root, ws.config_path, config), url)
            assert site.sign_up("10.2.0.1", "smtp@example.net", name="Zoë Example").status_code == 200
            (received,) = server.wait_for(1)
            assert received.recipients == ["smtp@example.net"] and received.sender == "digest@lab.example"
            message = received.message
            assert (message["From"], message["To"]) == ("Lab Digest <digest@lab.example>", "smtp@example.net")
            assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
            assert f"{BASE_URL}/confirm/" in text_of(message)

            refused = site.sign_up("10.2.0.2", "bounce@example.net")
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "Check your inbox" not in refused.text


def test_a_used_confirmation_link_stops_leading_to_the_settings_page(tmp_path: Path) -> None:
    """Just after confirming (a second tab, a double press) the link still shows the settings link; later it opens
    nothing: it sits in mail archives and histories, and must not outlive a `digest token --rotate`."""
    ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\nsignup = true\n')
    clock = Clock(datetime(2027, 3, 1, 9, 0, tzinfo=UTC))
    with in_thread(create_app(ws.config, clock=clock)) as url:
        site = Site(ws, url)
        assert site.sign_up("10.2.0.1", "kept@example.net").status_code == 200
        link = site.confirm_url(site.mail_to("kept@example.net")[0])
        assert site.press(link).status_code == 303
        token, key = site.token_of("kept"), site.key_of("kept")
        assert token and key
        clock.now += timedelta(minutes=5)
        assert f"/settings/{key}" in httpx.get(link).text
        clock.now += timedelta(minutes=11)
        later = httpx.get(link)
        assert later.status_code == 200 and "Already confirmed" in later.text
        assert token not in later.text and key not in later.text and "/settings/" not in later.text


@pytest.mark.parametrize(
    ("peer", "trusted", "counted_apart"),
    [
        ("127.0.0.1", None, True),  # a reverse proxy on this host (the default)
        ("::1", None, True),
        ("10.1.2.3", None, False),  # a peer nobody listed: its X-Forwarded-For is ignored, the peer is the client
        ("10.1.2.3", '["10.0.0.0/8"]', True),  # a load balancer on another host, listed
        ("10.1.2.3", '["10.1.2.4"]', False),
        ("10.1.2.3", '["10.1.2.99/24"]', True),  # host bits set: still the network 10.1.2.0/24
    ],
)
def test_the_client_behind_a_trusted_proxy_is_the_one_it_forwards(
    tmp_path: Path, peer: str, trusted: str | None, counted_apart: bool
) -> None:
    from starlette.testclient import TestClient

    proxies = f"trusted_proxies = {trusted}\n" if trusted else ""
    ws = make_workspace(tmp_path, web=f'base_url = "{BASE_URL}"\nsignup = true\nsignup_per_ip = 1\n{proxies}')
    statuses = []
    with TestClient(create_app(ws.config), base_url=BASE_URL, client=(peer, 50000)) as client:
        for n in (1, 2):  # two readers behind the proxy, one sign-up each
            page = client.get("/subscribe")
            found = TOKEN_FIELD.search(page.text)
            assert found, page.text
            data = {"form_token": found.group(1), "email": f"reader{n}@example.org", **FORM}
            done = client.post("/subscribe", data=data, headers={"x-forwarded-for": f"203.0.113.{n}"})
            statuses.append(done.status_code)
    assert statuses == ([200, 200] if counted_apart else [200, 429])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["*"]', "not '*': trusting every peer lets any client pick the IP"),
        ('["proxy.example.org"]', "'proxy.example.org' is not an IP address or network"),
    ],
)
def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path, value: str, message: str) -> None:
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        make_workspace(tmp_path, web=f"trusted_proxies = {value}\n")
