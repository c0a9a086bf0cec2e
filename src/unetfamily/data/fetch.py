"""Downloading one file over HTTP(S): streamed, resumable, retried, length-checked (standard library only).

:func:`fetch` streams ``url`` into ``DEST.part`` and renames it to ``DEST`` once complete. A
``.part`` left by an interrupted run is resumed with ``Range: bytes=N-``: a ``206`` answer is
appended, a ``200`` (a server that ignores ranges) restarts from zero, a ``416`` means the file
was already complete. Connection errors, timeouts, truncated bodies and the HTTP statuses that
mean "try later" (408, 425, 429, 5xx) are retried with exponential backoff; the bytes already
received stay in ``.part`` so that the next try (or the next run) continues from there. The body
length is checked against ``Content-Length`` (and ``Content-Range``) when the server sends them.

The ``.part`` file is written in place (it is the resume point), not atomically; the finished
file appears only by ``os.replace``. Every failure is a :class:`DownloadError` naming the URL and
what to do. Proxies come from the usual environment variables (``HTTPS_PROXY``, ``NO_PROXY``).
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unetfamily import __version__
from unetfamily.data.errors import DataConfigError, DataError
from unetfamily.files import WriteError

__all__ = ["DownloadError", "FetchOptions", "Progress", "fetch", "with_base_url"]

log = logging.getLogger(__name__)

#: ``progress(label, bytes_done, bytes_total_or_None)``, called as the bytes arrive.
Progress = Callable[[str, int, "int | None"], None]

_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class DownloadError(DataError):
    """A file could not be downloaded, or what was downloaded is not what the project expects."""


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix; ``restart``: drop the partial file first."""

    def __init__(self, reason: str, restart: bool = False) -> None:
        super().__init__(reason)
        self.restart = restart


@dataclass(frozen=True)
class FetchOptions:
    """How hard :func:`fetch` tries: the socket ``timeout`` (seconds per connect or read), the number
    of ``retries`` after the first attempt, the ``backoff`` before the first retry (doubled each
    time, at most 60 s), the ``chunk`` size read at a time, and ``max_bytes``, the largest file accepted
    (a server that sends without end is stopped there)."""

    timeout: float = 60.0
    retries: int = 5
    backoff: float = 1.0
    chunk: int = 1 << 20
    max_bytes: int = 8 << 30


