"""The reader's settings page, /settings/<token>, over real HTTP: the real `digest serve` in a subprocess, driven
with httpx; the forms are filled in as a browser would submit them (lxml's form_values), and `digest preview`
runs in-process beside the server to see what the next digest holds.

Each test makes its own reader (a profile file and a token: the server reads both on every request), so the
tests share one server and one workspace without seeing each other's changes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import feedparser
import httpx
import lxml.html
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from cli import Ran, digest
from conftest import NOW
from test_feeds import Workspace, build_workspace
from test_web import start

from digest import runner
from digest.links import Links
from digest.profile_files import HISTORY
from digest.schedule import Daemon
from digest.store import Store, profile_version
from digest.subscribers import Profile, load_subscribers
from digest.tokens import server_secret, settings_key
from digest.web.forms import FORM_FIELD, form_token
from digest.web.settings import CONFLICT, FORBIDDEN

PROFILE = """name = "{name}"
email = "{id}@example.org"
format = "html"
schedule = "0 7 * * mon-fri"
timezone = "Europe/London"
max_papers = 5
min_score = 0.05
diversity = 0.3

[interests]
keywords = {keywords}
exclude = ["molecular"]
"""
EVIL = "https://evil.example"


@dataclass
class Site:
    ws: Workspace
    url: str
    log: Path
    secret: bytes
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.ws.config.paths.subscribers

    def reader(self, subscriber: str, keywords: str = '["graph neural networks", "message passing"]') -> str:
        """A new reader with a profile file and a token; returns the settings URL."""
        text = PROFILE.format(id=subscriber, name=subscriber.title(), keywords=keywords)
        (self.folder / f"{subscriber}.toml").write_text(text, encoding="utf-8")
        with Store(self.ws.config.paths.database) as store:
            self.tokens[subscriber] = store.token(subscriber)
        return self.settings(subscriber)

    def key(self, subscriber: str) -> str:
        """The reader's settings key: derived from their token under the server's secret (digest.tokens)."""
        return settings_key(self.secret, self.tokens[subscriber])

    def settings(self, subscriber: str) -> str:
        return f"{self.url}/settings/{self.key(subscriber)}"

    def profile_bytes(self, subscriber: str) -> bytes:
        return (self.folder / f"{subscriber}.toml").read_bytes()

    def history(self, subscriber: str) -> list[Path]:
        return sorted((self.folder / HISTORY / subscriber).glob("*.toml"))

    def cli(self, *args: str) -> Ran:
        return digest("--config", self.ws.config_path, *args)

    def preview(self, subscriber: str) -> list[dict[str, object]]:
        ran = self.cli("preview", subscriber, "--format", "json")
        assert ran.returncode == 0, ran.stderr
        papers: list[dict[str, object]] = json.loads(ran.stdout)["papers"]
        return papers

    def paused(self, subscriber: str) -> bool:
        with Store(self.ws.config.paths.database) as store:
            return store.subscriber_state(subscriber).paused


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("settings")
    ws = build_workspace(root)
    with pytest.MonkeyPatch.context() as env:
        # The server runs on the real clock, as in production: it dates form tokens and the .history/ copies
        # (one per write; a clock fixed by DIGEST_NOW would give every write of a test the same name).
        env.delenv("DIGEST_NOW", raising=False)
        env.setenv("DIGEST_EMBEDDINGS", "off")
        env.setenv("DIGEST_ENRICH", "off")
        process, url = start(ws, root / "serve.log")
    try:
        with Store(ws.config.paths.database) as store:
            secret = server_secret(store)
        assert secret is not None
        yield Site(ws, url, root / "serve.log", secret)
    finally:
        process.terminate()
        process.wait(timeout=10)


def forms_of(page: httpx.Response) -> dict[str, lxml.html.FormElement]:
    """The page's forms by their `action` field."""
    found = {}
    for form in lxml.html.fromstring(page.text).forms:
        fields = dict(form.form_values())
        found[fields.get("action", "")] = form
    return found


def filled(page: httpx.Response, action: str = "save", **changes: str) -> dict[str, str]:
    """What a browser submits from the page's form for `action`, with `changes` typed in."""
    fields = dict(forms_of(page)[action].form_values())
    fields.update(changes)
    return fields


def post(url: str, fields: dict[str, str], **headers: str) -> httpx.Response:
    return httpx.post(url, data=fields, headers=headers)


