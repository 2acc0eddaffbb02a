"""What finding a reader by their token or settings key costs a web request, by the number of readers.

    python benchmarks/token_lookup.py [--readers 1000 10000 100000] [--repeat 200]

For each size, a SQLite store with that many issued tokens; the median time of one lookup (a feed, unsubscribe or
rating link's token; a settings page's key) through the index (digest.web.app.subscriber_for_token), and by
comparing every token (what it did before, and still does while the index cannot be brought up to date).
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digest.store import Store  # noqa: E402
from digest.store.records import credential_hash  # noqa: E402
from digest.tokens import secret_fingerprint, settings_key  # noqa: E402
from digest.web.app import _compare_all, subscriber_for_settings_key, subscriber_for_token  # noqa: E402

SECRET = b"s" * 32


def key(token: str) -> str:
    return settings_key(SECRET, token)


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(store: Store, wanted: str, repeat: int, slow_repeat: int) -> tuple[float, float, float, float]:
    return (
        median_ms(lambda: subscriber_for_token(store, wanted), repeat),
        median_ms(lambda: subscriber_for_settings_key(store, key(wanted), SECRET), repeat),
        median_ms(lambda: _compare_all(store, wanted.encode(), None), slow_repeat),
        median_ms(lambda: _compare_all(store, key(wanted).encode(), key), slow_repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(
        f"{'readers':>8}  {'token (index)':>14}  {'settings key (index)':>21}  {'token (every one)':>18}"
        f"  {'settings key (every one)':>25}"
    )
    for readers in args.readers:
        with tempfile.TemporaryDirectory(prefix="digest-tokens-") as scratch:
            database = Path(scratch) / "d.db"
            Store(database).close()
            tokens = [secrets.token_urlsafe(24) for _ in range(readers)]
            with sqlite3.connect(database) as raw:
                raw.executemany(
                    "INSERT INTO subscriber_state (subscriber, token, token_hash) VALUES (?, ?, ?)",
                    [(f"reader{n}", token, credential_hash(token)) for n, token in enumerate(tokens)],
                )
            wanted = tokens[readers // 2]
            with Store(database) as store:
                started = time.perf_counter()
                assert subscriber_for_settings_key(store, key(wanted), SECRET) == f"reader{readers // 2}"
                first = (time.perf_counter() - started) * 1000  # makes every settings-key hash, once
                assert store.fill_settings_hashes(key, secret_fingerprint(SECRET)) == 0
                assert subscriber_for_token(store, wanted) == f"reader{readers // 2}"
                figures = measure(store, wanted, args.repeat, max(3, args.repeat // max(1, readers // 1000)))
        print(
            f"{readers:>8}  {figures[0]:>11.3f} ms  {figures[1]:>18.3f} ms  {figures[2]:>15.1f} ms"
            f"  {figures[3]:>22.1f} ms   (the first settings key made every hash: {first:.0f} ms, once)"
        )


if __name__ == "__main__":
    main()
