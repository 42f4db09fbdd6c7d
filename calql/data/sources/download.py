"""HTTP download of one file into a cache, safe against crashes, truncation and corruption.

The file is streamed to ``<dest>.part-<pid>`` (hashing as it goes) and renamed onto ``dest`` only when
the byte count matches the server's Content-Length and, when one is known, the SHA-256 matches.
A killed job therefore never leaves a complete-looking file. Failures raise
:class:`calql.errors.DownloadError` naming the URL and the path where the user can put the file
by hand (machines without internet access are common on clusters).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from calql.errors import DownloadError

log = logging.getLogger(__name__)

#: Bytes per read from the socket (and per hash update).
CHUNK = 1 << 20
#: Seconds to wait before retry k (k = 1, 2, ...): RETRY_DELAY * k.
RETRY_DELAY = 2.0


@dataclass(frozen=True)
class Downloaded:
    """What was fetched: where it lies, its size and its SHA-256."""

    path: Path
    size: int
    sha256: str


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (streamed, constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _manual_hint(url: str, dest: Path) -> str:
    return (
        f"Download it by hand (e.g. `curl -L -o {dest} '{url}'` on a machine with internet access) "
        f"and put it at {dest}; it is then used without any download."
    )


def _fetch_once(url: str, part: Path, timeout: float, desc: str) -> tuple[int, int | None, str]:
    """Stream ``url`` into ``part``; returns (bytes written, Content-Length or None, sha256)."""
    request = urllib.request.Request(url, headers={"User-Agent": "calql-repro"})
    h = hashlib.sha256()
    written = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header is not None and length_header.isdigit() else None
        with (
            open(part, "wb") as out,
            tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=None,
                leave=False,
            ) as bar,
        ):
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                written += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    return written, expected, h.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    retries: int = 2,
    timeout: float = 60.0,
) -> Downloaded:
    """Download ``url`` to ``dest`` atomically, with ``retries`` extra attempts on failure.

    Refuses (and deletes) a transfer shorter or longer than its Content-Length or whose SHA-256
    differs from ``sha256``. HTTP 4xx answers are not retried (the file is not there).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # One .part file per process: two jobs fetching the same dataset never write into each other.
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    last_error = "unknown error"
    for attempt in range(retries + 1):
        if attempt:
            delay = RETRY_DELAY * attempt
            log.warning(
                "retrying download of %s in %.0f s (attempt %d of %d): %s",
                url,
                delay,
                attempt + 1,
                retries + 1,
                last_error,
            )
            time.sleep(delay)
        try:
            log.info("downloading %s -> %s", url, dest)
            size, expected, digest = _fetch_once(url, part, timeout, desc=dest.name)
        except urllib.error.HTTPError as exc:
            part.unlink(missing_ok=True)
            last_error = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500:
                break
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            reason = getattr(exc, "reason", None) or exc
            last_error = f"{type(exc).__name__}: {reason}"
            continue
        if expected is not None and size != expected:
            part.unlink(missing_ok=True)
            last_error = f"truncated transfer: got {size} bytes, Content-Length says {expected}"
            continue
        if sha256 is not None and digest != sha256.lower():
            part.unlink(missing_ok=True)
            # A wrong hash from a complete transfer will not fix itself: do not retry.
            raise DownloadError(
                f"download of {url} is corrupted: SHA-256 {digest} differs from the expected "
                f"{sha256}. {_manual_hint(url, dest)}"
            )
        os.replace(part, dest)
        log.info("downloaded %s (%d bytes, sha256 %s)", dest, size, digest)
        return Downloaded(path=dest, size=size, sha256=digest)
    raise DownloadError(f"could not download {url} ({last_error}). {_manual_hint(url, dest)}")