def error_beside(page: httpx.Response, name: str) -> str:
    """The message shown right after the field `name` (and the field says it is invalid)."""
    tree = lxml.html.fromstring(page.text)
    control = tree.get_element_by_id(name)
    assert control.get("aria-invalid") == "true", name
    message = tree.get_element_by_id(f"{'schedule' if name == 'schedule_custom' else name}-error")
    assert message.getprevious() is control, f"the message for {name} is not beside its field"
    return str(message.text_content()).strip()


# ---- GET ----------------------------------------------------------------------------------------------------


def test_the_page_shows_the_current_profile_and_writes_nothing(site: Site) -> None:
    url = site.reader("ann")
    before = site.profile_bytes("ann")
    page = httpx.get(url)
    assert page.status_code == 200
    for header, value in {
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cache-control": "no-store",
    }.items():
        assert page.headers[header].startswith(value), header
    assert "<script" not in page.text and "Ann &lt;ann@example.org&gt;" in page.text
    fields = filled(page)
    assert fields["keywords"] == "graph neural networks\nmessage passing"
    assert fields["exclude"] == "molecular"
    assert (fields["max_papers"], fields["min_score"], fields["diversity"]) == ("5", "0.05", "0.3")
    assert (fields["format"], fields["delivery"], fields["timezone"]) == ("html", "email", "Europe/London")
    assert fields["schedule"] == "0 7 * * mon-fri" and fields["schedule_custom"] == ""
    assert fields["version"] == profile_version((site.folder / "ann.toml").read_bytes())
    assert fields[FORM_FIELD] and fields["action"] == "save"
    assert {"pause", "save"} <= set(forms_of(page)), "a pause button beside the profile form"
    assert httpx.head(url).status_code == 200
    assert site.profile_bytes("ann") == before and site.history("ann") == []


# ---- POST: a change, a mistake, a conflict ------------------------------------------------------------------


def test_a_valid_change_is_written_with_a_backup_and_the_next_preview_follows_it(site: Site) -> None:
    url = site.reader("bea")
    before = site.profile_bytes("bea")
    assert any("Message Passing" in str(p["title"]) for p in site.preview("bea"))
    page = httpx.get(url)
    changes = {
        "keywords": "diffusion models\n  image generation  \n\n",
        "exclude": "",
        "max_papers": "2",
        "format": "markdown",
        "delivery": "both",
        "schedule": "custom",
        "schedule_custom": "30 6 * * tue,fri",
        "timezone": "America/New_York",
        "categories": "cs.CV, cs.LG",
    }
    done = post(url, filled(page, **changes))
    assert (done.status_code, done.headers["location"]) == (303, "?done=saved")
    saved = httpx.get(url + "?done=saved")
    assert "Saved. Your next digest uses these settings." in saved.text

    profile = load_subscribers(site.folder, NOW).get("bea")
    assert profile.interests.keywords == ("diffusion models", "image generation")
    assert profile.interests.exclude == () and profile.interests.categories == ("cs.CV", "cs.LG")
    assert (profile.max_papers, profile.format, profile.delivery) == (2, "markdown", "both")
    assert (profile.schedule, profile.timezone) == ("30 6 * * tue,fri", "America/New_York")
    assert (profile.name, profile.email, profile.lookback_days) == ("Bea", "bea@example.org", 7), "kept as they were"
    assert [path.read_bytes() for path in site.history("bea")] == [before], "the previous version is kept"
    # The next digest: what the new keywords ask for, two papers at most.
    titles = [str(p["title"]) for p in site.preview("bea")]
    assert len(titles) == 2 and all("iffusion" in t or "Generation" in t for t in titles), titles
    # Saving the same values again writes nothing.
    again = post(url, filled(saved))
    assert again.headers["location"] == "?done=unchanged" and len(site.history("bea")) == 1


