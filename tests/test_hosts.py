"""Issue 19 end to end: three hosts of one deployment on one PostgreSQL, each with a config.toml and folders of its
own. The operator's host has the subscribers folder; the web host and the sending host have none. A reader signs
up on the web host, the sending host sends them their digest, the operator finds their profile file; a change on
the settings page reaches the next digest; the operator's hand edit reaches every host.

Real parts: a PostgreSQL server (tests/postgres_server.py), the web app under Starlette's test client, the CLI
in-process, Maildirs. Skipped, saying why, without a PostgreSQL server; under $DIGEST_REQUIRE_POSTGRES (CI) that
fails instead."""

from __future__ import annotations

import email
import email.policy
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from cli import digest
from conftest import DEMO_DATA
from postgres_server import PASSWORD_ENV, PostgresServer
from starlette.testclient import TestClient
from test_web_settings import filled

from digest.config import load_config
from digest.web.app import create_app

BASE_URL = "https://digest.example.org"
TOKEN_FIELD = re.compile(r'name="form_token" value="([^"]+)"')


@dataclass(frozen=True)
class Host:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def mail(self) -> list[EmailMessage]:
        folder = self.root / "var" / "maildir" / "new"
        files = sorted(folder.iterdir(), key=lambda path: path.stat().st_mtime_ns) if folder.is_dir() else []
        return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in files]

    def run(self, *args: str) -> str:
        done = digest("--config", self.config, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout


@dataclass(frozen=True)
class Deployment:
    ops: Host  # the operator's host: the subscribers folder
    web: Host  # `digest serve`, sign-up on
    sender: Host  # `digest send`


@pytest.fixture
def deployment(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    monkeypatch.setenv(PASSWORD_ENV, postgres_server.password)
    name = postgres_server.new_database()
    database = f'[database]\nurl = "{postgres_server.url(name)}"\npassword_env = "{PASSWORD_ENV}"\n'
    hosts = []
    for role in ("ops", "web", "sender"):
        root = tmp_path / role
        (root / "inbox").mkdir(parents=True)
        (root / "config.toml").write_text(
            '[paths]\ninbox = "inbox"\nsubscribers = "subscribers"\ndatabase = "var/digest.db"\nfeeds = "var/feeds"\n'
            '[delivery]\nmethod = "maildir"\nmaildir = "var/maildir"\n'
            f'[web]\nbase_url = "{BASE_URL}"\nsignup = true\n{database}',
            encoding="utf-8",
        )
        hosts.append(Host(root))
    ops, web, sender = hosts
    shutil.copytree(DEMO_DATA / "subscribers", ops.root / "subscribers")
    shutil.copytree(DEMO_DATA / "inbox", ops.root / "inbox", dirs_exist_ok=True)
    try:
        yield Deployment(ops, web, sender)
    finally:
        postgres_server.drop(name)


def sign_up(client: TestClient, address: str) -> None:
    page = client.get("/subscribe")
    token = TOKEN_FIELD.search(page.text)
    assert token, page.text
    form = {
        "form_token": token.group(1),
        "email": address,
        "name": "Rosalind Reader",
        "keywords": "graph neural networks, message passing",
        "format": "markdown",
        "schedule": "daily",
        "timezone": "Europe/Paris",
    }
    answer = client.post("/subscribe", data=form, headers={"x-forwarded-for": "198.51.100.20"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text, answer.text


def confirm(client: TestClient, message: EmailMessage) -> str:
    """Press the button behind the confirmation link; returns where it leads (the settings page)."""
    text = str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    found = re.search(rf"{re.escape(BASE_URL)}(/confirm/\S+)", text)
    assert found, text
    page = client.get(found.group(1))
    token = TOKEN_FIELD.search(page.text)
    assert token, page.text
    done = client.post(found.group(1), data={"form_token": token.group(1)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return str(done.headers["location"]).removeprefix(BASE_URL)


def test_a_reader_signs_up_on_the_web_host_and_the_sending_host_sends_to_them(deployment: Deployment) -> None:
    ops, web, sender = deployment.ops, deployment.web, deployment.sender
    ops.run("ingest")  # the operator's host: papers, and the three demo profiles synced into the shared store
    assert not (web.root / "subscribers").exists() and not (sender.root / "subscribers").exists()

    with TestClient(create_app(load_config(web.config)), base_url=BASE_URL) as client:
        sign_up(client, "rosalind@example.net")
        (confirmation,) = web.mail()  # the web host's own mail
        settings = confirm(client, confirmation)
    assert not (web.root / "subscribers").exists(), "the web host writes the store, not a folder of its own"

    # The sending host, with no folder, knows every reader, the new one included, and sends to them.
    listed = {s["id"]: s for s in json.loads(sender.run("subscribers", "--json"))}
    assert set(listed) == {"ada", "alan", "grace", "rosalind"}
    report = json.loads(sender.run("send", "rosalind", "--json"))
    assert [item["subscriber"] for item in report["sent"]] == ["rosalind"]
    (digest_mail,) = sender.mail()
    assert digest_mail["To"] == "Rosalind Reader <rosalind@example.net>"
    assert f"{BASE_URL}/settings/" in str(digest_mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]

    # The operator's folder gets the new profile file at its next run.
    assert not (ops.root / "subscribers" / "rosalind.toml").exists()
    ops.run("subscribers")
    written = (ops.root / "subscribers" / "rosalind.toml").read_text(encoding="utf-8")
    assert 'email = "rosalind@example.net"' in written and 'schedule = "0 7 * * *"' in written

    # A change on the settings page (web host) reaches the operator's file and the sending host.
    with TestClient(create_app(load_config(web.config)), base_url=BASE_URL) as client:
        page = client.get(settings)
        assert page.status_code == 200 and "rosalind@example.net" in page.text
        saved = client.post(settings, data=filled(page, max_papers="4"), follow_redirects=False)
        assert saved.status_code == 303, saved.text
    ops.run("subscribers")
    assert "max_papers = 4" in (ops.root / "subscribers" / "rosalind.toml").read_text(encoding="utf-8")
    assert "max_papers = 4" in sender.run("profile", "rosalind")  # what the sending host will use

    # The operator's hand edit reaches the sending host (no folder there) at once.
    path = ops.root / "subscribers" / "ada.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('name = "', 'name = "Dr '), encoding="utf-8")
    ops.run("subscribers")
    assert json.loads(sender.run("subscribers", "--json"))[0]["name"].startswith("Dr ")
