"""Scale: the whole send pipeline for many subscribers on one machine, stage by stage.

    python benchmarks/scale.py --subscribers 10000 --papers 500 [--json] [--smtp] [--runs 3] [--workers N]
                               [--first-send] [--database postgresql://user@host:port/db [--password-env NAME]
                               | --postgres-temp] [--senders K]
    python benchmarks/scale.py --table          # N = 1k, 5k, 10k x M = 100, 500, 2,000: is the cost linear?

In a temporary folder: a store with M new papers (first seen yesterday) and a few hundred older ones (what
subscribers have liked), and N synthetic subscribers drawn from one random.Random(seed): keywords taken from
real titles, liked papers, some exclude terms, some Markdown readers. Papers come from
../shared/eval/papers.jsonl when it is present (read here, never copied), topped up with synthetic papers from a
seeded vocabulary when it has too few. Then the real `digest.service.send(config, selection="all")` runs for
everyone: model, candidates, ranking, explanations, rendering (HTML + text), the MIME message, the send ledger,
delivery into a Maildir (or, with --smtp, to an aiosmtpd server in its own process, over one connection).

Stages are timed by wrapping the pipeline's own functions (exclusive times: a stage does not count the stages it
calls); "other" is the rest (per-subscriber state checks, the loop). With composing workers (the default: one per
core; --workers 0 keeps everything in this process), rendering and composing happen in other processes and show
as "waiting for workers": the time the sender waited for a finished message. Peak memory is ru_maxrss of this process.
The baseline is the per-subscriber approach, timed in the same run on --baseline-sample subscribers: refit a
TF-IDF on the candidates and the subscriber's own texts, train one LinearSVC(C=0.01, class_weight="balanced")
(liked papers and keywords against the candidates), rank the candidates.

PostgreSQL: --database names a server (and a database to connect to there, with the password in the environment
variable --password-env names, default DIGEST_DB_PASSWORD); each run creates a database of its own on it
(CREATE DATABASE: the role needs CREATEDB), writes `[database] url` and `password_env` into the config, and drops
it at the end. --postgres-temp starts a throwaway local server instead (tests/postgres_server.py, with
PostgreSQL's durable defaults: every commit flushed). --senders K runs K `digest send --all --json` processes on
the same workspace and database (the subscribers written as profile files), as tests/test_senders.py does, and
reports the wall time from starting them to the last one's exit (process start and model loading included) and
each sender's share of the messages; stages are not timed then (they happen in the senders).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

import digest.model_cache  # noqa: E402
from digest import service, trace  # noqa: E402
from digest.config import load_config  # noqa: E402
from digest.mail.composer import auto_workers  # noqa: E402
from digest.mail.transport import make_transport  # noqa: E402
from digest.paper import Paper, make_paper  # noqa: E402
from digest.plan import resolve_liked  # noqa: E402
from digest.store import Store, open_store  # noqa: E402
from digest.subscribers import Profile, SubscriberSet  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "papers.jsonl"
HISTORY = 400  # older papers: what subscribers have liked
STAGES = (
    "model",
    "candidates",
    "ranking",
    "explanations",
    "rendering",
    "composing",
    "waiting for workers",
    "ledger+delivery",
    "other",
)
GRID_N = (1000, 5000, 10000)
GRID_M = (100, 500, 2000)
PASSWORD_ENV = "DIGEST_DB_PASSWORD"


# ---- data ----------------------------------------------------------------------------------------------------


def synthetic_papers(count: int, rng: random.Random) -> list[dict[str, str]]:
    """Papers from a seeded vocabulary: 40 topics of 40 made-up words, plus common words."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "gra", "pel", "dor", "qui", "zen", "bal", "tor"]
    vocab = np.random.default_rng(0)

    def word() -> str:
        return "".join(syllables[int(i)] for i in vocab.integers(0, len(syllables), int(vocab.integers(2, 4))))

    topics = [[word() for _ in range(40)] for _ in range(40)]
    common = [word() for _ in range(200)]
    papers = []
    for _ in range(count):
        topic = rng.choice(topics)
        title = " ".join(rng.sample(topic, 6) + rng.sample(common, 2)).capitalize()
        sentences = []
        for _ in range(rng.randint(4, 8)):
            words = rng.sample(topic, 7) + rng.sample(common, 6) + rng.sample(rng.choice(topics), 2)
            rng.shuffle(words)
            sentences.append(" ".join(words).capitalize() + ".")
        papers.append({"title": title, "abstract": " ".join(sentences)})
    return papers


