"""The Maildir transport: tmp/ then new/, the Maildir way (atomic, readable by mutt and most clients)."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import socket
import time
from pathlib import Path

from digest.errors import DeliveryError
from digest.mail.transport import HandOver, Outgoing, TransientError

log = logging.getLogger(__name__)
_MAILDIR_COUNTER = itertools.count()  # per process: part of every Maildir file name


class MaildirTransport:
    """Delivers into a Maildir (tmp/, then linked into new/: a reader never sees half a message).

    Durability is the ledger's: SQLite runs with synchronous=NORMAL, so both survive a crash of the process
    and neither is promised to survive a power cut. An fsync per message would cost more than composing it;
    `[delivery] maildir_fsync = true` buys it for those who want the file on disk before it counts as sent.
    """

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        try:
            for folder in ("tmp", "new", "cur"):
                (path / folder).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DeliveryError(
                f"{path}: cannot create the Maildir ({exc.strerror}); check [delivery] maildir"
            ) from None
        self.path = path
        self.fsync = fsync
        # The Maildir convention for unique names: time, microseconds, pid, a counter, the host ('/' and ':'
        # escaped, as the spec asks). The counter is the process's, so two transports never share a name.
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def _unique_name(self) -> str:
        now = time.time()  # not the calendar: only makes the file name unique, as the Maildir spec asks
        return f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{next(_MAILDIR_COUNTER)}.{self._host}"

    def send(self, message: Outgoing, recipient: str, handing_over: HandOver | None = None) -> None:
        data = message if isinstance(message, bytes) else message.as_bytes()
        data = data.replace(b"\r\n", b"\n")  # Maildir files end lines with LF, as mail clients write them
        try:
            for _ in range(5):
                if self._deliver_once(data, handing_over):
                    return
            raise OSError(errno.EEXIST, "no unique file name after 5 tries")
        except OSError as exc:
            raise TransientError(f"{self.path}: cannot write the message ({exc.strerror})") from None

    def _deliver_once(self, data: bytes, handing_over: HandOver | None) -> bool:
        """Written in tmp/, then linked into new/: a link, unlike a rename, never replaces a message already
        there (False: that name was taken, try another)."""
        name = self._unique_name()
        temporary = self.path / "tmp" / name
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(descriptor, "wb", closefd=True) as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            if handing_over is not None:
                handing_over()
            try:
                os.link(temporary, self.path / "new" / name)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if (self.path / "new" / name).exists():  # a file system without hard links
                    return False
                os.rename(temporary, self.path / "new" / name)
            return True
        finally:
            temporary.unlink(missing_ok=True)

    def close(self) -> None:
        pass