def test_an_invalid_value_is_a_400_with_the_files_message_beside_the_field_and_nothing_written(site: Site) -> None:
    url = site.reader("cyd")
    before = site.profile_bytes("cyd")
    typed = {
        "keywords": "typed by the reader",
        "max_papers": "500",
        "min_score": "lots",
        "timezone": "Mars/Olympus_Mons",
        "schedule": "custom",
        "schedule_custom": "0 7 30 2 *",
    }
    refused = post(url, filled(httpx.get(url), **typed))
    assert refused.status_code == 400
    assert "Nothing was saved" in refused.text
    assert error_beside(refused, "max_papers") == "max_papers must be less than or equal to 100 (got 500)"
    assert error_beside(refused, "min_score") == "min_score must be a number (got 'lots')"
    assert error_beside(refused, "timezone").startswith("timezone is not a known time zone (got 'Mars/Olympus_Mons')")
    assert error_beside(refused, "schedule_custom").startswith("schedule never fires (got '0 7 30 2 *'")
    # The page shows what the reader typed, and still carries the version the page was first made from.
    shown = filled(refused)
    assert {key: shown[key] for key in typed} == typed
    assert shown["version"] == profile_version((site.folder / "cyd.toml").read_bytes())
    assert site.profile_bytes("cyd") == before and site.history("cyd") == []
    # The very messages a profile file with those values gets.
    (site.folder / "cyd-file.toml").write_text(
        PROFILE.format(id="cyd-file", name="C", keywords="[]").replace("max_papers = 5", "max_papers = 500"),
        encoding="utf-8",
    )
    try:
        (error,) = [e for e in load_subscribers(site.folder, NOW).errors if "cyd-file" in e]
        assert error.endswith(": max_papers must be less than or equal to 100 (got 500)")
    finally:
        (site.folder / "cyd-file.toml").unlink()
    # Corrected, the same page saves.
    fixed = post(url, filled(refused, max_papers="7", min_score="0.1", timezone="Europe/Paris", schedule="0 7 * * *"))
    assert fixed.status_code == 303
    assert load_subscribers(site.folder, NOW).get("cyd").max_papers == 7


def test_a_hand_edit_between_opening_and_saving_is_kept_and_the_reader_told(site: Site) -> None:
    url = site.reader("dot")
    page = httpx.get(url)
    hand_edit = site.profile_bytes("dot").replace(b"max_papers = 5", b"max_papers = 9  # the operator's edit")
    (site.folder / "dot.toml").write_bytes(hand_edit)
    conflict = post(url, filled(page, keywords="a change made in the open page", max_papers="3"))
    assert conflict.status_code == 409
    assert CONFLICT in conflict.text.replace("&#39;", "'")
    shown = filled(conflict)
    assert shown["max_papers"] == "9", "the page shows the current values"
    assert "a change made in the open page" in conflict.text, "and what the reader had typed, unsaved"
    assert site.profile_bytes("dot") == hand_edit and site.history("dot") == []
    # Made again on the page as it is now, the change is saved over the hand edit, which goes to .history/.
    saved = post(url, filled(conflict, keywords="a change made in the open page"))
    assert saved.status_code == 303
    assert [p.read_bytes() for p in site.history("dot")] == [hand_edit]
    assert load_subscribers(site.folder, NOW).get("dot").max_papers == 9


def test_the_daemon_picks_up_a_schedule_changed_on_the_page(site: Site) -> None:
    url = site.reader("ned")
    daemon = Daemon(  # what `digest run` watches and loads: the folder synced with the store
        profiles_signature=lambda: runner.profiles_signature(site.ws.config),
        load_profiles=lambda: runner.load_profiles(site.ws.config, report=False),
        ingest=lambda: None,
        send=lambda names, stop: None,
        ingest_every=3600,
        misfire_grace_time=3600,
    )
    scheduler = daemon.scheduler = BackgroundScheduler()  # never started: only its jobs are looked at

    def trigger() -> str:  # a scheduler not started keeps every job added, so the last one is the current one
        return str({job.id: job for job in scheduler.get_jobs()}["send:ned"].trigger)

    daemon.sync_jobs()
    assert "day_of_week='mon-fri'" in trigger()
    assert post(url, filled(httpx.get(url), schedule="0 7 * * mon")).status_code == 303
    daemon.sync_jobs()  # what `digest run` does every [schedule] watch_every seconds
    assert "day_of_week='mon'" in trigger()


def test_a_profile_that_does_not_load_is_the_operators_problem_and_a_missing_one_a_404(site: Site) -> None:
    url = site.reader("oz")
    (site.folder / "oz.toml").write_text('name = "Oz"\nemail = "oz@example.org"\nmax_papers = "many"\n')
    broken = httpx.get(url)
    assert broken.status_code == 503 and "try again later" in broken.text
    assert post(url, {"action": "pause"}).status_code == 403, "a POST still needs its form token"
    (site.folder / "oz.toml").unlink()
    assert httpx.get(url).status_code == 404


# ---- who may post -------------------------------------------------------------------------------------------


