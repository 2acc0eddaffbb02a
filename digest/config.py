"""config.toml: validated once at load into typed objects, then passed explicitly."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from digest.errors import ConfigError
from digest.validation import format_validation_error, read_toml

if TYPE_CHECKING:
    from digest.model_cache import ModelPolicy

DEFAULT_CONFIG = "config.toml"
CONFIG_ENV = "DIGEST_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Paths(_Section):
    inbox: Path = Path("inbox")
    subscribers: Path = Path("subscribers")
    templates: Path = Path("templates")
    database: Path = Path("var/digest.db")
    feeds: Path = Path("var/feeds")


class Sources(_Section):
    urls: list[str] = Field(default_factory=list)
    timeout: float = Field(default=20.0, gt=0, description="seconds per URL fetch")

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^https?://", url):
                raise ValueError(f"must be http(s) URLs (got {url!r})")
        return urls


class Ingest(_Section):
    max_file_mb: float = Field(default=20.0, gt=0)


class Smtp(_Section):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str | None = None
    sender: str = Field(default="paper-digest <digest@localhost>", alias="from")
    timeout: float = Field(default=30.0, gt=0)
    max_per_minute: int = Field(default=0, ge=0, description="0 = no limit")
    # SMTP connections kept open at once: a relay taking 20-50 ms per message bounds a send on one connection.
    connections: int = Field(default=1, ge=1, le=32)
    retries: int = Field(default=3, ge=0)
    retry_backoff: float = Field(default=2.0, ge=0)
    verify: bool = Field(default=True, description="verify the server's TLS certificate")
    ca_file: Path | None = Field(default=None, description="extra CA bundle (e.g. a private mail server)")

    def password(self) -> str | None:
        """The secret is read from the environment at use time and never stored in config objects."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"[smtp] password_env names ${self.password_env}, which is not set; export it first")
        return value


