"""Composing many digests at once: rendering and the MIME message in worker processes, results in order.

Rendering (Jinja2, CSS inlining, text wrapping) and composing are most of the CPU time of a big send, and they
are pure: a plan in, bytes out, no database, no network. So `digest send` hands them to a process pool and
keeps everything with a side effect (the ledger, the hand-over to the transport, one message at a time) in the
sending process. A worker that dies takes no message with it: the sender notices, and composes the rest itself.

Small sends (a lab of ten) are composed in-process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path

from jinja2 import Environment

from digest import trace
from digest.errors import DigestError, RenderError
from digest.links import Links
from digest.mail.message import message_bytes
from digest.picks import DigestPlan
from digest.render import make_environment
from digest.render.email import render_and_compose

log = logging.getLogger(__name__)

# Below this many messages in a batch, composing in-process is faster than starting and feeding workers.
MIN_JOBS_FOR_WORKERS = 64
# Messages per round trip to a worker: enough to amortise the pickling, few enough to keep both busy.
CHUNK = 16
MAX_AUTO_WORKERS = 8


@dataclass(frozen=True)
class ComposeSettings:
    """What a worker needs to compose any subscriber's message (sent to each worker once)."""

    templates: Path | None
    sender: str
    list_id: str


@dataclass(frozen=True)
class ComposeJob:
    plan: DigestPlan
    links: Links
    message_id: str
    now: datetime


@dataclass(frozen=True)
class ComposedBytes:
    subject: str
    data: bytes  # the message as it goes over the wire (CRLF)


ComposeResult = ComposedBytes | DigestError


def auto_workers() -> int:
    """One worker per core this process may use (the sender itself mostly waits on SQLite and the disk)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


def compose_one(env: Environment, settings: ComposeSettings, job: ComposeJob) -> ComposeResult:
    """One message, or the DigestError that explains why it could not be made (a template error, a bad address)."""
    try:
        rendered, message = render_and_compose(
            env,
            job.plan,
            job.links,
            sender=settings.sender,
            list_id=settings.list_id,
            message_id=job.message_id,
            now=job.now,
        )
        with trace.stage("composing"):
            data = message_bytes(message)
    except DigestError as exc:
        return exc
    except Exception as exc:  # one subscriber's message must not stop everyone else's (a bug, an odd address)
        # Said in one line with where it happened: in a worker process there is no log to put a traceback in.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return RenderError(
            f"could not compose the message: {type(exc).__name__}: {exc} "
            f"(at {Path(where.filename).name}:{where.lineno})"
        )
    return ComposedBytes(rendered.subject, data)


# Per worker process: set once by the pool's initializer, read by each job (the pool gives no other way to keep
# a compiled template environment between jobs).
_worker_state: tuple[Environment, ComposeSettings] | None = None


WORKER_CHECK_SECONDS = 1.0  # how often a wait for workers checks that they are alive


def _start_worker(settings: ComposeSettings, sender_alive: Connection) -> None:
    global _worker_state
    # Ctrl-C reaches the whole process group; the sender decides when to stop, its workers just finish or die.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_sender(sender_alive)
    _worker_state = (make_environment(settings.templates), settings)


def _exit_with_sender(sender_alive: Connection) -> None:
    """A worker whose sender was killed (SIGKILL, out of memory) would wait for work forever, holding the
    sender's stderr open. The sender alone holds the other end of `sender_alive`, and nothing is ever sent on
    it: the read returns when the sender's end closes, at its exit however it comes, and the worker leaves."""

    def watch() -> None:
        try:
            sender_alive.recv()
        except (EOFError, OSError):
            pass
        os._exit(0)  # nothing to lose: a worker only ever holds a message the sender never got

    threading.Thread(target=watch, name="digest-exit-with-sender", daemon=True).start()


def _compose_chunk(jobs: list[ComposeJob]) -> list[ComposeResult]:
    assert _worker_state is not None, "worker started without its initializer"
    env, settings = _worker_state
    return [compose_one(env, settings, job) for job in jobs]


