"""A reader's whole self-service journey in a real browser (headless Chromium driven by Playwright, the system's
Chromium: no browser download): sign up on the form, read the confirmation email from the Maildir, confirm, change
the keywords on the settings page and see the next preview change, unsubscribe from the email's link, resume from
the settings page. Every page is also photographed at 375 and 1024 px ($DIGEST_SCREENSHOTS keeps the pictures).

The server is the real `digest serve` in a subprocess, on the suite's fixed DIGEST_NOW; the browser posts the
forms itself, so the same-origin checks and form tokens are those a reader's browser meets.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cli import digest
from delivery_helpers import DEMO_INBOX

from digest.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI sets DIGEST_REQUIRE_BROWSER: there a missing browser or Playwright fails the suite instead of skipping.
REQUIRED = bool(os.environ.get("DIGEST_REQUIRE_BROWSER"))
if REQUIRED:
    import playwright.sync_api as playwright
else:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="chromium not installed (apt-get install -y chromium)"
)
WIDTHS = (375, 1024)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A workspace from `digest init` with sign-up on, the demo papers ingested, and `digest serve` running."""
    made = digest("init", tmp_path / "site", "--name", "Operator", "--email", "op@example.org", "--keywords", "x", "-y")
    assert made.returncode == 0, made.stderr
    root = tmp_path / "site"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = root / "config.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[web]\n", f'[web]\nbase_url = "{base}"\nsignup = true\n', 1),
        encoding="utf-8",
    )
    (root / "subscribers" / "op.toml").unlink()  # the readers here are the ones who sign up
    for item in DEMO_INBOX.iterdir():
        shutil.copy(item, root / "inbox" / item.name)
    assert digest("--config", config, "ingest").returncode == 0
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), "serve", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield root, base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _shoot(page: object, name: str, tmp_path: Path) -> None:
    """The page at each width (full height), kept in $DIGEST_SCREENSHOTS when set."""
    keep = os.environ.get("DIGEST_SCREENSHOTS")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})  # type: ignore[attr-defined]
        target = tmp_path / f"{name}-{width}.png"
        page.screenshot(path=str(target), full_page=True)  # type: ignore[attr-defined]
        assert target.stat().st_size > 5_000, f"{name} at {width}px is (nearly) empty"
        overflow = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
        assert overflow <= width, f"{name} is {overflow}px wide at {width}px"
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(target, Path(keep) / target.name)


def _preview_titles(root: Path) -> list[str]:
    shown = digest("--config", root / "config.toml", "preview", "grace", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    return [paper["title"] for paper in json.loads(shown.stdout)["papers"]]


def _mail(root: Path) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(root / "var" / "maildir", create=False)
    return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in box]  # type: ignore[misc]


def test_sign_up_confirm_change_unsubscribe_resume(served: tuple[Path, str], tmp_path: Path) -> None:
    root, base = served
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()

            # Sign up.
            page.goto(f"{base}/subscribe")
            _shoot(page, "subscribe", tmp_path)
            page.fill("#email", "grace@example.org")
            page.fill("#name", "Grace Hopper")
            page.fill("#keywords", "graph neural networks, message passing")
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert "inbox" in page.inner_text("body").lower()
            assert not (root / "subscribers" / "grace.toml").exists(), "nothing is created before the confirmation"

            # The confirmation email, as the reader gets it.
            (confirmation,) = _mail(root)
            assert confirmation["To"] == "grace@example.org"
            body = confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            (link,) = re.findall(rf"{re.escape(base)}/confirm/\S+", body)

            # Confirm: the GET page writes nothing; the button does.
            page.goto(link)
            _shoot(page, "confirm", tmp_path)
            assert not (root / "subscribers" / "grace.toml").exists()
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/settings/[^/?]+"))
            assert (root / "subscribers" / "grace.toml").exists()
            settings_url = page.url.split("?")[0]
            _shoot(page, "settings", tmp_path)
            before = _preview_titles(root)
            assert before, "the new reader's first digest has papers"

            # Change the keywords on the settings page; the next preview follows.
            page.fill("#keywords", "diffusion models\nweather forecasting")
            page.click("form:has(input[name=action][value=save]) button[type=submit]")
            page.wait_for_load_state()
            assert "diffusion models" in (root / "subscribers" / "grace.toml").read_text(encoding="utf-8"), (
                page.inner_text("body")[:3000]
            )
            after = _preview_titles(root)
            assert after and after != before

            # Unsubscribe from the link every email carries (its page, then its button) ...
            with Store(root / "var" / "digest.db") as store:
                token = store.subscriber_state("grace").token
            assert token and token not in settings_url  # the page's key is not the token the email's links carry
            page.goto(f"{base}/unsubscribe/{token}")
            _shoot(page, "unsubscribe", tmp_path)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            _shoot(page, "unsubscribed", tmp_path)
            state = json.loads(digest("--config", root / "config.toml", "subscribers", "--json").stdout)
            assert [s["paused"] for s in state if s["id"] == "grace"] == [True]

            # ... and undo it from the settings page.
            page.goto(settings_url)
            assert "paused" in page.inner_text("body")
            page.click("form:has(input[name=action][value=resume]) button[type=submit]")
            page.wait_for_load_state()
            state = json.loads(digest("--config", root / "config.toml", "subscribers", "--json").stdout)
            assert [s["paused"] for s in state if s["id"] == "grace"] == [False]
            _shoot(page, "resumed", tmp_path)
        finally:
            browser.close()