class Database(_Section):
    """Where the store lives: without `url`, the SQLite file of [paths] database; with it, a PostgreSQL database
    (psycopg needed: pip install 'paper-digest[postgres]')."""

    url: str | None = Field(default=None, description='"postgresql://user@host:5432/dbname", never with a password')
    password_env: str | None = Field(default=None, description="the environment variable holding the password")
    # Several senders (digest.claims): how long a sender's claim on a subscriber lasts unless it renews it (it does,
    # every third of this, while it works): after a sender dies, its subscribers wait this long for another.
    lease_seconds: float = Field(default=60.0, ge=1)
    # Subscribers a sender claims at a time: smaller shares the work more evenly, larger plans more at once.
    claim_batch: int = Field(default=100, ge=1, le=10_000)

    @field_validator("url")
    @classmethod
    def _postgresql(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from digest.store.engine import POSTGRES_SCHEMES, redact_url  # here: no database code at config load

        try:
            parts = urlsplit(value)
            password = parts.password
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError:
            raise ValueError("must be a URL like postgresql://user@host:5432/dbname (got something else)") from None
        if parts.scheme not in POSTGRES_SCHEMES or not parts.path.strip("/"):
            raise ValueError(f"must be a URL like postgresql://user@host:5432/dbname (got {redact_url(value)!r})")
        if password is not None:
            raise ValueError(
                "must not hold a password: put it in an environment variable and name that in [database] "
                f"password_env (got {redact_url(value)!r})"
            )
        return value

    def password(self) -> str | None:
        """Read from the environment at use time, never stored in config objects."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"[database] password_env names ${self.password_env}, which is not set; export it first")
        return value


class Delivery(_Section):
    method: Literal["smtp", "maildir"] = "maildir"
    maildir: Path = Path("var/maildir")
    maildir_fsync: bool = False  # fsync each message before it counts as sent (slower; see MaildirTransport)
    list_id: str = "paper-digest"
    # Processes that render and compose messages in a big send; unset: one per core, 0: all in the sender.
    compose_workers: int | None = Field(default=None, ge=0, le=64)


def parse_duration(value: str | int | float) -> float:
    """ "90s", "15m", "2h", "1d" or a number of seconds."""
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    if not match:
        raise ValueError(f"must be a duration like '30m', '2h' or seconds (got {value!r})")
    number, unit = float(match.group(1)), match.group(2) or "s"
    seconds = number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if seconds <= 0:
        raise ValueError("must be positive")
    return seconds


class Schedule(_Section):
    ingest_every: float = 3600.0
    misfire_grace_time: float = 6 * 3600.0
    feeds_recent_digests: int = Field(default=10, ge=1)
    # A new subscriber's first digest comes at their first scheduled slot; true: a welcome digest right away.
    welcome_digest: bool = False

    @field_validator("ingest_every", "misfire_grace_time", mode="before")
    @classmethod
    def _duration(cls, value: str | int | float) -> float:
        return parse_duration(value)


class Web(_Section):
    base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Sign-up with double opt-in at /subscribe (digest.web.signup); off: /subscribe and /confirm are a 404.
    signup: bool = False
    signup_expiry: float = Field(default=48 * 3600.0, description="how long a confirmation link works")
    signup_per_address: int = Field(default=3, ge=1, description="sign-ups per email address per day")
    signup_per_ip: int = Field(default=10, ge=1, description="sign-ups per client IP per hour")
    signup_per_network: int = Field(
        default=30, ge=1, description="sign-ups per hour from one client network (IPv4 /24, IPv6 /48)"
    )
    signup_per_hour: int = Field(default=200, ge=1, description="sign-ups per hour from all clients together")
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (reverse proxies, load balancers): addresses or
    # networks. The client of a request through them is the last address they did not add.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value.strip() == "*":
                raise ValueError(
                    "must list the proxies' addresses, not '*': trusting every peer lets any client pick the IP"
                    " the sign-up limits count"
                )
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f'{value!r} is not an IP address or network; write e.g. "10.0.0.5" or "10.0.0.0/24"'
                ) from None
        # uvicorn reads a network strictly ("10.0.0.5/24" would be no network at all): give it the network itself.
        cleaned = (value.strip() for value in values)
        return tuple(str(ipaddress.ip_network(v, strict=False)) if "/" in v else v for v in cleaned)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http(s) URL (got {value!r})")
        return value.rstrip("/") if value else value

    @field_validator("signup_expiry", mode="before")
    @classmethod
    def _duration(cls, value: str | int | float) -> float:
        return parse_duration(value)

    @field_validator("signup")
    @classmethod
    def _signup_needs_base_url(cls, value: bool, info: ValidationInfo) -> bool:
        # The confirmation email links to the public address: a request's Host header is not to be trusted for it.
        if value and not info.data.get("base_url"):
            raise ValueError(
                "needs base_url: the confirmation email links to it; set [web] base_url, or signup = false (got true)"
            )
        return value


class Enrich(_Section):
    """Filling in what a source left out (a daily-papers digest gives only titles and abstracts)."""

    arxiv: bool = Field(default=True, description="look up papers without a link on the arXiv API, by title")
    api_url: str = Field(default="https://export.arxiv.org/api/query", description="the arXiv API's query endpoint")
    min_interval: float = Field(default=3.0, ge=0, description="seconds between two requests (arXiv asks for 3)")
    batch: int = Field(default=10, ge=1, le=50, description="titles asked in one request")
    timeout: float = Field(default=20.0, gt=0, description="seconds per request")
    max_lookups: int = Field(default=500, ge=0, description="titles looked up per ingest at most; the rest next time")
    # A title not on arXiv is asked again `retry_after` later while its paper is younger than `retry_within` (a
    # paper may reach arXiv after the digest that listed it); older, the answer is final.
    retry_after: float = Field(default=7 * 86400.0, description="when a title not found is asked again")
    retry_within: float = Field(default=30 * 86400.0, description="how long after a paper is first seen it is")

    @field_validator("retry_after", "retry_within", mode="before")
    @classmethod
    def _duration(cls, value: str | int | float) -> float:
        return parse_duration(value)

    @field_validator("api_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"must be an http(s) URL (got {value!r})")
        return value


class Rank(_Section):
    """How big the ranking model may grow, and when it is refitted (see digest.model_cache)."""

    model_papers: int = Field(default=20_000, ge=100, description="the model is fitted on this many recent papers")
    refit_after: int = Field(default=5_000, ge=1, description="new papers after which an ingest refits it")
    min_df: int = Field(default=3, ge=1, description="a term must occur in this many papers (from 5,000 papers)")
    max_features: int = Field(default=400_000, ge=1000, description="the full-text vocabulary's size limit")
    embeddings: Literal["auto", "on", "off"] = Field(
        default="auto",
        description='sentence embeddings: "auto" (when installed), "on" (required), "off"; DIGEST_EMBEDDINGS overrides',
    )
    embedding_model: Path | None = Field(default=None, description="an ONNX encoder to use instead of the packaged one")
    embedding_tokenizer: Path | None = Field(default=None, description="the tokenizer.json of embedding_model")

    def policy(self) -> ModelPolicy:
        from digest.model_cache import ModelPolicy  # here: loading the config must not load scikit-learn
        from digest.rank.embeddings import MODE_ENV, EmbeddingSettings
        from digest.rank.model import FitSettings

        fit = FitSettings(papers=self.model_papers, min_df=self.min_df, max_features=self.max_features)
        override = os.environ.get(MODE_ENV, "").strip().lower()
        if override and override not in ("auto", "on", "off"):
            raise ConfigError(f'{MODE_ENV}={override!r}: must be "auto", "on" or "off"')
        embeddings = EmbeddingSettings(self.embeddings, self.embedding_model, self.embedding_tokenizer)
        return ModelPolicy(fit, refit_after=self.refit_after, embeddings=embeddings)


class Config(_Section):
    paths: Paths = Field(default_factory=Paths)
    sources: Sources = Field(default_factory=Sources)
    ingest: Ingest = Field(default_factory=Ingest)
    smtp: Smtp = Field(default_factory=Smtp)
    database: Database = Field(default_factory=Database)
    delivery: Delivery = Field(default_factory=Delivery)
    schedule: Schedule = Field(default_factory=Schedule)
    web: Web = Field(default_factory=Web)
    rank: Rank = Field(default_factory=Rank)
    enrich: Enrich = Field(default_factory=Enrich)
    source_file: Path | None = Field(default=None, exclude=True)


def _resolve(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """Command-line option > $DIGEST_CONFIG > ./config.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(DEFAULT_CONFIG)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate config.toml; relative paths resolve against the file's folder."""
    path = Path(path)
    data = read_toml(path)
    internal = sorted(name for name, f in Config.model_fields.items() if f.exclude and name in data)
    if internal:  # set by load_config itself, never by the file
        allowed = ", ".join(sorted(name for name, f in Config.model_fields.items() if not f.exclude))
        raise ConfigError(
            f"{path}: {internal[0]} is not a known key (allowed: {allowed}); remove it or fix its spelling"
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), Config, exc)) from None
    base = path.resolve().parent
    paths = config.paths
    resolved = Paths(
        inbox=_resolve(base, paths.inbox),
        subscribers=_resolve(base, paths.subscribers),
        templates=_resolve(base, paths.templates),
        database=_resolve(base, paths.database),
        feeds=_resolve(base, paths.feeds),
    )
    delivery = config.delivery.model_copy(update={"maildir": _resolve(base, config.delivery.maildir)})
    smtp = config.smtp
    if smtp.ca_file is not None:
        smtp = smtp.model_copy(update={"ca_file": _resolve(base, smtp.ca_file)})
    rank = config.rank.model_copy(
        update={
            key: _resolve(base, value)
            for key in ("embedding_model", "embedding_tokenizer")
            if (value := getattr(config.rank, key)) is not None
        }
    )
    return config.model_copy(
        update={"paths": resolved, "delivery": delivery, "smtp": smtp, "rank": rank, "source_file": path.resolve()}
    )


def default_config(base: Path) -> Config:
    """The configuration with every default, rooted at `base` (used by tests and the demo)."""
    config = Config()
    p = config.paths
    resolved = Paths(**{name: _resolve(base, getattr(p, name)) for name in Paths.model_fields})
    delivery = config.delivery.model_copy(update={"maildir": _resolve(base, config.delivery.maildir)})
    return config.model_copy(update={"paths": resolved, "delivery": delivery, "source_file": base / DEFAULT_CONFIG})
