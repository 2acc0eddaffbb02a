"""Reading one input, a file or a URL, within a size limit and a timeout."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from digest import __version__
from digest.errors import IngestError

USER_AGENT = f"paper-digest/{__version__} (+https://github.com/paper-digest)"


def _too_large(source: str, limit: int) -> IngestError:
    return IngestError(f"{source}: larger than the {limit / 1e6:g} MB limit; raise [ingest] max_file_mb to read it")


def read_file(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _too_large(str(path), limit)
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file or folder") from None
    except IsADirectoryError:
        raise IngestError(f"{path}: is a folder") from None
    except PermissionError:
        raise IngestError(f"{path}: permission denied") from None
    if len(data) > limit:
        raise _too_large(str(path), limit)
    if not data.strip():
        raise IngestError(f"{path}: empty file")
    return data


def fetch_url(url: str, limit: int, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise _too_large(url, limit)
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise IngestError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL in [sources] urls") from None
    except TimeoutError:
        raise IngestError(
            f"{url}: no answer within {timeout:g} s; try again later or raise [sources] timeout"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise IngestError(
                f"{url}: no answer within {timeout:g} s; try again later or raise [sources] timeout"
            ) from None
        raise IngestError(f"{url}: cannot fetch ({reason})") from None
    except (OSError, ValueError) as exc:
        raise IngestError(f"{url}: cannot fetch ({exc})") from None
    if len(data) > limit:
        raise _too_large(url, limit)
    if not data.strip():
        raise IngestError(f"{url}: empty response")
    return data
