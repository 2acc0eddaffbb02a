"""Subscriber profiles in the store (digest.profile_book, Store.write_profiles and the profile reads): the store's
compare-and-set writes and history; the sync of a subscribers folder with the store; a folder host and a web host
without the folder on one database. Every test that touches the store runs on SQLite and on PostgreSQL
(tests/conftest.py); two Store connections to one database stand for two hosts."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW, StoreMaker

from digest.config import Config, Database
from digest.errors import ConfigError
from digest.files import write_atomically
from digest.profile_book import ProfileBook
from digest.profile_files import HISTORY, ProfileConflict, profile_text
from digest.store import ABSENT, ProfileChange, Store, profile_version
from digest.subscribers import Profile, SubscriberSet, load_subscribers

# ---- helpers ------------------------------------------------------------------------------------------------


def reader(email: str = "ada@example.org", name: str = "Ada", **fields: object) -> Profile:
    data = {"name": name, "email": email, "interests": {"keywords": ["graphs"]}, **fields}
    return Profile.model_validate(data, context={"now": NOW})


def as_file(profile: Profile) -> bytes:
    """The bytes the program writes for a profile (the sign-up and settings pages, an export to the folder)."""
    return profile_text(profile).encode("utf-8")


def hand_written(name: str = "Ada", email: str = "Ada@Example.org", max_papers: int = 10) -> bytes:
    """A profile file as an operator writes it: a few keys, in their own layout."""
    text = f'name = "{name}"\nemail = "{email}"\nmax_papers = {max_papers}\n\n[interests]\nkeywords = ["graphs"]\n'
    return text.encode("utf-8")


def put(subscriber: str, data: bytes, **fields: object) -> ProfileChange:
    return ProfileChange(subscriber, "put", data=data, **fields)  # type: ignore[arg-type]


def stored(store: Store) -> dict[str, bytes]:
    return {record.subscriber: record.data for record in store.profile_records()}


def ids(loaded: SubscriberSet) -> list[str]:
    return [profile.id for profile in loaded.profiles]


def kept_files(folder: Path, subscriber: str) -> list[bytes]:
    """The replaced versions of a profile file kept in .history/<id>/, oldest first."""
    return [path.read_bytes() for path in sorted((folder / HISTORY / subscriber).glob("*.toml"))]


def toml_files(folder: Path) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted(folder.glob("*.toml"))}


@dataclass
class Hosts:
    """One deployment: the host with the subscribers folder, and a web host on the same database without it."""

    folder: Path
    here: ProfileBook  # the folder host
    web: ProfileBook  # no folder: reads and writes the store only

    def file(self, subscriber: str) -> Path:
        return self.folder / f"{subscriber}.toml"


@pytest.fixture
def hosts(make_store: StoreMaker, tmp_path: Path) -> Iterator[Hosts]:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    with make_store() as one, make_store() as other:  # the same path: two connections to one database
        yield Hosts(folder, ProfileBook(one, folder), ProfileBook(other, None))


def synced_ada(hosts: Hosts, data: bytes | None = None) -> bytes:
    """ada.toml in the folder, synced to the store by a load on the folder host; returns its bytes."""
    data = data if data is not None else hand_written()
    hosts.file("ada").write_bytes(data)
    loaded = hosts.here.load(NOW)
    assert ids(loaded) == ["ada"] and loaded.errors == ()
    assert hosts.here.store.profile_index()["ada"] == (profile_version(data), profile_version(data))
    return data


# ---- Store.write_profiles and the profile reads ---------------------------------------------------------------

A1, A2, A3 = (hand_written(max_papers=n) for n in (1, 2, 3))
B1 = hand_written("Bob", "bob@example.org")


def test_a_write_applies_only_against_the_version_it_expects(store: Store) -> None:
    assert store.write_profiles([put("ada", A1, expected=ABSENT, email="ada@example.org")], NOW) == []
    assert store.profile_index() == {"ada": (profile_version(A1), None)}
    assert store.write_profiles([put("ada", A2, expected=ABSENT)], NOW) == ["ada"]  # ABSENT: none may exist
    assert store.write_profiles([put("ada", A2, expected=profile_version(A3))], NOW) == ["ada"]
    assert store.write_profiles([ProfileChange("ada", "delete", expected=profile_version(A3))], NOW) == ["ada"]
    assert store.write_profiles([ProfileChange("bob", "delete", expected=profile_version(B1))], NOW) == ["bob"]
    assert stored(store) == {"ada": A1} and store.profile_history("ada") == []

    # Each change of a batch on its own: one refused does not stop the others, but before_commit does not run.
    calls: list[str] = []
    refused = store.write_profiles(
        [put("bob", B1, expected=ABSENT), put("ada", A2, expected=profile_version(A3))],
        NOW,
        before_commit=lambda: calls.append("ran"),
    )
    assert refused == ["ada"] and calls == []
    assert stored(store) == {"ada": A1, "bob": B1}

    current = put("ada", A2, expected=profile_version(A1))
    assert store.write_profiles([current], NOW, before_commit=lambda: calls.append("ran")) == []
    assert calls == ["ran"]
    assert store.write_profiles([put("ada", A3)], NOW) == []  # expected None: whatever is there
    assert stored(store) == {"ada": A3, "bob": B1}
    assert store.write_profiles([ProfileChange("bob", "delete", expected=profile_version(B1))], NOW) == []
    assert store.profile_index() == {"ada": (profile_version(A3), None)}
    assert store.write_profiles([put("bob", B1, expected=ABSENT)], NOW) == []  # gone: ABSENT again


def test_nothing_is_written_when_before_commit_raises(make_store: StoreMaker) -> None:
    with make_store() as store, make_store() as other:
        store.write_profiles([put("ada", A1, email="ada@example.org"), put("bob", B1)], NOW)
        before = (store.profile_index(), stored(store), store.profile_signature(), store.profile_history("ada"))

        def refuse() -> None:
            raise ProfileConflict("ada.toml was changed meanwhile")

        changes = [
            put("ada", A2, expected=profile_version(A1)),
            ProfileChange("bob", "delete", expected=profile_version(B1)),
            put("cy", hand_written("Cy", "cy@example.org"), expected=ABSENT),
        ]
        with pytest.raises(ProfileConflict, match="changed meanwhile"):  # raised as it is
            store.write_profiles(changes, NOW, before_commit=refuse)
        for reading in (store, other):
            after = (reading.profile_index(), stored(reading), reading.profile_signature())
            assert after == before[:3]
            assert reading.profile_history("ada") == [] and reading.profile_history("bob") == []
        assert store.write_profiles(changes, NOW) == []  # the same changes, without the refusal, apply
        assert stored(other) == {"ada": A2, "cy": hand_written("Cy", "cy@example.org")}


def test_replaced_and_removed_versions_go_to_the_history_the_last_keep_of_them(store: Store) -> None:
    versions = [hand_written(max_papers=n) for n in range(1, 7)]
    for n, data in enumerate(versions):
        assert store.write_profiles([put("ada", data, by=f"write {n}")], NOW + timedelta(minutes=n), keep=3) == []
    store.write_profiles([put("ada.2", B1)], NOW)
    store.write_profiles([put("ada.2", A1)], NOW, keep=3)
    # Newest first: (the version replaced, its bytes, when, by the write that replaced it); ada.2's own kept.
    assert store.profile_history("ada") == [
        (profile_version(versions[n]), versions[n], NOW + timedelta(minutes=n + 1), f"write {n + 1}") for n in (4, 3, 2)
    ]
    assert store.profile_history("ada.2") == [(profile_version(B1), B1, NOW, "subscribers folder")]

    store.write_profiles([put("ada", versions[5], by="again")], NOW)  # the same bytes: nothing replaced
    assert len(store.profile_history("ada")) == 3

    later = NOW + timedelta(hours=1)
    assert store.write_profiles([ProfileChange("ada", "delete", by="operator")], later) == []
    assert store.profile_index().keys() == {"ada.2"}
    history = store.profile_history("ada")
    assert history[0] == (profile_version(versions[5]), versions[5], later, "operator")
    assert [entry[1] for entry in history] == [versions[5], versions[4], versions[3], versions[2]]  # keep=20


def test_unique_email_refuses_an_address_another_profile_has(store: Store) -> None:
    assert store.write_profiles([put("ada", A1, email="ada@example.org")], NOW) == []
    claim = put("ada-2", B1, expected=ABSENT, email="ada@example.org", unique_email=True)
    assert store.write_profiles([claim], NOW) == ["ada-2"]
    assert store.profile_index().keys() == {"ada"}
    # Its own address is no clash; and a write without unique_email (a file in the folder) is not refused.
    assert store.write_profiles([put("ada", A2, email="ada@example.org", unique_email=True)], NOW) == []
    assert store.write_profiles([put("twin", B1, email="ada@example.org")], NOW) == []
    assert store.profile_with_email("ada@example.org") == "ada"  # the first by id
    assert store.write_profiles([put("cy", B1, email="cy@example.org", unique_email=True)], NOW) == []
    assert sorted(store.profile_index()) == ["ada", "cy", "twin"]


def test_a_synced_change_records_the_folder_version_only(store: Store) -> None:
    store.write_profiles([put("ada", A1, email="ada@example.org")], NOW)
    signature = store.profile_signature()
    synced = ProfileChange("ada", "synced", expected=profile_version(A1), synced=profile_version(A1))
    assert store.write_profiles([synced], NOW) == []
    assert store.profile_index() == {"ada": (profile_version(A1), profile_version(A1))}
    assert stored(store) == {"ada": A1} and store.profile_history("ada") == []
    assert store.profile_signature() == signature  # the profile did not change
    # Refused for a profile that is not there, or not the version expected.
    assert store.write_profiles([ProfileChange("bob", "synced", synced="x" * 32)], NOW) == ["bob"]
    stale = ProfileChange("ada", "synced", expected=profile_version(A2), synced=profile_version(A2))
    assert store.write_profiles([stale], NOW) == ["ada"]
    assert store.profile_index() == {"ada": (profile_version(A1), profile_version(A1))}
    # A put without `synced` (a host without the folder) keeps what the row says; with it, sets it.
    store.write_profiles([put("ada", A2)], NOW)
    assert store.profile_index()["ada"] == (profile_version(A2), profile_version(A1))
    store.write_profiles([put("ada", A3, synced=profile_version(A3))], NOW)
    assert store.profile_index()["ada"] == (profile_version(A3), profile_version(A3))


def test_the_profile_signature_changes_on_every_insert_update_and_delete(make_store: StoreMaker) -> None:
    with make_store() as store, make_store() as other:
        seen = [store.profile_signature()]
        assert seen[0] == (0, 0, 0)
        steps = [
            [put("ada", A1)],
            [put("bob", B1)],
            [put("ada", A2)],
            [put("bob", B1, by="the same bytes, written again")],
            [ProfileChange("bob", "delete")],
            [ProfileChange("ada", "delete")],
            [put("ada", A1)],  # back to a profile seen before: still a new signature
        ]
        for changes in steps:
            assert store.write_profiles(changes, NOW) == []
            seen.append(store.profile_signature())
            assert other.profile_signature() == seen[-1]  # what another host's daemon sees
        assert len(set(seen)) == len(seen), seen


def test_profiles_are_found_by_address_in_lower_case(store: Store) -> None:
    store.write_profiles(
        [put("bob", B1, email="bob@example.org"), put("ada", A1, email="ada@example.org"), put("bad", b"x = ")], NOW
    )
    assert store.profile_with_email("ADA@Example.ORG") == "ada"
    assert store.profile_with_email("bob@example.org") == "bob"
    assert store.profile_with_email("cy@example.org") is None
    records = store.profile_records(["bob", "nobody", "ada"])
    assert [(r.subscriber, r.data, r.version, r.synced) for r in records] == [
        ("ada", A1, profile_version(A1), None),
        ("bob", B1, profile_version(B1), None),
    ]
    assert store.profile_records([]) == []
    assert [r.subscriber for r in store.profile_records()] == ["ada", "bad", "bob"]


# ---- the sync of a folder with the store ------------------------------------------------------------------------


def test_a_new_file_is_stored_and_an_edited_one_replaces_it(hosts: Hosts) -> None:
    first = synced_ada(hosts)
    store = hosts.here.store
    assert stored(store) == {"ada": first}
    assert store.profile_with_email("ada@example.org") == "ada"  # the file's "Ada@Example.org", in lower case
    assert hosts.here.load(NOW).get("ada").max_papers == 10

    edited = hand_written(max_papers=4)
    hosts.file("ada").write_bytes(edited)
    loaded = hosts.here.load(NOW + timedelta(minutes=5))
    assert loaded.get("ada").max_papers == 4 and loaded.notices == ()
    assert store.profile_index() == {"ada": (profile_version(edited), profile_version(edited))}
    assert store.profile_history("ada") == [
        (profile_version(first), first, NOW + timedelta(minutes=5), "subscribers folder")
    ]
    assert hosts.web.load(NOW).get("ada").max_papers == 4
    assert not (hosts.folder / HISTORY).exists()  # the folder's own edits are not copied to .history


def test_a_removed_file_removes_its_profile(hosts: Hosts) -> None:
    data = synced_ada(hosts)
    hosts.file("bob").write_bytes(B1)
    assert ids(hosts.here.load(NOW)) == ["ada", "bob"]
    hosts.file("ada").unlink()
    assert ids(hosts.here.load(NOW)) == ["bob"]
    assert hosts.here.store.profile_index().keys() == {"bob"}
    assert hosts.here.store.profile_history("ada") == [(profile_version(data), data, NOW, "subscribers folder")]
    assert ids(hosts.web.load(NOW)) == ["bob"]
    assert not hosts.file("ada").exists()  # not written back from the history


def test_a_profile_saved_on_a_host_without_the_folder_is_written_to_the_folder(hosts: Hosts) -> None:
    old = synced_ada(hosts)
    profile, version = hosts.web.read("ada", NOW) or pytest.fail("no profile")
    assert version == profile_version(old)
    changed = profile.model_copy(update={"max_papers": 3})
    new_version = hosts.web.save(changed, expected_version=version, now=NOW)
    assert new_version == profile_version(as_file(changed))
    assert hosts.file("ada").read_bytes() == old  # the web host has no folder to write
    assert hosts.here.store.profile_index()["ada"] == (new_version, profile_version(old))  # not synced yet

    later = NOW + timedelta(minutes=1)
    loaded = hosts.here.load(later)
    assert loaded.get("ada").max_papers == 3 and loaded.notices == ()
    assert hosts.file("ada").read_bytes() == as_file(changed)
    assert kept_files(hosts.folder, "ada") == [old]
    (kept,) = (hosts.folder / HISTORY / "ada").glob("*.toml")
    assert kept.name.startswith(later.strftime("%Y%m%dT%H%M%S"))
    assert hosts.here.store.profile_index()["ada"] == (new_version, new_version)
    assert hosts.here.store.profile_history("ada") == [(profile_version(old), old, NOW, "settings page")]
    # Synced: the next load writes nothing more.
    assert hosts.here.load(later).notices == () and kept_files(hosts.folder, "ada") == [old]


def test_a_sign_up_on_a_host_without_the_folder_becomes_a_file(hosts: Hosts) -> None:
    assert hosts.web.create(reader("cy@example.org", "Cy"), NOW) == ("cy", True)
    assert not hosts.file("cy").exists()
    assert hosts.here.store.profile_index()["cy"][1] is None  # never in a folder
    assert ids(hosts.here.load(NOW)) == ["cy"]
    data = hosts.file("cy").read_bytes()
    assert data == as_file(reader("cy@example.org", "Cy"))
    assert b'email = "cy@example.org"' in data
    assert not (hosts.folder / HISTORY).exists()  # nothing was replaced
    assert hosts.here.store.profile_index()["cy"] == (profile_version(data), profile_version(data))


def test_changed_in_both_places_the_file_wins_and_a_notice_says_so(hosts: Hosts) -> None:
    synced_ada(hosts)
    profile, version = hosts.web.read("ada", NOW) or pytest.fail("no profile")
    from_page = profile.model_copy(update={"max_papers": 3})
    hosts.web.save(from_page, expected_version=version, now=NOW)
    by_hand = hand_written(max_papers=7)
    hosts.file("ada").write_bytes(by_hand)  # meanwhile, before the folder host synced

    loaded = hosts.here.load(NOW)
    assert loaded.get("ada").max_papers == 7
    assert loaded.notices == (
        f"{hosts.folder / 'ada'}.toml: changed both here and in the store (settings page or sign-up) since the last"
        " sync; the file was kept, the other version is in the store's profile history"
        " (`digest profile ada --history`)",
    )
    assert hosts.file("ada").read_bytes() == by_hand
    assert hosts.here.store.profile_index()["ada"] == (profile_version(by_hand), profile_version(by_hand))
    newest = hosts.here.store.profile_history("ada")[0]
    assert newest[:2] == (profile_version(as_file(from_page)), as_file(from_page))
    assert not (hosts.folder / HISTORY).exists()
    assert hosts.web.load(NOW).get("ada").max_papers == 7
    assert hosts.here.load(NOW).notices == ()  # said once


@dataclass(frozen=True)
class Unreadable:
    how: str

    def make(self, path: Path) -> None:
        if self.how == "chmod":
            if os.geteuid() == 0:
                pytest.skip("running as root: chmod 000 does not stop reads")
            path.chmod(0)
        else:  # a directory where the file was: unreadable for root too
            path.unlink()
            path.mkdir()

    def undo(self, path: Path) -> None:
        if self.how == "chmod":
            path.chmod(0o644)
        else:
            path.rmdir()

    @property
    def reason(self) -> str:
        return "Permission denied" if self.how == "chmod" else "Is a directory"


@pytest.mark.parametrize("unreadable", [Unreadable("chmod"), Unreadable("directory")], ids=lambda u: u.how)
def test_a_file_that_cannot_be_read_leaves_its_profile_as_stored(hosts: Hosts, unreadable: Unreadable) -> None:
    data = synced_ada(hosts)
    hosts.file("bob").write_bytes(B1)
    hosts.here.load(NOW)
    index = hosts.here.store.profile_index()
    unreadable.make(hosts.file("ada"))
    try:
        loaded = hosts.here.load(NOW)
        # Told, and the stored version serves meanwhile (as on every host without the folder).
        assert loaded.errors == ()
        assert loaded.notices == (
            f"{hosts.file('ada')}: cannot read ({unreadable.reason}); the version in the store is used",
        )
        assert ids(loaded) == ["ada", "bob"]
        assert hosts.here.store.profile_index() == index
        assert stored(hosts.here.store)["ada"] == data and hosts.here.store.profile_history("ada") == []
    finally:
        unreadable.undo(hosts.file("ada"))
    if unreadable.how == "directory":
        hosts.file("ada").write_bytes(data)
    loaded = hosts.here.load(NOW)
    assert ids(loaded) == ["ada", "bob"] and loaded.errors == () and loaded.notices == ()
    assert hosts.here.store.profile_index() == index


def test_a_case_clash_leaves_the_stored_profile(hosts: Hosts) -> None:
    data = synced_ada(hosts)
    hosts.file("Ada").write_bytes(hand_written("Other Ada", "other@example.org"))
    loaded = hosts.here.load(NOW)
    # The newcomer is the clash: the stored 'ada' keeps its profile, and 'Ada' is never stored.
    assert loaded.errors == (
        f"{hosts.file('Ada')}: subscriber id 'Ada' differs from ada.toml's only in case (their feed files would"
        " collide); rename the file",
    )
    assert ids(loaded) == ["ada"] and "Ada" not in hosts.here.store.profile_index()
    assert stored(hosts.here.store)["ada"] == data
    assert hosts.here.store.profile_index()["ada"] == (profile_version(data), profile_version(data))
    assert hosts.here.store.profile_history("ada") == []
    hosts.file("Ada").unlink()
    loaded = hosts.here.load(NOW)
    assert ids(loaded) == ["ada"] and loaded.errors == ()
    assert stored(hosts.here.store) == {"ada": data}


@pytest.mark.parametrize("held", ["directory", "case clash"])
def test_a_held_profile_loads_alike_on_every_host(hosts: Hosts, held: str) -> None:
    synced_ada(hosts)
    if held == "directory":
        Unreadable("directory").make(hosts.file("ada"))
    else:
        hosts.file("Ada").write_bytes(hand_written("Other Ada", "other@example.org"))
    on_folder_host = hosts.here.load(NOW)
    assert on_folder_host.errors or on_folder_host.notices  # told, and the stored profile still serves
    assert ids(hosts.web.load(NOW)) == ids(on_folder_host) == ["ada"]


BAD_PROFILES = {
    "invalid TOML": b'name = "Bob\nemail = "bob@example.org"\n',
    "a value out of range": b'name = "Bob"\nemail = "bob@example.org"\nmax_papers = 0\n',
    "an unknown key": b'name = "Bob"\nemail = "bob@example.org"\ncolour = "blue"\n',
    "not UTF-8": b'name = "B\xf6b"\nemail = "bob@example.org"\n',
}


@pytest.mark.parametrize("kind", BAD_PROFILES)
def test_an_invalid_profile_is_stored_as_it_is_and_reported_alike_on_every_host(hosts: Hosts, kind: str) -> None:
    bad = BAD_PROFILES[kind]
    synced_ada(hosts)
    hosts.file("bob").write_bytes(bad)
    here = hosts.here.load(NOW)
    assert ids(here) == ["ada"] and len(here.errors) == 1
    error = here.errors[0]
    assert error.startswith(f"{hosts.file('bob')}: ") and "\n" not in error
    assert here.errors == load_subscribers(hosts.folder, NOW).errors  # what the folder alone says
    assert stored(hosts.here.store)["bob"] == bad
    assert hosts.here.store.profile_with_email("bob@example.org") is None  # no address: it does not load

    web = hosts.web.load(NOW)
    assert ids(web) == ["ada"]
    assert web.errors == (error.replace(f"{hosts.folder}/", "", 1),)
    assert web.errors[0].startswith("bob.toml: ")
    with pytest.raises(ConfigError) as raised:
        web.get("bob")
    assert str(raised.value) == web.errors[0]
    with pytest.raises(ConfigError) as raised:
        hosts.web.read("bob", NOW)
    assert str(raised.value) == web.errors[0]


def test_a_load_that_writes_nothing_returns_what_a_sync_would_leave(hosts: Hosts) -> None:
    synced_ada(hosts)
    hosts.file("bob").write_bytes(B1)
    hosts.here.load(NOW)
    assert hosts.web.create(reader("dee@example.org", "Dee"), NOW) == ("dee", True)  # not in the folder yet
    hosts.file("ada").write_bytes(hand_written(max_papers=4))
    hosts.file("bob").unlink()
    hosts.file("cy").write_bytes(hand_written("Cy", "cy@example.org", 2))
    store = hosts.here.store
    before = (store.profile_index(), stored(store), store.profile_signature())

    preview = hosts.here.load(NOW, write=False)
    assert (store.profile_index(), stored(store), store.profile_signature()) == before
    assert not hosts.file("dee").exists() and not (hosts.folder / HISTORY).exists()
    assert ids(preview) == ["ada", "cy", "dee"] and preview.errors == ()
    assert preview.get("ada").max_papers == 4 and preview.get("cy").max_papers == 2

    loaded = hosts.here.load(NOW)
    assert [p.model_dump() for p in loaded.profiles] == [p.model_dump() for p in preview.profiles]
    assert ids(loaded) == ["ada", "cy", "dee"]
    assert sorted(store.profile_index()) == ["ada", "cy", "dee"] and hosts.file("dee").exists()


def test_a_load_while_another_writer_holds_the_store_reads_the_folder_and_writes_nothing(
    make_store: StoreMaker, tmp_path: Path
) -> None:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    with make_store(timeout=0.1) as store, make_store() as holder:
        book = ProfileBook(store, folder)
        (folder / "ada.toml").write_bytes(A1)
        book.load(NOW)
        (folder / "ada.toml").write_bytes(A2)
        (folder / "bob.toml").write_bytes(B1)
        with holder.transaction():  # another host's long write
            loaded = book.load(NOW)
            assert ids(loaded) == ["ada", "bob"] and loaded.errors == ()
            assert loaded.get("ada").max_papers == 2
            profile, version = book.read("bob", NOW) or pytest.fail("no profile")
            assert (profile.name, version) == ("Bob", profile_version(B1))
        assert store.profile_index() == {"ada": (profile_version(A1), profile_version(A1))}
        book.load(NOW)  # the next sync writes what this one could not
        assert stored(holder) == {"ada": A2, "bob": B1}


def test_read_and_create_sync_the_file_first_the_address_lookup_does_not(hosts: Hosts) -> None:
    synced_ada(hosts)
    assert hosts.here.read("nobody", NOW) is None and hosts.web.read("nobody", NOW) is None
    hosts.file("ada").write_bytes(hand_written(max_papers=6))  # not loaded since
    profile, version = hosts.here.read("ada", NOW) or pytest.fail("no profile")
    assert (profile.id, profile.max_papers, version) == ("ada", 6, profile_version(hand_written(max_papers=6)))
    assert hosts.web.read("ada", NOW) == (profile, version)

    hosts.file("cy").write_bytes(hand_written("Cy", "Cy@Example.org"))
    # The address lookup (every sign-up form's POST) reads the store only, so it stays cheap: not synced yet.
    assert hosts.here.subscriber_with_email("CY@example.ORG") is None
    # The confirmation's create syncs first: a hand-made profile's address gets no second profile.
    assert hosts.here.create(reader("cy@example.org", "Cy"), NOW) == ("cy", False)
    assert hosts.web.subscriber_with_email("cy@EXAMPLE.org") == "cy"


# ---- two hosts on one database ----------------------------------------------------------------------------------


def test_sign_up_and_settings_on_the_web_host_reach_the_folder(hosts: Hosts) -> None:
    assert hosts.web.create(reader(), NOW) == ("ada", True)
    assert hosts.web.create(reader("ADA@example.org", "Ada again"), NOW) == ("ada", False)
    assert hosts.web.create(reader("ada@elsewhere.example", "Other Ada"), NOW) == ("ada-2", True)
    assert hosts.web.create(reader("ada@third.example"), NOW, taken=["ADA-3"]) == ("ada-4", True)
    assert sorted(hosts.web.store.profile_index()) == ["ada", "ada-2", "ada-4"]

    loaded = hosts.here.load(NOW)
    # In the order of the file names ("ada-2.toml" before "ada.toml").
    assert ids(loaded) == ["ada-2", "ada-4", "ada"] and loaded.errors == () and loaded.notices == ()
    assert toml_files(hosts.folder) == stored(hosts.here.store)

    profile, version = hosts.web.read("ada", NOW) or pytest.fail("no profile")
    saved = hosts.web.save(profile.model_copy(update={"max_papers": 2}), expected_version=version, now=NOW)
    with pytest.raises(ProfileConflict, match="ada.toml was changed after this page was opened"):
        hosts.web.save(profile.model_copy(update={"max_papers": 9}), expected_version=version, now=NOW)
    assert hosts.web.store.profile_index()["ada"][0] == saved
    assert hosts.here.load(NOW).get("ada").max_papers == 2
    assert profile_version(hosts.file("ada").read_bytes()) == saved
    # The folder host itself signs up and saves in the file and the store at once.
    assert hosts.here.create(reader("ada@fourth.example"), NOW) == ("ada-3", True)
    assert hosts.file("ada-3").read_bytes() == stored(hosts.web.store)["ada-3"]
    assert hosts.here.store.profile_index()["ada-3"][1] == profile_version(hosts.file("ada-3").read_bytes())
    profile, version = hosts.here.read("ada-3", NOW) or pytest.fail("no profile")
    saved = hosts.here.save(profile.model_copy(update={"max_papers": 5}), expected_version=version, now=NOW)
    assert profile_version(hosts.file("ada-3").read_bytes()) == saved
    assert hosts.here.store.profile_index()["ada-3"] == (saved, saved)
    assert kept_files(hosts.folder, "ada-3") == [as_file(reader("ada@fourth.example"))]
    assert hosts.web.load(NOW).get("ada-3").max_papers == 5


def test_a_save_from_the_web_host_is_refused_after_a_hand_edit_synced_meanwhile(hosts: Hosts) -> None:
    synced_ada(hosts)
    profile, version = hosts.web.read("ada", NOW) or pytest.fail("no profile")
    by_hand = hand_written(max_papers=7)
    hosts.file("ada").write_bytes(by_hand)
    hosts.here.load(NOW)  # the folder host syncs the edit
    with pytest.raises(ProfileConflict, match="ada.toml was changed after this page was opened"):
        hosts.web.save(profile.model_copy(update={"max_papers": 3}), expected_version=version, now=NOW)
    assert stored(hosts.web.store)["ada"] == by_hand
    assert hosts.here.load(NOW).get("ada").max_papers == 7 and hosts.file("ada").read_bytes() == by_hand


def test_a_save_on_the_folder_host_is_refused_after_a_hand_edit_not_yet_synced(hosts: Hosts) -> None:
    synced_ada(hosts)
    profile, version = hosts.here.read("ada", NOW) or pytest.fail("no profile")
    by_hand = hand_written(max_papers=7)
    hosts.file("ada").write_bytes(by_hand)
    with pytest.raises(ProfileConflict):
        hosts.here.save(profile.model_copy(update={"max_papers": 3}), expected_version=version, now=NOW)
    assert hosts.file("ada").read_bytes() == by_hand and stored(hosts.here.store)["ada"] == by_hand
    assert not (hosts.folder / HISTORY).exists()


def test_a_hand_edit_landing_mid_save_undoes_the_store_write(hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> None:
    data = synced_ada(hosts)
    profile, version = hosts.here.read("ada", NOW) or pytest.fail("no profile")
    store = hosts.here.store
    write_profiles = store.write_profiles
    by_hand = hand_written(max_papers=7)

    def edit_then_write(*args: object, **kwargs: object) -> list[str]:
        if kwargs.get("before_commit") is not None:  # the save's write, after its sync
            hosts.file("ada").write_bytes(by_hand)
        return write_profiles(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write_profiles", edit_then_write)
    signature = store.profile_signature()
    with pytest.raises(ProfileConflict):
        hosts.here.save(profile.model_copy(update={"max_papers": 3}), expected_version=version, now=NOW)
    assert store.profile_index()["ada"] == (profile_version(data), profile_version(data))
    assert stored(hosts.web.store)["ada"] == data and store.profile_signature() == signature
    assert hosts.file("ada").read_bytes() == by_hand and not (hosts.folder / HISTORY).exists()
    monkeypatch.undo()
    loaded = hosts.here.load(NOW)  # the hand edit is taken as any other
    assert loaded.get("ada").max_papers == 7 and loaded.notices == ()


def test_a_sign_up_racing_another_host_for_the_same_address_gets_its_profile(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = hosts.web.store
    write_profiles = store.write_profiles
    raced: list[tuple[str, bool]] = []

    def other_host_first(*args: object, **kwargs: object) -> list[str]:
        if not raced:  # the folder host signs the same address up between the web host's look and its write
            raced.append(hosts.here.create(reader("ADA@example.org", "Ada"), NOW, taken=["ada"]))
        return write_profiles(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "write_profiles", other_host_first)
    assert hosts.web.create(reader(), NOW) == ("ada-2", False)
    assert raced == [("ada-2", True)]
    assert sorted(store.profile_index()) == ["ada-2"]
    assert toml_files(hosts.folder) == stored(store)


def test_sign_ups_at_once_on_both_hosts_give_one_profile_per_address(make_store: StoreMaker, tmp_path: Path) -> None:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    # Eight sign-ups, two for each of four addresses (in two spellings), one of each pair on either host.
    addresses = [f"{'ADA' if n % 2 else 'ada'}@x{n // 2}.example" for n in range(8)]
    results: list[tuple[str, bool] | None] = [None] * len(addresses)
    failures: list[BaseException] = []
    start = threading.Barrier(len(addresses))

    def sign_up(n: int) -> None:
        try:
            with make_store() as store:  # a connection of its own, opened in its thread
                book = ProfileBook(store, folder if n % 2 == 0 else None)
                start.wait()
                results[n] = book.create(reader(addresses[n]), NOW)
        except BaseException as exc:  # reported below
            failures.append(exc)
            start.abort()

    with make_store() as store:  # the database exists before the threads open it
        threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(len(addresses))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == [] and not any(thread.is_alive() for thread in threads)
        pairs = [(results[n], results[n + 1]) for n in range(0, len(addresses), 2)]
        for one, other in pairs:
            assert one is not None and other is not None
            assert one[0] == other[0] and sorted([one[1], other[1]]) == [False, True]
        made = sorted(one[0] for one, _ in pairs if one is not None)
        assert made == ["ada", "ada-2", "ada-3", "ada-4"]

        assert sorted(store.profile_index()) == made
        for n in range(0, len(addresses), 2):
            assert store.profile_with_email(addresses[n]) == (results[n] or ("", False))[0]
        loaded = ProfileBook(store, folder).load(NOW)
        assert sorted(ids(loaded)) == made and loaded.errors == () and loaded.notices == ()
        assert sorted(p.email.lower() for p in loaded.profiles) == sorted({a.lower() for a in addresses})
        assert toml_files(folder) == stored(store)


def test_the_signature_changes_when_a_file_is_touched_or_another_host_writes(hosts: Hosts) -> None:
    synced_ada(hosts)
    path = hosts.file("ada")
    first = hosts.here.signature()
    assert first[0] == (("ada.toml", path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns),)
    assert first[1] == hosts.web.signature()[1] and hosts.web.signature()[0] == ()

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    touched = hosts.here.signature()
    assert touched != first and touched[1] == first[1]

    mtime = path.stat().st_mtime_ns
    write_atomically(path, path.read_bytes())  # replaced, same size; then the same time stamp
    os.utime(path, ns=(mtime, mtime))
    replaced = hosts.here.signature()
    assert replaced != touched and replaced[0][0][1] != touched[0][0][1]
    assert hosts.here.signature() == replaced  # nothing changed: the same

    web_before = hosts.web.signature()
    profile, version = hosts.web.read("ada", NOW) or pytest.fail("no profile")
    hosts.web.save(profile.model_copy(update={"max_papers": 3}), expected_version=version, now=NOW)
    after_save = hosts.here.signature()
    assert after_save[1] != replaced[1] and after_save[0] == replaced[0]  # only the store changed
    assert hosts.web.signature() != web_before

    web_before = hosts.web.signature()
    hosts.file("bob").write_bytes(B1)
    hosts.here.load(NOW)  # stores bob.toml, writes the web's save to ada.toml
    assert hosts.web.signature() != web_before
    assert [entry[0] for entry in hosts.here.signature()[0]] == ["ada.toml", "bob.toml"]


# ---- ProfileBook.of -----------------------------------------------------------------------------------------------


def with_url(config: Config) -> Config:
    return config.model_copy(update={"database": Database(url="postgresql://digest@db.example:5432/digest")})


def test_of_uses_the_folder_and_stores_what_it_holds(config: Config, store: Store) -> None:
    book = ProfileBook.of(config, store)
    assert book.folder == config.paths.subscribers
    loaded = book.load(NOW)
    from_files = load_subscribers(config.paths.subscribers, NOW)
    assert ids(loaded) == ids(from_files) != [] and loaded.errors == from_files.errors
    assert [p.model_dump() for p in loaded.profiles] == [p.model_dump() for p in from_files.profiles]
    assert stored(store) == toml_files(config.paths.subscribers)
    assert ProfileBook.of(with_url(config), store).folder == config.paths.subscribers  # a url does not hide it


def test_of_without_a_database_url_needs_the_folder(config: Config, store: Store) -> None:
    folder = config.paths.subscribers
    shutil.rmtree(folder)
    with pytest.raises(ConfigError) as raised:
        ProfileBook.of(config, store)
    assert str(raised.value) == f"{folder}: subscribers folder not found; create it or set [paths] subscribers"
    assert not folder.exists()

    book = ProfileBook.of(with_url(config), store, create_folder=True)  # with a url: the store alone, no folder made
    assert book.folder is None and not folder.exists()
    assert book.label("ada") == "ada.toml"

    book = ProfileBook.of(config, store, create_folder=True)  # one host (the web app): the folder is made
    assert book.folder == folder and folder.is_dir()
    assert book.label("ada") == str(folder / "ada.toml")
    assert book.load(NOW).profiles == ()


# ---- what a careless deployment does to the folder (the review of this change) ------------------------------------


def test_another_folder_is_not_read_until_it_is_adopted(hosts: Hosts, tmp_path: Path) -> None:
    """On a shared database, a stale copy of the folder on another host must not undo newer changes or remove
    readers. A SQLite file has one host: a folder without the marker is that host's own, re-created (from version
    control, which keeps the marker out) or restored, and is taken again."""
    synced_ada(hosts)
    hosts.file("bob").write_bytes(B1)
    hosts.here.load(NOW)
    copy = tmp_path / "stale-copy"
    copy.mkdir()
    (copy / "ada.toml").write_bytes(hand_written(max_papers=99))  # an older or other version; no bob.toml
    stale = ProfileBook(hosts.web.store, copy)
    before = hosts.here.store.profile_index()
    if hosts.here.store.engine == "sqlite":
        (copy / "bob.toml").write_bytes(B1)
        taken = stale.load(NOW)
        assert taken.get("ada").max_papers == 99 and ids(taken) == ["ada", "bob"] and taken.notices == ()
        assert (copy / ".digest-folder").read_text(encoding="utf-8") == (hosts.folder / ".digest-folder").read_text(
            encoding="utf-8"
        )
        return
    loaded = stale.load(NOW)
    assert ids(loaded) == ["ada", "bob"] and loaded.get("ada").max_papers == 10  # the store's, not the copy's
    assert len(loaded.notices) == 1 and "not the subscribers folder this store is synced with" in loaded.notices[0]
    assert hosts.here.store.profile_index() == before and toml_files(copy) == {"ada": hand_written(max_papers=99)}
    # The operator moves the deployment's folder here: the copy's files win, and the old folder is no longer read.
    stale.adopt_folder()
    adopted = stale.load(NOW)
    assert adopted.get("ada").max_papers == 99 and adopted.notices != ()  # bob's file is missing here: removed
    assert "bob" not in ids(adopted)
    assert "not the subscribers folder" in hosts.here.load(NOW).notices[0]


def test_the_owning_folder_keeps_syncing_after_a_restart(hosts: Hosts) -> None:
    synced_ada(hosts)
    marker = hosts.folder / ".digest-folder"
    assert marker.exists() and marker.read_text(encoding="utf-8").splitlines()[-1] == hosts.here.store.secret(
        "profiles-folder"
    )
    again = ProfileBook(hosts.web.store, hosts.folder)  # another process on the same host and folder
    hosts.file("ada").write_bytes(A2)
    assert again.load(NOW).get("ada").max_papers == 2 and stored(hosts.here.store)["ada"] == A2


def test_most_files_gone_at_once_removes_nothing_until_told(hosts: Hosts) -> None:
    for n in range(6):
        hosts.file(f"r{n}").write_bytes(hand_written(f"R{n}", f"r{n}@example.org"))
    hosts.here.load(NOW)
    for n in range(5):  # an unmounted or half-copied folder looks like this
        hosts.file(f"r{n}").unlink()
    held = hosts.here.load(NOW)
    assert len(ids(held)) == 6 and sorted(stored(hosts.here.store)) == [f"r{n}" for n in range(6)]
    assert held.notices == (
        f"{hosts.folder}: 5 of the 6 profiles synced from it have no file there now; none was removed (an unmounted,"
        " emptied or half-copied folder?). If they were removed on purpose, run `digest subscribers --remove-missing`",
    )
    removed = hosts.here.load(NOW, allow_removals=True)
    assert ids(removed) == ["r5"] and len(removed.notices) == 5
    assert removed.notices[0].endswith(
        "r0.toml was removed: subscriber 'r0' removed (its last version is kept: `digest profile r0 --history`)"
    )
    assert [v.replaced_by for v in hosts.here.store.profile_history("r0")] == ["subscribers folder"]


def test_a_file_back_a_moment_later_is_not_removed(hosts: Hosts) -> None:
    """A `git pull` or an editor's save leaves a moment without the file: a second look finds it."""
    data = synced_ada(hosts)
    hosts.file("ada").unlink()
    timer = threading.Timer(0.02, lambda: hosts.file("ada").write_bytes(data))
    timer.start()
    try:
        loaded = hosts.here.load(NOW)
    finally:
        timer.join()
    assert ids(loaded) == ["ada"] and stored(hosts.here.store) == {"ada": data}
    assert hosts.here.store.profile_history("ada") == []


