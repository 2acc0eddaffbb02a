"""Profiles written by the program (digest.profile_book, with the subscribers folder on this host): validated,
atomic, the previous version kept, never over someone's change; and the form tokens and origin checks that keep
other sites from making those writes. tests/test_profile_book.py covers the sync itself, on both engines."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW
from starlette.requests import Request

from digest.errors import ConfigError
from digest.profile_book import ProfileBook
from digest.profile_files import HISTORY, KEEP_VERSIONS, ProfileConflict
from digest.store import ABSENT, Store, profile_version
from digest.subscribers import Profile, load_subscribers
from digest.tokens import server_secret
from digest.web.forms import cross_site, form_token, form_token_ok


def reader(email: str = "ada@example.org", name: str = "Ada", **fields: object) -> Profile:
    data = {"name": name, "email": email, "interests": {"keywords": ["graphs"]}, **fields}
    return Profile.model_validate(data, context={"now": NOW})


def file_version(path: Path) -> str:
    return profile_version(path.read_bytes()) if path.exists() else ABSENT


class Book:
    """The profiles of a one-host deployment: the folder, and a SQLite store beside it (one per thread)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database = folder.parent / f"{folder.name}.db"

    def __getattr__(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            with Store(self.database) as store:
                return getattr(ProfileBook(store, self.folder), name)(*args, **kwargs)

        return call


def create_profile(folder: Path, profile: Profile, now: object, *, taken: set[str] | None = None) -> tuple[str, bool]:
    return Book(folder).create(profile, now, taken=taken or set())  # type: ignore[operator,no-any-return]


def save_profile(folder: Path, profile: Profile, *, expected_version: str, now: object) -> str:
    return Book(folder).save(profile, expected_version=expected_version, now=now)  # type: ignore[operator,no-any-return]


def read_profile(folder: Path, subscriber: str, now: object) -> tuple[Profile, str] | None:
    return Book(folder).read(subscriber, now)  # type: ignore[operator,no-any-return]


def test_a_new_address_gets_a_profile_and_the_same_address_never_a_second(tmp_path: Path) -> None:
    assert create_profile(tmp_path, reader(), NOW) == ("ada", True)
    assert create_profile(tmp_path, reader("ADA@example.org", "Ada again"), NOW) == ("ada", False)
    assert create_profile(tmp_path, reader("ada@elsewhere.example", "Other Ada"), NOW) == ("ada-2", True)
    (tmp_path / "Ada-3.toml").write_text('name = "x"\n', encoding="utf-8")  # taken, whatever its case
    assert create_profile(tmp_path, reader("ada@third.example"), NOW) == ("ada-4", True)
    loaded = {p.id: p for p in load_subscribers(tmp_path, NOW).profiles}
    assert loaded["ada"].name == "Ada" and loaded["ada-2"].email == "ada@elsewhere.example"
    assert loaded["ada"].interests.keywords == ("graphs",)


def test_two_sign_ups_at_once_make_two_files(tmp_path: Path) -> None:
    Store(Book(tmp_path).database).close()  # made once; the threads share it
    results: list[tuple[str, bool]] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(create_profile(tmp_path, reader(f"ada@x{n}.example"), NOW)))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted([("ada", True)] + [(f"ada-{n}", True) for n in range(2, 9)])


def test_save_keeps_the_old_version_and_refuses_a_file_changed_meanwhile(tmp_path: Path) -> None:
    create_profile(tmp_path, reader(), NOW)
    path = tmp_path / "ada.toml"
    seen = file_version(path)
    changed = reader(max_papers=5).model_copy(update={"id": "ada"})
    new_version = save_profile(tmp_path, changed, expected_version=seen, now=NOW)
    assert new_version == file_version(path) != seen
    assert load_subscribers(tmp_path, NOW).get("ada").max_papers == 5
    (kept,) = (tmp_path / HISTORY / "ada").glob("*.toml")
    assert "max_papers = 10" in kept.read_text(encoding="utf-8")
    # An operator edits the file by hand; a page opened before that must not overwrite it.
    path.write_text(path.read_text(encoding="utf-8").replace("max_papers = 5", "max_papers = 7"), encoding="utf-8")
    with pytest.raises(ProfileConflict, match="ada.toml was changed after this page was opened"):
        save_profile(tmp_path, changed, expected_version=new_version, now=NOW)
    assert load_subscribers(tmp_path, NOW).get("ada").max_papers == 7
    with pytest.raises(ProfileConflict):  # a profile deleted meanwhile is a change too
        path.unlink()
        save_profile(tmp_path, changed, expected_version=new_version, now=NOW)
    assert file_version(path) == ABSENT