def paper_texts(needed: int, rng: random.Random) -> tuple[list[dict[str, str]], str]:
    records: list[dict[str, str]] = []
    if EVAL.exists():
        with EVAL.open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        rng.shuffle(records)
    source = f"{EVAL.name} ({min(len(records), needed)}) + synthetic ({max(needed - len(records), 0)})"
    if len(records) < needed:
        records += synthetic_papers(needed - len(records), rng)
    return records[:needed], source


def fill_store(store: Store, papers: int, now: datetime, rng: random.Random) -> tuple[list[Paper], list[Paper], str]:
    records, source = paper_texts(papers + HISTORY, rng)
    made = [make_paper(title=r["title"], abstract=r["abstract"]) for r in records]
    store.add_papers(made[papers:], "bench-history", now - timedelta(days=30))
    store.add_papers(made[:papers], "bench-new", now - timedelta(days=1))
    history = store.papers_since(now - timedelta(days=31), now - timedelta(days=29))
    new = store.papers_since(now - timedelta(days=2), now)
    return history, new, source


def make_profiles(count: int, history: list[Paper], rng: random.Random) -> list[Profile]:
    """Mixed readers: keywords only, liked papers only, or both; some exclude terms; some read Markdown."""
    phrases = []
    for paper in history:
        words = [w.strip(".,:;()").lower() for w in paper.title.split() if len(w) > 4]
        phrases += words[:3] + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)][:2]
    phrases = sorted(set(p for p in phrases if p))
    profiles = []
    for n in range(count):
        kind = n % 10
        interests: dict[str, list[str]] = {}
        if kind < 7:
            interests["keywords"] = rng.sample(phrases, rng.randint(1, 4))
        if kind >= 4:
            interests["papers"] = [p.id or "" for p in rng.sample(history, rng.randint(1, 3))]
        if n % 7 == 0:
            interests["exclude"] = rng.sample(phrases, 1)
        data = {
            "name": f"Reader {n}",
            "email": f"reader{n}@example.org",
            "format": "markdown" if n % 10 == 9 else "html",
            "diversity": 0.0 if n % 5 == 0 else 0.3,
            "interests": interests,
        }
        profiles.append(Profile.model_validate(data).model_copy(update={"id": f"reader{n:05d}"}))
    return profiles


# ---- timing the real pipeline ------------------------------------------------------------------------------


class Timers:
    """Exclusive time per stage (a stage's time minus the stages inside it), as the tracer of digest.trace: the
    production code names its stages, nothing here patches it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._stack.append(0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            inner = self._stack.pop()
            self.seconds[stage] += elapsed - inner
            self.calls[stage] += 1
            if self._stack:
                self._stack[-1] += elapsed

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """For the benchmark's own transport wrapper."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self(stage):
                return function(*args, **kwargs)

        return timed


def write_config(
    folder: Path, smtp_port: int | None, workers: int | None = None, database: tuple[str, str] | None = None
) -> Path:
    """database: (url, password_env) for PostgreSQL; None: the SQLite file var/digest.db."""
    method = (
        f'method = "smtp"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n' if smtp_port else 'method = "maildir"\n'
    )
    path = folder / "config.toml"
    path.write_text(
        '[paths]\ninbox = "inbox"\nsubscribers = "subscribers"\ntemplates = "templates"\n'
        'database = "var/digest.db"\nfeeds = "var/feeds"\n'
        '[web]\nbase_url = "https://digest.example.org"\n'
        '[delivery]\nmaildir = "var/maildir"\n'
        + (f"compose_workers = {workers}\n" if workers is not None else "")
        + method
        + (f'\n[database]\nurl = "{database[0]}"\npassword_env = "{database[1]}"\n' if database else ""),
        encoding="utf-8",
    )
    (folder / "subscribers").mkdir()
    return path


# ---- PostgreSQL ----------------------------------------------------------------------------------------------