def test_a_folder_that_cannot_be_listed_removes_nothing(hosts: Hosts, monkeypatch: pytest.MonkeyPatch) -> None:
    import digest.subscribers as subscribers

    data = synced_ada(hosts)

    def refused(path: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(subscribers.os, "scandir", refused)
    loaded = hosts.here.load(NOW)
    assert ids(loaded) == ["ada"] and stored(hosts.here.store) == {"ada": data}
    assert loaded.notices == (
        f"{hosts.folder}: cannot list the folder (Permission denied); the profiles in the store are used",
    )


def test_a_sign_up_that_took_the_id_of_a_file_not_yet_synced_keeps_it(hosts: Hosts) -> None:
    synced_ada(hosts)  # the folder is the store's
    assert hosts.web.create(reader("grace@example.org", "Grace"), NOW) == ("grace", True)
    hosts.file("grace").write_bytes(hand_written("Other Grace", "grace.other@example.org"))  # before any sync
    loaded = hosts.here.load(NOW)
    assert loaded.get("grace").name == "Grace"  # the reader who signed up keeps their profile (and token)
    assert loaded.errors == (
        f"{hosts.file('grace')}: the id 'grace' was given to a sign-up meanwhile; rename this file (the profile"
        " stored under that id is another reader's: `digest profile grace`)",
    )
    assert hosts.file("grace").read_bytes() == hand_written("Other Grace", "grace.other@example.org")


def test_a_save_landing_while_a_profile_is_written_to_the_folder_is_not_undone(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_ada(hosts)
    page = reader(max_papers=2).model_copy(update={"id": "ada"})
    hosts.web.save(page, expected_version=profile_version(hand_written()), now=NOW)  # the folder host exports it
    export = ProfileBook._export
    raced: list[bool] = []

    def export_then_the_reader_saves_again(self: ProfileBook, *args: object) -> bool:
        done = export(self, *args)  # type: ignore[arg-type]
        if not raced:
            raced.append(True)
            current = hosts.web.read("ada", NOW)
            assert current is not None
            hosts.web.save(current[0].model_copy(update={"max_papers": 3}), expected_version=current[1], now=NOW)
        return done

    monkeypatch.setattr(ProfileBook, "_export", export_then_the_reader_saves_again)
    hosts.here.load(NOW)
    monkeypatch.undo()
    assert hosts.here.load(NOW).get("ada").max_papers == 3  # the second save reaches the folder, not undone
    assert b"max_papers = 3" in hosts.file("ada").read_bytes()


def test_restore_works_when_the_current_profile_does_not_load(hosts: Hosts) -> None:
    good = synced_ada(hosts)
    hosts.file("ada").write_bytes(b'name = "Ada"\nemail = "not an address"\n')
    assert hosts.here.load(NOW).errors != ()
    hosts.here.restore("ada", profile_version(good)[:8], NOW)
    assert hosts.file("ada").read_bytes() == good and hosts.here.load(NOW).errors == ()


def test_the_daemon_loads_again_after_a_sync_the_store_could_not_take(tmp_path: Path) -> None:
    """A sync the store could not take (busy, full) is not remembered as done: the next check loads again."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from test_web_faults import write_lock

    from digest.schedule import Daemon

    folder = tmp_path / "subscribers"
    folder.mkdir()
    (folder / "ada.toml").write_bytes(hand_written())
    database = tmp_path / "digest.db"
    Store(database).close()
    synced: list[bool] = []

    def load() -> SubscriberSet:
        with Store(database, timeout=0.1) as store:
            loaded = ProfileBook(store, folder).load(NOW)
        synced.append(loaded.synced)
        return loaded

    def signature() -> object:
        with Store(database) as store:
            return ProfileBook(store, folder).signature()

    daemon = Daemon(
        profiles_signature=signature,
        load_profiles=load,
        ingest=lambda: None,
        send=lambda names, stop: None,
        ingest_every=3600,
        misfire_grace_time=3600,
    )
    daemon.scheduler = BackgroundScheduler()
    with write_lock(database):
        daemon.sync_jobs()
    assert synced == [False] and [job.id for job in daemon.scheduler.get_jobs()] == ["send:ada"]  # from the folder
    with Store(database) as store:
        assert store.profile_index() == {}
    daemon.sync_jobs()  # nothing changed in the folder, but the last sync was not written: it loads again
    assert synced == [False, True]
    with Store(database) as store:
        assert list(store.profile_index()) == ["ada"]