class Composer:
    """Composes batches of jobs in order, in `workers` processes (0: in this process), started on first need."""

    def __init__(self, env: Environment, settings: ComposeSettings, *, workers: int | None = None) -> None:
        self.env = env
        self.settings = settings
        self.workers = auto_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._sender_alive: tuple[Connection, Connection] | None = None
        self._broken = False

    def __enter__(self) -> Composer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._release_workers()

    def _release_workers(self) -> None:
        """Close our end of the workers' lifeline: any worker still running leaves."""
        if self._sender_alive is not None:
            for end in self._sender_alive:
                end.close()
            self._sender_alive = None

    def _uses_workers(self, jobs: int) -> bool:
        return self.workers > 0 and not self._broken and jobs >= MIN_JOBS_FOR_WORKERS

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers never inherit the sender's threads (the scheduler's, the web server's) or its
            # open database; each starts clean and imports only the rendering code.
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            self._sender_alive = context.Pipe(duplex=False)  # (the workers' end, ours)
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self.settings, self._sender_alive[0]),
            )
            # A worker killed while the queue's pipe is full leaves the queue's feeder thread blocked on a write
            # nobody reads; the executor then joins that thread (on noticing the death, and at interpreter exit)
            # and hangs. Nothing in the queue is worth waiting for once a worker is gone: never join it.
            call_queue = getattr(self._pool, "_call_queue", None)
            if call_queue is not None:
                call_queue.cancel_join_thread()
            log.debug("composing in %d worker process(es) (%s)", self.workers, method)
        return self._pool

    def compose(self, jobs: Sequence[ComposeJob]) -> Iterator[ComposeResult]:
        """The results in the order of `jobs`. With workers, all chunks are queued at once, so the caller can
        prepare the next batch while this one is composed; results are produced as the caller asks for them."""
        if not self._uses_workers(len(jobs)):
            return self._compose_here(jobs)
        chunks = [list(jobs[i : i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
        try:
            pool = self._get_pool()
            futures = [pool.submit(_compose_chunk, chunk) for chunk in chunks]
        except (BrokenProcessPool, OSError) as exc:
            self._give_up_workers(exc)
            return self._compose_here(jobs)
        return self._collect(chunks, futures)

    def _collect(
        self, chunks: list[list[ComposeJob]], futures: list[Future[list[ComposeResult]]]
    ) -> Iterator[ComposeResult]:
        for chunk, future in zip(chunks, futures, strict=True):
            if not self._broken:
                try:
                    # With worker processes, what the sender loses to composing is the wait for their results.
                    with trace.stage("waiting for workers"):
                        results = self._result(future)
                    yield from results
                    continue
                except BrokenProcessPool as exc:
                    self._give_up_workers(exc)
            yield from self._compose_here(chunk)

    def _result(self, future: Future[list[ComposeResult]]) -> list[ComposeResult]:
        """The chunk's messages. The executor notices a killed worker by itself, except when the worker died
        holding the queue's lock (then it waits forever): so the workers' liveness is also checked here."""
        while True:
            try:
                return future.result(timeout=WORKER_CHECK_SECONDS)
            except TimeoutError:
                pool = self._pool
                processes = list(getattr(pool, "_processes", {}).values()) if pool is not None else []
                if pool is None or any(process.exitcode is not None for process in processes):
                    raise BrokenProcessPool("a composing worker died") from None

    def _compose_here(self, jobs: Sequence[ComposeJob]) -> Iterator[ComposeResult]:
        return (compose_one(self.env, self.settings, job) for job in jobs)

    def _give_up_workers(self, exc: BaseException) -> None:
        """A worker died (killed, out of memory): compose the rest here; nothing was sent by a worker."""
        if not self._broken:
            log.warning("composing workers stopped (%s); composing the rest in this process", exc)
        self._broken = True
        if self._pool is not None:
            # The survivors are stopped too: the executor's manager thread waits on them, and a manager thread
            # left waiting would hold the interpreter open at exit.
            processes = list(getattr(self._pool, "_processes", {}).values())
            for process in processes:
                if process.exitcode is None:
                    process.kill()
            for process in processes:
                process.join(timeout=5)
            # A worker killed while writing its result leaves half a message in the result pipe; the manager
            # thread then waits for the rest forever, and the interpreter joins it at exit. With every worker gone,
            # closing our (unused) write end lets that read end in EOF, which the executor handles as a broken pool.
            writer = getattr(getattr(self._pool, "_result_queue", None), "_writer", None)
            if writer is not None:
                writer.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._release_workers()
