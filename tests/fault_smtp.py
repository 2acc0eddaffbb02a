"""A small real SMTP server on 127.0.0.1 that misbehaves on purpose, at points aiosmtpd gives no hook for:
in the middle of a message body, right after the final ".", in the greeting. Plain sockets, one thread per
connection, so each fault happens exactly where the wire says."""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What the server does to the first `times` messages (later ones are accepted normally)."""

    drop_at_data: int = 0  # close the connection when DATA is asked for, before the body (before 354)
    drop_after_dot: int = 0  # store the message, then close without answering
    stall_after_dot: int = 0  # store the message, then never answer (the connection stays open)
    partial_after_dot: int = 0  # store the message, send the first two digits of "250", then stall
    drip_banner: float = 0.0  # seconds between the greeting's bytes (0: send it at once), for every connection
    reject_rcpt_421: int = 0  # answer RCPT with 421 and close, the first N times


@dataclass
class Recorder:
    faults: Faults
    stored: list[bytes] = field(default_factory=list)  # every complete message body received (answered or not)
    connections: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)
    counters: dict[str, int] = field(default_factory=dict)

    def take(self, fault: str) -> bool:
        """Whether this occurrence of `fault` is one of the first N that should misbehave."""
        with self.lock:
            used = self.counters.get(fault, 0)
            if used < getattr(self.faults, fault):
                self.counters[fault] = used + 1
                return True
            return False

    def store(self, body: bytes) -> None:
        with self.lock:
            self.stored.append(body)
            self.lock.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[bytes]:
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.stored) >= count, timeout):
                raise AssertionError(f"expected {count} stored messages, got {len(self.stored)}")
            return list(self.stored)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        recorder = self.server.recorder
        with recorder.lock:
            recorder.connections += 1
            recorder.lock.notify_all()
        stop = self.server.stopping
        try:
            banner = b"220 127.0.0.1 fault-smtp ready\r\n"
            if recorder.faults.drip_banner:
                for byte in banner:
                    if stop.wait(recorder.faults.drip_banner):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            else:
                self.wfile.write(banner)
                self.wfile.flush()
            while not stop.is_set():
                line = self.rfile.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self.wfile.write(b"250-127.0.0.1\r\n250 SIZE 10000000\r\n")
                    self.wfile.flush()
                elif verb == b"MAIL":
                    self._say("250 OK")
                elif verb == b"RCPT":
                    if recorder.take("reject_rcpt_421"):
                        self._say("421 4.3.2 shutting down, try again")
                        return
                    self._say("250 OK")
                elif verb == b"DATA":
                    if recorder.take("drop_at_data"):
                        return
                    self._say("354 go ahead")
                    if not self._data(recorder, stop):
                        return
                elif verb == b"RSET" or verb == b"NOOP":
                    self._say("250 OK")
                elif verb == b"QUIT":
                    self._say("221 bye")
                    return
                else:
                    self._say("500 unknown command")
        except OSError:
            return

    def _data(self, recorder: Recorder, stop: threading.Event) -> bool:
        """Read one body; returns whether the session goes on."""
        body = []
        while True:
            line = self.rfile.readline()
            if not line:
                return False
            if line == b".\r\n":
                break
            body.append(line[1:] if line.startswith(b"..") else line)
        recorder.store(b"".join(body))
        if recorder.take("drop_after_dot"):
            return False
        if recorder.take("stall_after_dot"):
            stop.wait(60)
            return False
        if recorder.take("partial_after_dot"):
            self.wfile.write(b"25")
            self.wfile.flush()
            stop.wait(60)
            return False
        self._say("250 2.0.0 queued")
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.recorder = recorder
        self.stopping = threading.Event()


class FaultySmtpServer:
    """`with FaultySmtpServer(Faults(drop_after_dot=1)) as server:` then point [smtp] at server.port."""

    def __init__(self, faults: Faults) -> None:
        self.recorder = Recorder(faults)
        self._server = _Server(self.recorder)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> FaultySmtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def stored(self) -> list[bytes]:
        with self.recorder.lock:
            return list(self.recorder.stored)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[bytes]:
        return self.recorder.wait_for(count, timeout)


def refused_port() -> int:
    """A port on 127.0.0.1 with nobody listening (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