def test_cross_site_posts_and_bad_form_tokens_are_refused_and_change_nothing(site: Site) -> None:
    url = site.reader("eve")
    other = site.reader("eli")
    before = site.profile_bytes("eve")
    page = httpx.get(url)
    fields = filled(page, max_papers="1")
    purpose = "settings:eve"
    attempts = {
        "another origin": post(url, fields, Origin=EVIL),
        "another site, by Sec-Fetch-Site": post(url, fields, **{"Sec-Fetch-Site": "cross-site"}),
        "same-site but not same-origin": post(url, fields, **{"Sec-Fetch-Site": "same-site"}),
        "no form token": post(url, {k: v for k, v in fields.items() if k != FORM_FIELD}),
        "a forged token": post(url, {**fields, FORM_FIELD: f"{int(time.time())}.{'0' * 40}"}),
        "another reader's token": post(url, {**fields, FORM_FIELD: filled(httpx.get(other))[FORM_FIELD]}),
        "an expired token": post(
            url, {**fields, FORM_FIELD: form_token(site.secret, purpose, datetime.now(UTC) - timedelta(hours=5))}
        ),
        "a token for another form": post(url, {**fields, FORM_FIELD: filled(page, "pause")[FORM_FIELD]}),
        "an unknown action": post(url, {**fields, "action": "delete"}),
        "a pause from elsewhere": post(url, filled(page, "pause"), Origin=EVIL),
    }
    for what, response in attempts.items():
        assert response.status_code == 403, what
        assert FORBIDDEN.split(",")[0] in response.text, what
    assert site.profile_bytes("eve") == before and site.history("eve") == [] and not site.paused("eve")
    # Our own origin, as a browser sends it, is fine.
    ours = post(url, fields, Origin="https://digest.example.org", **{"Sec-Fetch-Site": "same-origin"})
    assert ours.status_code == 303 and load_subscribers(site.folder, NOW).get("eve").max_papers == 1


@pytest.mark.parametrize(
    "path",
    [
        "/settings/..%2F..%2Fconfig",
        "/settings/..%2Fsubscribers%2Fada",
        "/settings/%2E%2E",
        "/settings/%00",
        "/settings/not-a-token",
        "/settings/" + "a" * 6000,
        "/settings/",
        "/settings/{t}x",
        "/settings/{t}/more",
    ],
)
def test_unknown_tokens_and_odd_paths_are_a_plain_404(site: Site, path: str) -> None:
    if "ann" not in site.tokens:
        site.reader("ann")
    path = path.replace("{t}", site.key("ann"))
    for response in (httpx.get(site.url + path), httpx.post(site.url + path, data={"action": "pause"})):
        assert response.status_code == 404, (response.request.method, path)
        assert "This link is not valid" in response.text
        assert site.key("ann") not in response.text


def test_the_readers_token_alone_does_not_open_the_settings_page(site: Site) -> None:
    """The token is in the feed's URL, which readers paste into third-party feed readers: it opens the feed, never
    the page that shows the address and changes what is sent."""
    site.reader("nia")
    token = site.tokens["nia"]
    assert httpx.get(f"{site.url}/feeds/nia.xml", params={"token": token}).status_code == 200
    for response in (httpx.get(f"{site.url}/settings/{token}"), httpx.post(f"{site.url}/settings/{token}")):
        assert response.status_code == 404
    assert httpx.get(site.settings("nia")).status_code == 200


def test_odd_bodies_are_refused(site: Site) -> None:
    url = site.reader("fin")
    fields = filled(httpx.get(url))
    assert httpx.post(url, content=b"x=" + b"a" * 70_000, headers=_FORM).status_code == 413
    as_json = httpx.post(url, json=fields)
    assert as_json.status_code == 400 and not site.history("fin")
    shown = httpx.get(url + "?done=%3Cscript%3E")
    assert shown.status_code == 200 and "<script" not in shown.text


_FORM = {"content-type": "application/x-www-form-urlencoded"}


# ---- pause and resume; ratings --------------------------------------------------------------------------------