@contextmanager
def postgres_temp() -> Iterator[tuple[str, str]]:
    """A throwaway local PostgreSQL server (the tests' starter, durable settings): (url, password_env)."""
    sys.path.insert(0, str(REPO / "tests"))
    from postgres_server import PostgresServer, why_unavailable

    reason = why_unavailable()
    if reason:
        raise SystemExit(f"--postgres-temp: {reason}")
    server = PostgresServer(durable=True)
    try:
        server.start()
        os.environ[PASSWORD_ENV] = server.password  # the senders inherit it
        yield server.url("postgres"), PASSWORD_ENV
    finally:
        server.stop()


@contextmanager
def scratch_database(url: str, password_env: str) -> Iterator[str]:
    """A new, empty database on the server of `url` for one run (dropped afterwards): its URL."""
    import psycopg

    password = os.environ.get(password_env)
    name = f"digest_scale_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(url, password=password, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")  # type: ignore[call-overload]
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, password=password, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[call-overload]


def write_profiles(folder: Path, profiles: list[Profile]) -> None:
    """The synthetic subscribers as profile files, for sender processes (JSON strings and lists are TOML too)."""
    for profile in profiles:
        interests = profile.interests
        lines = [
            f"name = {json.dumps(profile.name)}",
            f"email = {json.dumps(profile.email)}",
            f"format = {json.dumps(profile.format)}",
            f"diversity = {profile.diversity}",
            "[interests]",
        ]
        for key in ("keywords", "papers", "exclude"):
            if getattr(interests, key):
                lines.append(f"{key} = {json.dumps(list(getattr(interests, key)))}")
        (folder / f"{profile.id}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextmanager
def smtp_server() -> Iterator[int]:
    """aiosmtpd's Sink in its own process, so that the server does not share our interpreter (and GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("aiosmtpd did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---- the per-subscriber baseline ---------------------------------------------------------------------------


def baseline_seconds(store: Store, profiles: list[Profile], candidates: list[Paper], sample: int) -> float | None:
    """Mean seconds per subscriber of the per-subscriber approach: refit TF-IDF, train one SVM, rank."""
    if sample <= 0:
        return None
    texts = [f"{p.title}. {p.abstract}" for p in candidates]
    times = []
    for profile in random.Random(1).sample(profiles, min(sample, len(profiles))):
        liked = resolve_liked(store, profile.interests.papers)
        start = time.perf_counter()
        positives = [f"{p.title}. {p.abstract}" for p in liked]
        if profile.interests.keywords:
            positives.append(" ".join(profile.interests.keywords))
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float32)
        matrix = vectorizer.fit_transform([*positives, *texts])
        labels = np.r_[np.ones(len(positives)), np.zeros(len(texts))]
        svm = LinearSVC(C=0.01, class_weight="balanced", max_iter=10_000)
        svm.fit(matrix, labels)
        scores = svm.decision_function(matrix[len(positives) :])
        np.argsort(-scores)[: profile.max_papers]
        times.append(time.perf_counter() - start)
    return statistics.fmean(times)


# ---- one run -----------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux; the children (the SMTP server) are not the pipeline, so not counted.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    subscribers: int,
    papers: int,
    *,
    smtp: bool,
    seed: int,
    baseline_sample: int,
    workers: int | None = None,
    first_send: bool = False,
    database: tuple[str, str] | None = None,
    senders: int = 0,
) -> dict[str, Any]:
    """database: (url, password_env) of a PostgreSQL server (a database of this run's own is made there);
    senders > 0: that many `digest send --all` processes instead of service.send in this process."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="digest-scale-") as folder, ExitStack() as stack:
        now = datetime.now(UTC)
        if database:
            database = (stack.enter_context(scratch_database(*database)), database[1])
        with smtp_server() if smtp else _no_server() as port:
            config_path = write_config(Path(folder), port, workers, database)
            config = load_config(config_path)
            with open_store(config) as store:
                history, new, source = fill_store(store, papers, now, rng)
                # What `digest ingest` does after storing papers (not timed: the send is measured): the model is
                # fitted and saved, and with sentence embeddings on, every new paper's vector is stored.
                digest.model_cache.refresh_model(store, config.rank.policy())
            profiles = make_profiles(subscribers, history, rng)
            if not first_send:
                # Yesterday's send embedded these readers' keywords and kept them (a daily send only embeds the
                # keywords of readers who changed their profile); then the send runs as a new process would.
                with open_store(config) as store:
                    model = digest.model_cache.planning_model(store, config.rank.policy(), save=True)
                    if model.vectors is not None:
                        model.vectors.queries(sorted({k for p in profiles for k in p.interests.keywords}))
            digest.model_cache.forget_loaded_models()
            if senders:
                write_profiles(config.paths.subscribers, profiles)
                return run_senders(config_path, config, senders, subscribers, papers, source, smtp)
            timers = Timers()
            sends: list[float] = []

            def transport_factory(cfg: Any) -> Any:
                transport = make_transport(cfg)
                original = transport.send

                def send(message: Any, recipient: str, handing_over: Any = None) -> None:
                    start = time.perf_counter()
                    try:
                        original(message, recipient, handing_over)
                    finally:
                        sends.append(time.perf_counter() - start)

                transport.send = timers.wrap("ledger+delivery", send)
                return transport

            with trace.tracing(timers):
                start = time.perf_counter()
                report = service.send(
                    config,
                    selection="all",
                    subscribers=SubscriberSet(tuple(profiles), ()),
                    clock=lambda: datetime.now(UTC),
                    transport_factory=transport_factory,
                )
                seconds = time.perf_counter() - start
            if report.failed or report.stuck:
                raise RuntimeError(f"failed: {report.failed[:3]}, stuck: {report.stuck[:3]}")
            delivered = len(list((config.delivery.maildir / "new").iterdir())) if not smtp else len(sends)
            with open_store(config) as store:
                baseline = baseline_seconds(store, profiles, new, baseline_sample)
    stages = {name: round(timers.seconds.get(name, 0.0), 3) for name in STAGES}
    stages["candidates"] = round(stages["candidates"], 3)
    stages["other"] = round(seconds - sum(v for k, v in stages.items() if k != "other"), 3)
    ranking_per_subscriber = timers.seconds["ranking"] / subscribers
    result: dict[str, Any] = {
        "subscribers": subscribers,
        "papers": papers,
        "paper_source": source,
        "delivery": "smtp" if smtp else "maildir",
        "compose_workers": config.delivery.compose_workers
        if config.delivery.compose_workers is not None
        else auto_workers(),
        "sent": len(report.sent),
        "skipped": len(report.skipped),
        "delivered": delivered,
        "seconds": round(seconds, 3),
        "emails_per_second": round(len(report.sent) / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stages": stages,
        "transport_messages_per_second": round(len(sends) / sum(sends), 1) if sends else None,
        "ranking_seconds_per_subscriber": ranking_per_subscriber,
        "baseline_seconds_per_subscriber": baseline,
        "ranking_speedup_vs_baseline": round(baseline / ranking_per_subscriber, 1) if baseline else None,
    }
    if database:
        result["database"] = "postgresql"
    return result


def run_senders(
    config_path: Path, config: Any, senders: int, subscribers: int, papers: int, source: str, smtp: bool
) -> dict[str, Any]:
    """K `digest send --all --json` processes on one workspace and database, started together; each one's share."""
    command = [sys.executable, "-m", "digest", "--config", str(config_path), "send", "--all", "--json"]
    commits_before = committed_transactions(config)
    start = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(senders)
    ]
    reports, ended = [], []
    for process in processes:
        out, err = process.communicate()
        ended.append(time.perf_counter() - start)
        if process.returncode != 0 or not out.strip():
            raise RuntimeError(f"a sender failed ({process.returncode}): {err[-3000:]}")
        reports.append(json.loads(out))
    seconds = time.perf_counter() - start
    time.sleep(1.5)  # PostgreSQL's statistics are flushed about every second
    commits_after = committed_transactions(config)
    failed = [item for r in reports for item in r["failed"]]
    stuck = [item for r in reports for item in r["stuck"]]
    if failed or stuck:
        raise RuntimeError(f"failed: {failed[:3]}, stuck: {stuck[:3]}")
    sent = [str(item["subscriber"]) for r in reports for item in r["sent"]]
    recipients: list[str] = []
    if not smtp:
        for message in (config.delivery.maildir / "new").iterdir():
            for line in message.open(encoding="utf-8", errors="replace"):
                if line.lower().startswith("to:"):
                    recipients.append(line.split(":", 1)[1].strip())
                    break
    shares = [len(r["sent"]) for r in reports]
    # Subscribers each sender settled (sent, or skipped with nothing to send): these sum to N.
    settled = [len({str(item["subscriber"]) for key in ("sent", "skipped") for item in r[key]}) for r in reports]
    return {
        "subscribers": subscribers,
        "papers": papers,
        "paper_source": source,
        "database": "postgresql" if config.database.url else "sqlite",
        "delivery": "smtp" if smtp else "maildir",
        "compose_workers": config.delivery.compose_workers
        if config.delivery.compose_workers is not None
        else auto_workers(),
        "senders": senders,
        "sent": len(sent),
        "sent_once": len(set(sent)) == len(sent),
        "skipped": len({str(item["subscriber"]) for r in reports for item in r["skipped"]} - set(sent)),
        "delivered": len(recipients) if not smtp else None,
        "recipients_once": len(set(recipients)) == len(recipients) if not smtp else None,
        "shares": shares,
        "settled": settled,
        "sender_seconds": [round(t, 3) for t in ended],
        "seconds": round(seconds, 3),
        "emails_per_second": round(len(sent) / seconds, 1),
        "commits_per_message": round((commits_after[0] - commits_before[0]) / len(sent), 2)
        if commits_before is not None and commits_after is not None and sent
        else None,
        "wal_syncs_per_message": round((commits_after[1] - commits_before[1]) / len(sent), 2)
        if commits_before is not None and commits_after is not None and sent
        else None,
    }


def committed_transactions(config: Any) -> tuple[int, int] | None:
    """PostgreSQL: transactions committed in this run's database so far (reads included), and the server's WAL
    flushes to disk (pg_stat_wal.wal_sync: one per durable write commit, fewer when commits are grouped); SQLite:
    None."""
    if not config.database.url:
        return None
    import psycopg

    password = os.environ.get(config.database.password_env or "")
    with psycopg.connect(config.database.url, password=password) as db:
        row = db.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        wal = db.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return (int(row[0]) if row else 0), (int(wal[0]) if wal else 0)


def print_senders(result: dict[str, Any]) -> None:
    print(
        f"{result['subscribers']} subscribers x {result['papers']} new papers ({result['paper_source']}), "
        f"database: {result['database']}, delivery: {result['delivery']}, {result['senders']} senders "
        f"(`digest send --all` processes), composing workers per sender: {result['compose_workers']}"
    )
    print(f"{'sender':<8}{'messages':>10}{'share':>8}{'subscribers':>13}{'exited after s':>16}")
    rows = zip(result["shares"], result["settled"], result["sender_seconds"], strict=True)
    for number, (share, settled, ended) in enumerate(rows, 1):
        print(f"{number:<8}{share:>10}{share / max(result['sent'], 1):>8.0%}{settled:>13}{ended:>16.2f}")
    total = f"{'total':<8}{result['sent']:>10}{'':>8}{sum(result['settled']):>13}{result['seconds']:>16.2f}"
    print(f"{total}   {result['emails_per_second']:,.0f} emails/s")
    print(
        f"sent {result['sent']} (each subscriber once: {result['sent_once']}), skipped {result['skipped']}, "
        f"delivered {result['delivered']} (each recipient once: {result['recipients_once']})"
    )
    if result["commits_per_message"] is not None:
        print(
            f"PostgreSQL per message: {result['commits_per_message']} transactions committed (reads included), "
            f"{result['wal_syncs_per_message']} WAL flushes to disk"
        )


@contextmanager
def _no_server() -> Iterator[None]:
    yield None


def print_run(result: dict[str, Any]) -> None:
    n, seconds = result["subscribers"], result["seconds"]
    print(
        f"{n} subscribers x {result['papers']} new papers ({result['paper_source']}), "
        + (f"database: {result['database']}, " if "database" in result else "")
        + f"delivery: {result['delivery']}, "
        f"composing workers: {result['compose_workers']}"
    )
    print(f"{'stage':<22}{'seconds':>9}{'emails/s':>11}{'share':>8}")
    for name, value in result["stages"].items():
        rate = f"{n / value:,.0f}" if value > 0 else "-"
        print(f"{name:<22}{value:>9.2f}{rate:>11}{value / seconds:>8.0%}")
    print(f"{'total':<22}{seconds:>9.2f}{result['emails_per_second']:>11,.0f}")
    print(
        f"sent {result['sent']}, skipped {result['skipped']}, delivered {result['delivered']}; "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    if result["transport_messages_per_second"]:
        print(f"transport alone: {result['transport_messages_per_second']:,.0f} messages/s")
    if result["baseline_seconds_per_subscriber"]:
        print(
            f"ranking: {result['ranking_seconds_per_subscriber'] * 1e3:.3f} ms/subscriber; per-subscriber "
            f"TF-IDF + LinearSVC: {result['baseline_seconds_per_subscriber'] * 1e3:.1f} ms/subscriber "
            f"({result['ranking_speedup_vs_baseline']:,.0f}x)"
        )


def table(seed: int) -> None:
    """Every (N, M) of the grid in its own process (a clean peak RSS), then the per-unit costs side by side."""
    rows = []
    for papers in GRID_M:
        for subscribers in GRID_N:
            command = [
                sys.executable,
                __file__,
                "--subscribers",
                str(subscribers),
                "--papers",
                str(papers),
                "--seed",
                str(seed),
                "--baseline-sample",
                "0",
                "--json",
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout))
            r = rows[-1]
            print(f"  N={subscribers:>6} M={papers:>5}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    print("Cost per email should stay flat along N; ranking per email should grow about linearly with M.")
    print(
        f"{'N':>7}{'M':>6}{'total s':>9}{'ms/email':>10}{'ranking s':>11}{'rank µs/email/paper':>21}"
        f"{'deliver s':>11}{'emails/s':>10}{'peak MB':>9}"
    )
    for r in rows:
        n, m, stages = r["subscribers"], r["papers"], r["stages"]
        rank_seconds = stages["ranking"] + stages["explanations"] + stages["candidates"]
        print(
            f"{n:>7}{m:>6}{r['seconds']:>9.1f}{r['seconds'] / n * 1e3:>10.2f}{rank_seconds:>11.2f}"
            f"{rank_seconds / n / m * 1e6:>21.3f}{stages['ledger+delivery']:>11.1f}{r['emails_per_second']:>10,.0f}"
            f"{r['peak_rss_mb']:>9.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--smtp", action="store_true", help="deliver to a local aiosmtpd server instead of a Maildir")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report the median run (by total seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=None, help="[delivery] compose_workers (default: one per core; 0: none)"
    )
    parser.add_argument("--baseline-sample", type=int, default=20, help="subscribers timed with the SVM baseline")
    parser.add_argument(
        "--first-send",
        action="store_true",
        help="with sentence embeddings: no keyword embedded yet (default: a daily send, yesterday's keywords kept)",
    )
    parser.add_argument("--table", action="store_true", help="the N x M grid (about 5 minutes)")
    parser.add_argument(
        "--database", help="postgresql://user@host:port/db: a server to run on (each run in a new database there)"
    )
    parser.add_argument(
        "--password-env", default=PASSWORD_ENV, help=f"the variable holding --database's password ({PASSWORD_ENV})"
    )
    parser.add_argument(
        "--postgres-temp", action="store_true", help="run on a throwaway local PostgreSQL server (durable settings)"
    )
    parser.add_argument(
        "--senders", type=int, default=0, help="K `digest send --all` processes (default 0: service.send in this one)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.table:
        table(args.seed)
        return
    with ExitStack() as stack:
        database: tuple[str, str] | None = None
        if args.postgres_temp:
            database = stack.enter_context(postgres_temp())
        elif args.database:
            database = (args.database, args.password_env)
        results = [
            run(
                args.subscribers,
                args.papers,
                smtp=args.smtp,
                seed=args.seed,
                baseline_sample=args.baseline_sample,
                workers=args.workers,
                first_send=args.first_send,
                database=database,
                senders=args.senders,
            )
            for _ in range(args.runs)
        ]
    result = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
    if args.runs > 1:
        result["seconds_runs"] = [r["seconds"] for r in results]
    if args.json:
        print(json.dumps(result))
    elif args.senders:
        print_senders(result)
        if args.runs > 1:
            print(f"median of {args.runs} runs: {result['seconds_runs']}")
    else:
        print_run(result)
        if args.runs > 1:
            print(f"median of {args.runs} runs: {result['seconds_runs']}")


if __name__ == "__main__":
    main()
