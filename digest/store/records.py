"""What the store hands back: plain records, and the one time format it keeps (ISO-8601 in UTC, which sorts as
text)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from digest.paper import Paper

Outcome = Literal["new", "updated", "duplicate"]
MessageState = Literal["sending", "sent", "failed"]


def utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times given to the store must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class StoredFile:
    content_hash: str
    source: str
    entries: int
    ingested_at: str


@dataclass(frozen=True)
class PickRecord:
    paper_id: str
    score: float
    why: str


@dataclass(frozen=True)
class Message:
    id: int
    subscriber: str
    message_id: str
    channel: str
    state: MessageState
    subject: str
    candidates_until: str
    created_at: str
    finished_at: str | None
    error: str | None
    papers: tuple[PickRecord, ...]
    candidates_until_seq: int | None = None
    handed_over_at: str | None = None


@dataclass(frozen=True)
class SubscriberState:
    subscriber: str
    paused: bool
    paused_at: str | None
    token: str | None


@dataclass(frozen=True)
class ArxivMatch:
    """The arXiv paper whose title is exactly a stored paper's (digest.enrich), as cleaned by make_paper: what an
    arXiv lookup adds to a paper that came without a link (a daily-papers digest gives only title and abstract)."""

    arxiv_id: str
    version: int | None = None
    title: str = ""
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    published: str | None = None
    doi: str | None = None

    @property
    def abs_url(self) -> str:
        # Built from the id, never taken from the answer: a server's URL could point anywhere.
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def pdf_url(self) -> str:
        return f"https://arxiv.org/pdf/{self.arxiv_id}"

    def as_json(self) -> str:
        return json.dumps(
            {
                "arxiv_id": self.arxiv_id,
                "version": self.version,
                "title": self.title,
                "authors": list(self.authors),
                "categories": list(self.categories),
                "published": self.published,
                "doi": self.doi,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ArxivMatch:
        data = json.loads(text)
        return cls(
            arxiv_id=str(data["arxiv_id"]),
            version=data.get("version"),
            title=data.get("title") or "",
            authors=tuple(data.get("authors") or ()),
            categories=tuple(data.get("categories") or ()),
            published=data.get("published"),
            doi=data.get("doi"),
        )

    def fill(self, paper: Paper) -> Paper:
        """`paper` as arXiv knows it: its own text kept (the reader saw that title), the facts it lacked added
        (arXiv id and version, abstract page, PDF link, authors, categories, date, DOI). Merged into the stored
        record by the store's one merge policy (digest.store.merge), like any other source of the same paper."""
        return replace(
            paper,
            arxiv_id=self.arxiv_id,
            arxiv_version=self.version,
            url=self.abs_url,
            links=tuple(dict.fromkeys((*paper.links, self.pdf_url))),
            authors=self.authors,
            categories=self.categories,
            published=self.published,
            doi=self.doi,
        )


@dataclass(frozen=True)
class Signup:
    """A sign-up request (digest.web.signup): who asked for which profile, and whether the link was used."""

    code_hash: str | None  # SHA-256 of the confirmation code; None for a notice to an address already subscribed
    email: str  # the address, casefolded
    profile: str  # the requested profile as JSON ("{}" once confirmed)
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None = None
    subscriber: str | None = None  # the profile its confirmation created or found


@dataclass(frozen=True)
class SignupLimits:
    """At most `per_email` sign-ups for one address within `email_window`, `per_client` from one client within
    `client_window`, `per_network` from one client network (IPv4 /24, IPv6 /48) and `total` from everyone within
    `client_window`. Each one sends an email: a flood from many addresses must not turn the server into a mailer,
    and one network must not use up everyone's share."""

    per_email: int
    email_window: timedelta
    per_client: int
    client_window: timedelta
    total: int | None = None
    per_network: int | None = None
    # Rows are kept this long after they expire: a late click still gets "expired" (not "unknown"), and a used
    # link still finds its profile; then they are purged.
    keep_unconfirmed: timedelta = timedelta(days=1)
    keep_confirmed: timedelta = timedelta(days=30)


ABSENT = "absent"  # the version of a profile that does not exist (no row, no file)


def credential_hash(credential: str) -> str:
    """What the store keeps to find a token or a settings key by: its SHA-256 (a hash of a 192-bit random value
    tells nobody anything about the value)."""
    return hashlib.sha256(credential.encode("utf-8", "replace")).hexdigest()


def profile_version(data: bytes | None) -> str:
    """A profile's version: a hash of its bytes, the same whether they are in a file or in the store."""
    return ABSENT if data is None else hashlib.sha256(data).hexdigest()[:32]


@dataclass(frozen=True)
class ProfileRecord:
    """A subscriber's profile as the store holds it: the profile file's bytes, and their version."""

    subscriber: str
    data: bytes
    version: str
    synced: str | None  # the subscribers folder's version at the last sync; None: never in a folder


@dataclass(frozen=True)
class ProfileChange:
    """One write to the profiles in the store (Store.write_profiles).

    "put" stores `data`; "delete" removes the profile (its last version kept in the history); "synced" only
    records that the folder's file is now `synced`. `expected`: the version the stored profile must have for the
    change to apply (ABSENT: none may exist), None for any. `unique_email`: refused when another profile has
    `email`. `synced` of a put: the folder's version after it, or None to keep what the row says (a write from
    a host without the folder)."""

    subscriber: str
    kind: Literal["put", "delete", "synced"]
    expected: str | None = None
    data: bytes = b""
    email: str | None = None
    synced: str | None = None
    by: str = "subscribers folder"
    unique_email: bool = False

    @property
    def version(self) -> str:
        return profile_version(self.data)


class ProfileVersion(NamedTuple):
    """A version of a profile that a write replaced or removed (Store.profile_history)."""

    version: str
    data: bytes
    replaced_at: datetime
    replaced_by: str  # what replaced it: "subscribers folder", "settings page", "sign-up", "restore"