def test_pause_then_resume_and_resume_after_an_unsubscribe(site: Site) -> None:
    url = site.reader("gus")
    paused = post(url, filled(httpx.get(url), "pause"))
    assert (paused.status_code, paused.headers["location"]) == (303, "?done=paused")
    assert site.paused("gus")
    page = httpx.get(url + "?done=paused")
    assert "Your digest is paused" in page.text and set(forms_of(page)) >= {"resume", "save"}
    assert post(url, filled(page, "resume")).headers["location"] == "?done=resumed"
    assert not site.paused("gus")
    # The email's unsubscribe link, then the settings link: the reader undoes it themselves.
    unsubscribe = Links(site.url, site.tokens["gus"], "gus").unsubscribe() or ""
    unsubscribed = httpx.post(unsubscribe)
    assert unsubscribed.status_code == 200 and site.paused("gus")
    assert '"Your settings" link' in unsubscribed.text.replace("&#34;", '"'), "the page says how to come back"
    page = httpx.get(url)
    assert "Your digest is paused" in page.text
    assert post(url, filled(page, "resume")).status_code == 303 and not site.paused("gus")
    subscribers = {s["id"]: s for s in json.loads(site.cli("subscribers", "--json").stdout)}
    assert subscribers["gus"]["paused"] is False and subscribers["gus"]["next_due"]


def test_the_settings_page_lists_ratings_and_undoes_one(site: Site) -> None:
    url = site.reader("hal")
    links = Links(site.url, site.tokens["hal"], "hal")
    assert httpx.post(links.feedback("2611.00104", "like") or "").status_code == 200
    assert httpx.post(links.feedback("2611.00205", "dislike") or "").status_code == 200
    page = httpx.get(url)
    assert "Sparse Message Passing for Billion-Edge Graphs" in page.text and "Disliked" in page.text
    undo = [form for form in lxml.html.fromstring(page.text).forms if dict(form.form_values())["action"] == "undo"]
    fields = [dict(form.form_values()) for form in undo]
    assert sorted(f["paper"] for f in fields) == ["2611.00104", "2611.00205"]
    (like,) = [f for f in fields if f["paper"] == "2611.00104"]
    assert post(url, like).headers["location"] == "?done=undone"
    with Store(site.ws.config.paths.database) as store:
        assert store.feedback("hal") == {"2611.00205": -1}
    assert post(url, like).headers["location"] == "?done=already", "undoing twice changes nothing"
    assert "2611.00104" not in httpx.get(url).text


# ---- feedback that learns -------------------------------------------------------------------------------------


def test_excluded_authors_drop_their_papers_from_the_next_preview(site: Site) -> None:
    url = site.reader("ivy")
    assert "2611.00104" in [p["id"] for p in site.preview("ivy")]  # by Priya Raman and Jonas Berg
    done = post(url, filled(httpx.get(url), exclude_authors="RAMAN, Priya"))
    assert done.status_code == 303
    assert "2611.00104" not in [p["id"] for p in site.preview("ivy")]
    assert b'exclude_authors = ["RAMAN, Priya"]' in site.profile_bytes("ivy")


def test_the_feedback_page_offers_more_like_this_never_this_author_never_this_word(site: Site) -> None:
    site.reader("jo")
    like = Links(site.url, site.tokens["jo"], "jo").feedback("2611.00104", "like") or ""
    thanks = httpx.post(like)
    assert thanks.status_code == 200 and "Tune your digest" in thanks.text
    offered = forms_of(thanks)
    assert set(offered) == {"like", "never_author", "never_about"}
    # The forms post to the settings page by a relative address (a proxy prefix is kept).
    targets = {str(httpx.URL(like).join(form.get("action"))) for form in offered.values()}
    assert targets == {site.settings("jo")}
    settings = site.settings("jo")
    words = [radio.get("value") for radio in offered["never_about"].inputs if radio.get("name") == "about"]
    # Title words, but not those of the reader's own keywords ("graph neural networks", "message passing").
    assert words == ["sparse", "billion-edge"]
    assert [o.text for o in offered["never_author"].iter("option")] == ["Priya Raman", "Jonas Berg"]

    more = post(settings, dict(offered["like"].form_values()))
    assert more.headers["location"] == "?done=liked"
    author = dict(offered["never_author"].form_values())
    assert author["author"] == "Priya Raman"
    assert post(settings, {**author, "author": "Jonas Berg"}).headers["location"] == "?done=author"
    about = {**dict(offered["never_about"].form_values()), "about": "sparse"}
    assert post(settings, about).headers["location"] == "?done=about"
    typed = {**about, "about": "", "about_other": "  billion-edge   graphs "}  # typed: any phrase
    assert post(settings, typed).headers["location"] == "?done=about"

    profile = load_subscribers(site.folder, NOW).get("jo")
    assert profile.interests.papers == ("2611.00104",)
    assert profile.interests.exclude_authors == ("Jonas Berg",)
    assert profile.interests.exclude == ("molecular", "sparse", "billion-edge graphs")
    assert len(site.history("jo")) == 4, "each change kept the version before it"
    # Once more: nothing to add, nothing written.
    assert post(settings, dict(offered["like"].form_values())).headers["location"] == "?done=already"
    assert post(settings, {**author, "author": "J. Berg"}).headers["location"] == "?done=already"
    assert post(settings, about).headers["location"] == "?done=already"
    assert len(site.history("jo")) == 4
    # The next page after a like knows the paper is liked already, and no longer offers the excluded author.
    again = httpx.post(like)
    assert "among your liked papers already" in again.text
    assert [o.text for o in forms_of(again)["never_author"].iter("option")] == ["Priya Raman"]
    # From another site, or without the page's token: refused.
    assert post(settings, dict(offered["like"].form_values()), Origin=EVIL).status_code == 403
    assert post(settings, {**author, FORM_FIELD: ""}).status_code == 403
    # A choice left empty is said so.
    empty = post(settings, {**about, "about": "", "about_other": " "})
    assert empty.status_code == 400 and "Choose a word" in empty.text