def with_base_url(url: str, base_url: str | None) -> str:
    """``url`` with its scheme and host replaced by ``base_url`` (a mirror), keeping the path.

    ``with_base_url("https://codeload.github.com/o/r/zip/c", "http://127.0.0.1:8000/m")``
    is ``"http://127.0.0.1:8000/m/o/r/zip/c"``.
    """
    if not base_url:
        return url
    try:
        base = urllib.parse.urlsplit(base_url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        base = urllib.parse.urlsplit("")
    if base.scheme not in ("http", "https") or not base.netloc or any(c.isspace() or ord(c) < 32 for c in base_url):
        raise DataConfigError(f"base URL {base_url!r}: give an http:// or https:// address such as "
                              "http://mirror.example.org/github (a mirror serving the same paths)")
    return base_url.rstrip("/") + urllib.parse.urlsplit(url).path


def _total_of(content_range: str | None) -> int | None:
    match = _CONTENT_RANGE.match(content_range or "")
    return int(match.group(3)) if match and match.group(3) != "*" else None


def _start_of(response: http.client.HTTPResponse, have: int) -> int:
    """Where the body of ``response`` starts in the file: ``have`` for a matching 206, 0 for a 200."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
        if match and match.group(1) is not None and int(match.group(1)) == have:
            return have
        raise _Retry(f"the server answered the range request with {response.headers.get('Content-Range')!r}",
                     restart=True)
    if response.status != 200:
        raise _Retry(f"unexpected HTTP status {response.status}")
    return 0


def _open(url: str, have: int, options: FetchOptions) -> http.client.HTTPResponse | None:
    """The response for the bytes from ``have`` on; None when a 416 says the file is complete."""
    headers = {"User-Agent": f"unetfamily/{__version__} (dataset download)", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=options.timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:
            total = _total_of(e.headers.get("Content-Range"))
            if total is None or total == have:
                return None
            raise _Retry(f"the server has {total} bytes, the partial file {have}: restarting", restart=True) from e
        if e.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; the address is wrong, or the file is not (or no "
                            "longer) there. Check the base URL (a mirror must serve the same paths) or report it; "
                            "a source that needs a login is downloaded by hand and handed over as an archive") from e


def _attempt(url: str, part: Path, options: FetchOptions, progress: Progress | None) -> None:
    """One request: append to (or restart) ``part``; returns when it holds the whole file."""
    have = part.stat().st_size if part.exists() else 0
    response = _open(url, have, options)
    if response is None:
        log.info("%s: already complete (%d bytes)", part, have)
        return
    with response:
        start = _start_of(response, have)
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = start + length if length is not None else _total_of(response.headers.get("Content-Range"))
        if (total or 0) > options.max_bytes:
            raise DownloadError(f"{url}: the server announces {total} bytes, more than the {options.max_bytes} "
                                "expected at most; check the address (or the base URL)")
        try:  # unbuffered: a write error shows at write(), where it is named, not at close()
            f = open(part, "ab" if start else "wb", buffering=0)
        except OSError as e:
            raise WriteError(part, e) from e
        done = start
        with f:
            while chunk := response.read(options.chunk):
                try:
                    f.write(chunk)
                except OSError as e:
                    raise WriteError(part, e) from e
                done += len(chunk)
                if done > options.max_bytes:
                    raise DownloadError(f"{url}: more than {options.max_bytes} bytes received, more than expected; "
                                        f"stopped (the partial file {part} can be removed)")
                if progress is not None:
                    progress(part.name.removesuffix(".part"), done, total)
    if total is not None and done != total:
        raise _Retry(f"the connection ended after {done} of {total} bytes")


def fetch(url: str, dest: str | Path, *, options: FetchOptions | None = None,
          progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest`` (through ``dest.part``, resumed if present) and return ``dest``.

    An existing ``dest`` is taken as complete and returned unchanged. Raises a
    :class:`DownloadError` naming the URL when the retries are used up or the server refuses.
    """
    options = options or FetchOptions()
    dest = Path(dest)
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError as e:
        raise DownloadError(f"{url}: not a usable address ({e})") from e
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http:// and https:// addresses are downloaded")
    if dest.is_file():
        return dest
    if os.path.lexists(dest):
        raise DownloadError(f"{dest}: is in the way of the download of {url} and is not a regular file; remove it")
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(dest.parent, e) from e
    reason = ""
    for attempt in range(options.retries + 1):
        if attempt:
            delay = min(options.backoff * 2 ** (attempt - 1), 60.0)
            log.warning("%s: %s; retry %d of %d in %.0f s", url, reason, attempt, options.retries, delay)
            time.sleep(delay)
        try:
            _attempt(url, part, options, progress)
        except (WriteError, DataError):
            raise
        except (_Retry, http.client.HTTPException, OSError) as e:  # URLError, timeouts, resets are OSErrors
            reason = str(getattr(e, "reason", None) or e) or type(e).__name__
            if isinstance(getattr(e, "reason", e), ConnectionRefusedError):  # nothing listens there: no retry helps
                raise DownloadError(f"{url}: connection refused ({reason}); nothing answers at that address. "
                                    "Check the base URL (or a proxy: HTTPS_PROXY) and the network") from e
            if getattr(e, "restart", False):
                part.unlink(missing_ok=True)
            continue
        except ValueError as e:  # urllib's word for an address it cannot use
            raise DownloadError(f"{url}: not a usable address ({e}); check the base URL") from e
        try:
            os.replace(part, dest)
        except OSError as e:
            raise WriteError(dest, e) from e
        return dest
    kept = part.stat().st_size if part.exists() else 0
    resume = f": the {kept} bytes already in {part} are kept and the download resumes from there" if kept else ""
    raise DownloadError(f"{url}: download failed after {options.retries + 1} attempt(s) ({reason}). Check the "
                        f"network connection (and a proxy: HTTPS_PROXY) and run the same command again{resume}")