def test_only_the_last_versions_are_kept(tmp_path: Path) -> None:
    create_profile(tmp_path, reader(), NOW)
    path = tmp_path / "ada.toml"
    for step in range(KEEP_VERSIONS + 5):
        profile = reader(max_papers=1 + step).model_copy(update={"id": "ada"})
        save_profile(tmp_path, profile, expected_version=file_version(path), now=NOW + timedelta(seconds=step))
    assert len(list((tmp_path / HISTORY / "ada").glob("*.toml"))) == KEEP_VERSIONS


def test_what_does_not_validate_is_never_written(tmp_path: Path) -> None:
    create_profile(tmp_path, reader(), NOW)
    before = (tmp_path / "ada.toml").read_bytes()
    broken = reader().model_copy(update={"id": "ada", "max_papers": 0})  # model_copy skips validation
    with pytest.raises(ConfigError, match="max_papers"):
        save_profile(tmp_path, broken, expected_version=file_version(tmp_path / "ada.toml"), now=NOW)
    assert (tmp_path / "ada.toml").read_bytes() == before


def test_form_tokens_are_bound_to_purpose_and_time(tmp_path: Path) -> None:
    with Store(tmp_path / "digest.db") as store:
        secret = server_secret(store)
        assert secret is not None and server_secret(store) == secret and len(secret) == 32
    token = form_token(secret, "settings:ada", NOW)
    assert form_token_ok(secret, "settings:ada", token, NOW + timedelta(hours=1))
    assert not form_token_ok(secret, "settings:grace", token, NOW)  # another reader's form
    assert not form_token_ok(secret, "settings:ada", token, NOW + timedelta(hours=5))  # stale
    assert not form_token_ok(secret, "settings:ada", token, NOW - timedelta(hours=1))  # from the future
    assert not form_token_ok(b"another server" * 2, "settings:ada", token, NOW)
    for forged in ("", "x", "1.2", token + "0", f"{int(NOW.timestamp())}.{'0' * 40}", "9" * 40 + ".ab"):
        assert not form_token_ok(secret, "settings:ada", forged, NOW)


def _request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "scheme": "http", "server": ("127.0.0.1", 8080), "path": "/x"}
    return Request({**scope, "headers": [(b"host", b"127.0.0.1:8080"), *raw], "query_string": b""})


@pytest.mark.parametrize(
    ("headers", "base_url", "refused"),
    [
        ({}, None, False),  # an old browser or a script: the form token decides
        ({"sec_fetch_site": "same-origin"}, None, False),
        ({"sec_fetch_site": "none"}, None, False),
        ({"sec_fetch_site": "cross-site"}, None, True),
        ({"sec_fetch_site": "same-site"}, None, True),  # another app on a sibling subdomain
        ({"origin": "http://127.0.0.1:8080"}, None, False),
        ({"origin": "https://evil.example"}, None, True),
        # Under Referrer-Policy: no-referrer a browser sends Origin: null with our own forms' POSTs: no verdict
        # (the form token decides), unless Sec-Fetch-Site gives one.
        ({"origin": "null"}, None, False),
        ({"origin": "null", "sec_fetch_site": "same-origin"}, None, False),
        ({"origin": "null", "sec_fetch_site": "cross-site"}, None, True),
        ({"origin": "https://evil.example", "sec_fetch_site": "same-origin"}, None, False),  # the browser knows
        ({"origin": "https://digest.example.org"}, "https://digest.example.org/app", False),
        ({"origin": "http://127.0.0.1:8080"}, "https://digest.example.org", True),
    ],
)
def test_cross_site_requests_are_recognised(headers: dict[str, str], base_url: str | None, refused: bool) -> None:
    assert cross_site(_request(**headers), base_url) is refused


def test_saves_in_one_instant_keep_every_replaced_version(tmp_path: Path) -> None:
    create_profile(tmp_path, reader(), NOW)
    path = tmp_path / "ada.toml"
    for step in range(4):  # a fixed clock: four saves at the very same instant
        profile = reader(max_papers=2 + step).model_copy(update={"id": "ada"})
        save_profile(tmp_path, profile, expected_version=file_version(path), now=NOW)
    kept = sorted(p.read_text(encoding="utf-8") for p in (tmp_path / HISTORY / "ada").glob("*.toml"))
    assert len(kept) == 4 and len(set(kept)) == 4


