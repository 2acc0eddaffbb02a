"""Building workspaces for the delivery tests: a config pointing at a test SMTP server, N subscribers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from digest.config import Config, load_config
from digest.service import ingest
from digest.store import Store

REPO = Path(__file__).resolve().parent.parent
DEMO_INBOX = REPO / "digest" / "demo_data" / "inbox"
INGESTED_AT = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
KEYWORD_SETS = [
    ["graph neural networks", "message passing"],
    ["diffusion models", "image generation"],
    ["network pruning", "sparsity"],
]


def write_config(
    root: Path,
    *,
    port: int = 25,
    security: str = "none",
    extra_smtp: str = "",
    method: str = "smtp",
    welcome_digest: bool = False,
) -> Path:
    (root / "subscribers").mkdir(exist_ok=True)
    (root / "inbox").mkdir(exist_ok=True)
    config = root / "config.toml"
    config.write_text(
        f"""
[paths]
inbox = "inbox"
subscribers = "subscribers"
templates = "templates"
database = "var/digest.db"
feeds = "var/feeds"

[smtp]
host = "127.0.0.1"
port = {port}
security = "{security}"
from = "Paper Digest <digest@lab.example>"
timeout = 10
retries = 3
retry_backoff = 0.05
{extra_smtp}

[delivery]
method = "{method}"
maildir = "var/maildir"

[schedule]
welcome_digest = {str(welcome_digest).lower()}
""",
        encoding="utf-8",
    )
    return config


def write_subscribers(root: Path, count: int, *, schedule: str = "0 7 * * *") -> list[str]:
    ids = []
    for number in range(count):
        sub = f"reader{number:03d}"
        keywords = ", ".join(f'"{k}"' for k in KEYWORD_SETS[number % len(KEYWORD_SETS)])
        (root / "subscribers" / f"{sub}.toml").write_text(
            f'name = "Reader {number}"\nemail = "{sub}@example.org"\nschedule = "{schedule}"\n'
            f"min_score = 0.01\nmax_papers = 5\n[interests]\nkeywords = [{keywords}]\n",
            encoding="utf-8",
        )
        ids.append(sub)
    return ids


def ingest_demo(config: Config, at: datetime = INGESTED_AT, source: Path = DEMO_INBOX) -> None:
    with Store(config.paths.database) as store:
        report = ingest(store, config, [str(source)], clock=lambda: at)
        assert not report.rejected, report.rejected


def workspace(
    root: Path, subscribers: int, *, at: datetime = INGESTED_AT, **kwargs: object
) -> tuple[Config, list[str]]:
    """Config, subscribers and the demo papers ingested `at` (by default three hours before conftest.NOW, the
    suite's DIGEST_NOW)."""
    path = write_config(root, **kwargs)  # type: ignore[arg-type]
    ids = write_subscribers(root, subscribers)
    config = load_config(path)
    ingest_demo(config, at)
    return config, ids
