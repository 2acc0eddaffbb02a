"""A send through a slow relay, with 1, 2, 4 and 8 SMTP connections (`[smtp] connections`).

    python benchmarks/connections.py [--subscribers 200] [--delay-ms 30] [--runs 3] [--connections 1 2 4 8]

Builds a workspace in a temporary folder (the built-in demo papers, N subscribers), starts a real SMTP server on
127.0.0.1 (aiosmtpd, tests/smtp_server.py) that takes --delay-ms to accept each message, as a relay or an email
service often does, and times the real `digest.service.send(selection="all")` for each number of connections:
the median of --runs runs, each on a fresh store. Prints messages per second and the speed-up over one connection.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from delivery_helpers import INGESTED_AT, workspace  # noqa: E402
from smtp_server import Behaviour, SmtpServer  # noqa: E402

from digest.service import send  # noqa: E402


def one_run(subscribers: int, delay: float, connections: int) -> float:
    with tempfile.TemporaryDirectory() as folder, SmtpServer(Behaviour(delay=delay)) as server:
        config, _ = workspace(Path(folder), subscribers, port=server.port, extra_smtp=f"connections = {connections}")
        started = time.perf_counter()
        report = send(config, selection="all", clock=lambda: INGESTED_AT + timedelta(hours=2))
        seconds = time.perf_counter() - started
        if len(report.sent) != subscribers:
            raise SystemExit(f"sent {len(report.sent)} of {subscribers}: {report.summary()}")
        server.wait_for(subscribers)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    print(f"{args.subscribers} messages, a relay taking {args.delay_ms:g} ms each, median of {args.runs} run(s)")
    baseline = None
    for connections in args.connections:
        times = [one_run(args.subscribers, args.delay_ms / 1000, connections) for _ in range(args.runs)]
        median = statistics.median(times)
        baseline = baseline or median
        print(
            f"  {connections} connection(s): {median:6.2f} s = {args.subscribers / median:6.1f} messages/s "
            f"({baseline / median:4.2f}x)   runs: {' / '.join(f'{t:.2f}' for t in times)}"
        )


if __name__ == "__main__":
    main()