def test_read_profile_gives_the_version_of_the_bytes_it_read(tmp_path: Path) -> None:
    create_profile(tmp_path, reader(), NOW)
    found = read_profile(tmp_path, "ada", NOW)
    assert found is not None
    profile, version = found
    assert profile.id == "ada" and version == file_version(tmp_path / "ada.toml")
    assert read_profile(tmp_path, "nobody", NOW) is None


def test_an_id_the_store_still_knows_is_not_given_to_a_new_reader(tmp_path: Path) -> None:
    assert create_profile(tmp_path, reader(), NOW, taken={"ADA"}) == ("ada-2", True)


def test_pruning_one_readers_versions_never_touches_anothers(tmp_path: Path) -> None:
    """Ids may hold dots: "ada" and "ada.2" are two readers, and each keeps its own last versions."""
    for email, subscriber in (("ada@example.org", "ada"), ("ada.2@example.org", "ada.2")):
        assert create_profile(tmp_path, reader(email), NOW) == (subscriber, True)
    for step in range(KEEP_VERSIONS + 5):
        for subscriber in ("ada", "ada.2"):
            path = tmp_path / f"{subscriber}.toml"
            profile = load_subscribers(tmp_path, NOW).get(subscriber).model_copy(update={"max_papers": 1 + step})
            save_profile(tmp_path, profile, expected_version=file_version(path), now=NOW + timedelta(seconds=step))
    for subscriber in ("ada", "ada.2"):
        assert len(list((tmp_path / HISTORY / subscriber).glob("*.toml"))) == KEEP_VERSIONS


def test_a_hand_edit_during_a_save_is_refused_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest.profile_book as book

    create_profile(tmp_path, reader(), NOW)
    path = tmp_path / "ada.toml"
    seen = file_version(path)
    keep = book.keep_version

    def keep_then_an_editor_saves(*args: object) -> None:
        keep(*args)  # type: ignore[arg-type]
        path.write_text(path.read_text(encoding="utf-8").replace("max_papers = 10", "max_papers = 7"), encoding="utf-8")

    monkeypatch.setattr(book, "keep_version", keep_then_an_editor_saves)
    with pytest.raises(ProfileConflict):
        save_profile(tmp_path, reader(max_papers=3).model_copy(update={"id": "ada"}), expected_version=seen, now=NOW)
    assert load_subscribers(tmp_path, NOW).get("ada").max_papers == 7


def test_one_secret_wins_however_many_processes_make_it_at_once(tmp_path: Path) -> None:
    """The secret lives in the store (shared by every host on one database): racing makers all get one value."""
    for trial in range(10):
        database = tmp_path / f"t{trial}" / "digest.db"
        with Store(database):
            pass  # the schema, made once

        def make(got: list[bytes], database: Path = database) -> None:
            with Store(database) as store:
                made = server_secret(store)
                assert made is not None
                got.append(made)

        got: list[bytes] = []
        threads = [threading.Thread(target=make, args=(got,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and len(set(got)) == 1 and len(got[0]) == 32


def test_a_secret_from_the_old_file_is_taken_into_the_store(tmp_path: Path) -> None:
    """Settings links already sent keep working: a key from the file of before becomes the store's."""
    from digest.tokens import legacy_secret_path

    old = "ab" * 32
    legacy_secret_path(tmp_path / "digest.db").write_text(old, encoding="ascii")
    with Store(tmp_path / "digest.db") as store:
        assert server_secret(store, create=False) is None  # a preview takes nothing over
        assert server_secret(store) == bytes.fromhex(old)
    legacy_secret_path(tmp_path / "other.db").write_text("not a key", encoding="ascii")
    with Store(tmp_path / "other.db") as store:
        made = server_secret(store)
        assert made is not None and made.hex() != "not a key" and len(made) == 32


def test_the_settings_key_is_the_tokens_hmac_under_the_servers_secret(tmp_path: Path) -> None:
    from digest.tokens import settings_key

    with Store(tmp_path / "digest.db") as store:
        assert server_secret(store, create=False) is None  # a preview makes nothing
        secret = server_secret(store)
    assert secret is not None
    key = settings_key(secret, "token-one")
    assert key == settings_key(secret, "token-one") and len(key) == 32 and re.fullmatch(r"[A-Za-z0-9_-]{32}", key)
    assert key != settings_key(secret, "token-two")  # a rotated token: another key
    assert key != settings_key(b"another server's secret", "token-one")
    assert "token-one" not in key