def test_a_following_then_never_removes_the_author_from_those_followed(site: Site) -> None:
    url = site.reader("kit")
    post(url, filled(httpx.get(url), authors="Priya Raman\nAda Lovelace"))
    dislike = Links(site.url, site.tokens["kit"], "kit").feedback("2611.00104", "dislike") or ""
    thanks = httpx.post(dislike)
    assert "Fewer like this: that is what your dislike does." in thanks.text and "like" not in forms_of(thanks)
    never = {**dict(forms_of(thanks)["never_author"].form_values()), "author": "P. Raman"}
    assert post(site.settings("kit"), never).headers["location"] == "?done=author"
    interests = load_subscribers(site.folder, NOW).get("kit").interests
    assert (interests.authors, interests.exclude_authors) == (("Ada Lovelace",), ("P. Raman",))
    refused = post(site.settings("kit"), {**never, "author": "12345"})
    assert refused.status_code == 400 and "is not a name" in refused.text


# ---- links to the page; the log ---------------------------------------------------------------------------


def test_the_feed_never_carries_the_settings_key(site: Site) -> None:
    site.reader("lou")
    token = site.tokens["lou"]
    body = httpx.get(f"{site.url}/feeds/lou.xml", params={"token": token}).text
    feed = feedparser.parse(body)
    assert [link for link in feed.feed.links if link.rel == "related"] == []
    assert site.key("lou") not in body and "/settings/" not in body


def test_no_token_reaches_the_log(site: Site) -> None:
    url = site.reader("max")
    post(url, filled(httpx.get(url), max_papers="4"))
    httpx.get(f"{site.url}/settings/{quote(site.key('max')[:20])}")
    deadline = time.monotonic() + 5  # a request's line is written just after its response
    while "GET /settings/<token> 404" not in (text := site.log.read_text(errors="replace")):
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.05)
    assert "POST /settings/<token> 303" in text
    for secret in [*site.tokens.values(), *(site.key(name) for name in site.tokens)]:
        assert secret not in text and secret[:20] not in text
    assert re.search(r"max: settings saved", text)


def test_the_settings_form_caps_lists_and_refuses_invisible_characters() -> None:
    from conftest import NOW

    from digest.web.settings_form import MAX_ITEMS, profile_from_form

    current = Profile.model_validate(
        {"name": "Ada", "email": "ada@example.org", "interests": {"keywords": ["graphs"]}}, context={"now": NOW}
    ).model_copy(update={"id": "ada"})
    base = {"format": "html", "delivery": "email", "timezone": "UTC", "schedule": "0 7 * * *"}
    base |= {"max_papers": "10", "min_score": "0.05", "diversity": "0.3"}
    ok, problems = profile_from_form(current, {**base, "keywords": "graphs\nmessage passing"}, NOW)
    assert ok is not None and not problems
    many = "\n".join(f"topic {n}" for n in range(MAX_ITEMS + 1))
    assert profile_from_form(current, {**base, "keywords": many}, NOW)[1]["keywords"].startswith(
        "keywords are too many"
    )
    hidden = profile_from_form(current, {**base, "keywords": "graphs", "authors": "A\u200bda Lovelace"}, NOW)
    assert hidden[0] is None and "invisible" in hidden[1]["authors"]
