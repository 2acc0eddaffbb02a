"""What loading the subscribers' profiles costs now that they live in the store (digest.profile_book).

    python benchmarks/profiles.py [--profiles 10000] [--repeat 5] [--postgres-temp]

For N profile files in a folder, the median of --repeat runs of:
- files only: digest.subscribers.load_subscribers (how every command loaded them before the store kept them);
- first sync: an empty store takes all N (once per deployment);
- steady: a load when nothing changed (every later command and daemon cycle);
- 10 edited: a load after 10 files changed;
- no folder: a load on a host without the folder (a sender or web host on PostgreSQL).
With --postgres-temp, on a throwaway local PostgreSQL server (tests/postgres_server.py) as well as SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.profile_book import ProfileBook  # noqa: E402
from digest.store import PostgresEngine, SQLiteEngine, Store  # noqa: E402
from digest.subscribers import load_subscribers  # noqa: E402

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TOPICS = ["graph neural networks", "diffusion models", "protein folding", "speech", "robotics", "compilers"]


def write_profiles(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        topic = TOPICS[n % len(TOPICS)]
        (folder / f"reader{n:05d}.toml").write_text(
            f'name = "Reader {n}"\nemail = "reader{n:05d}@example.org"\nschedule = "0 {n % 24} * * mon-fri"\n'
            f'timezone = "Europe/London"\nmax_papers = {5 + n % 10}\n\n[interests]\nkeywords = ["{topic}"]\n'
            f'exclude = ["survey"]\n',
            encoding="utf-8",
        )


def timed(book: ProfileBook) -> float:
    started = time.perf_counter()
    book.load(NOW)
    return time.perf_counter() - started


@contextmanager
def engines(postgres: bool) -> Iterator[list[tuple[str, Callable[[Path], Store]]]]:
    made: list[tuple[str, Callable[[Path], Store]]] = [("sqlite", lambda path: Store(path, engine=SQLiteEngine(path)))]
    if not postgres:
        yield made
        return
    sys.path.insert(0, str(REPO / "tests"))
    from postgres_server import PostgresServer, why_unavailable

    reason = why_unavailable()
    if reason:
        raise SystemExit(f"--postgres-temp: {reason}")
    server = PostgresServer(durable=True)
    server.start()
    databases: dict[Path, str] = {}

    def open_postgres(path: Path) -> Store:
        if path not in databases:
            databases[path] = server.new_database()
        return Store(path, engine=PostgresEngine(server.url(databases[path]), server.password))

    try:
        yield [*made, ("postgresql", open_postgres)]
    finally:
        server.stop()


def run(count: int, repeat: int, open_store: Callable[[Path], Store], root: Path) -> dict[str, list[float]]:
    folder = root / "subscribers"
    write_profiles(folder, count)
    stages = ("files only", "first sync", "steady", "10 edited", "no folder")
    figures: dict[str, list[float]] = {stage: [] for stage in stages}
    for trial in range(repeat):
        started = time.perf_counter()
        load_subscribers(folder, NOW)
        figures["files only"].append(time.perf_counter() - started)
        with open_store(root / f"trial{trial}.db") as store:
            book = ProfileBook(store, folder)
            figures["first sync"].append(timed(book))
            figures["steady"].append(timed(book))
            for n in range(10):
                path = folder / f"reader{(trial * 10 + n) * 7 % count:05d}.toml"
                path.write_text(path.read_text(encoding="utf-8") + f"# edit {trial}\n", encoding="utf-8")
            figures["10 edited"].append(timed(book))
            loaded = ProfileBook(store, None).load(NOW)
            assert len(loaded.profiles) == count and not loaded.errors
            figures["no folder"].append(timed(ProfileBook(store, None)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-temp", action="store_true", help="also on a throwaway local PostgreSQL server")
    args = parser.parse_args()
    with engines(args.postgres_temp) as chosen:
        for name, open_store in chosen:
            with tempfile.TemporaryDirectory(prefix="digest-profiles-") as scratch:
                figures = run(args.profiles, args.repeat, open_store, Path(scratch))
            base = statistics.median(figures["files only"])
            print(f"{name}: {args.profiles} profiles, median of {args.repeat}")
            for stage, values in figures.items():
                median = statistics.median(values)
                print(f"  {stage:<11} {median * 1000:8.0f} ms   {median / base:5.2f}x files only")


if __name__ == "__main__":
    main()
