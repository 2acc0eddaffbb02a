"""Messages per second to a local aiosmtpd server over one reused SMTP connection.

    python benchmarks/smtp.py [--messages 500] [--runs 3] [--kb 30] [--json]

Starts a real SMTP server on 127.0.0.1 (aiosmtpd, in a thread of this process), sends realistic multipart
digests (text + HTML of about --kb KB) through digest.mail.smtp.SmtpTransport in their wire form, as
`digest send` hands them over, and prints the median rate over several runs.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller  # noqa: E402

from digest.config import Smtp  # noqa: E402
from digest.links import Links  # noqa: E402
from digest.mail.message import RenderedEmail, compose_message, message_bytes, new_message_id  # noqa: E402
from digest.mail.smtp import SmtpTransport  # noqa: E402


class CountingHandler:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_messages(count: int, kilobytes: int) -> list[bytes]:
    paragraph = (
        "<tr><td><a href='https://arxiv.org/abs/2611.00001'>A paper title</a><p>" + "teaser " * 60 + "</p></td></tr>"
    )
    html = "<html><body><table>" + paragraph * max(1, kilobytes * 1024 // len(paragraph)) + "</table></body></html>"
    text = "A paper title\n" + "teaser " * 400
    now = datetime.now(UTC)
    messages = []
    for i in range(count):
        message = compose_message(
            RenderedEmail(f"Your papers #{i}", text, html),
            to_name=f"Reader {i}",
            to_email=f"reader{i}@example.org",
            sender="Paper Digest <digest@bench.example>",
            message_id=new_message_id("digest@bench.example"),
            list_id="paper-digest",
            now=now,
            links=Links(),
        )
        messages.append(message_bytes(message))
    return messages


def one_run(messages: list[bytes]) -> float:
    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = SmtpTransport(Smtp(host="127.0.0.1", port=port, timeout=30))
        start = time.perf_counter()
        for i, message in enumerate(messages):
            transport.send(message, f"reader{i}@example.org")
        transport.close()
        elapsed = time.perf_counter() - start
    finally:
        controller.stop()
    assert handler.count == len(messages), (handler.count, len(messages))
    return len(messages) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kb", type=int, default=30, help="approximate HTML size of each message")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    messages = make_messages(args.messages, args.kb)
    size = statistics.median(len(m) for m in messages[:20])
    rates = [one_run(messages) for _ in range(args.runs)]
    result = {
        "messages": args.messages,
        "runs": args.runs,
        "message_bytes": size,
        "messages_per_second_median": round(statistics.median(rates), 1),
        "messages_per_second_runs": [round(r, 1) for r in rates],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.messages} messages of ~{size / 1024:.0f} KB over one SMTP connection, {args.runs} runs")
        print(f"median {result['messages_per_second_median']} messages/s (runs: {result['messages_per_second_runs']})")


if __name__ == "__main__":
    main()
