"""Fetch a large input file from mirrors tried in order: resumable, checksummed, and quick to fail offline.

The Gosai et al. 2024 MPRA table is ~280 MB, so an interrupted transfer resumes from `<dest>.part`
instead of starting over, and a machine without network gets one clear line telling the user where
to put the file by hand rather than a long hang.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from r3lm.errors import InputError
from r3lm.io import atomic_path

log = logging.getLogger("r3lm.data.download")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_RECORD_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # sha256sum text or binary mode
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)")  # "bytes 10-99/100" or "bytes */100"


class DownloadError(InputError):
    """No URL delivered the file, or it failed its checksum: the user must fix the network, config or file."""


@dataclass(frozen=True)
class DownloadResult:
    """The finished file; this call fetched `n_bytes - resumed_from` bytes of it from `url`."""

    path: Path
    url: str
    sha256: str
    n_bytes: int
    resumed_from: int


class _AttemptFailed(Exception):
    """One URL did not deliver the whole file; the next URL gets its turn."""


@dataclass
class _Source:
    stream: BinaryIO
    start: int  # file offset of the first byte the stream yields
    total: int | None  # size of the whole file, when the source announces it


_FETCH_ERRORS = (OSError, HTTPException, ValueError, _AttemptFailed)  # ValueError: malformed URL


def read_recorded_sha256(dest: str | Path) -> str | None:
    """The checksum a finished download recorded in `<dest>.sha256`, or None if absent or not for `dest`."""
    dest = Path(dest)
    try:
        first_line = _record_path(dest).read_text().partition("\n")[0]
    except (OSError, UnicodeDecodeError):
        return None
    match = _RECORD_LINE.fullmatch(first_line)
    if match is None or match.group(2) != dest.name:
        return None
    return match.group(1).lower()


def download(
    urls: Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    connect_timeout: float = 15.0,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> DownloadResult:
    """Make `dest` hold the file from the first of `urls` that works, resuming `<dest>.part` if present.

    An existing `dest` (downloaded earlier or placed by hand) is kept without network when it matches
    `sha256` (if given). `connect_timeout` bounds every socket wait, so a stalled mirror fails too.
    Raises DownloadError, in one line, when every URL fails or the file does not match `sha256`.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    if dest.is_file():
        digest = _hash_file(dest).hexdigest()
        if expected in (None, digest):
            return _keep_existing(dest, digest)
        log.warning("%s has sha256 %s, expected %s; downloading it again", dest, digest, expected)

    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for url in urls:
        try:
            hasher, resumed_from = _fetch(url, part, connect_timeout, chunk_size, progress)
        except _FETCH_ERRORS as error:
            reason = _reason(error, connect_timeout)
            log.warning("could not download %s: %s", url, reason)
            failures.append(f"{url}: {reason}")
            continue
        digest = hasher.hexdigest()
        if expected is not None and digest != expected:
            part.unlink()
            raise DownloadError(
                f"sha256 mismatch for the file from {url}: expected {expected}, got {digest}; "
                f"deleted the partial download, fix the URL or the expected sha256 and rerun",
                path=dest,
            )
        os.replace(part, dest)
        _write_record(dest, digest)
        return DownloadResult(dest, url, digest, dest.stat().st_size, resumed_from)

    tried = "; ".join(failures) or "no URLs given"
    raise DownloadError(
        f"could not download {dest.name} ({tried}); "
        f"download it by hand and place it at {dest}, then rerun"
    )


def _keep_existing(dest: Path, digest: str) -> DownloadResult:
    """Accept a file already in place; a missing or stale record is rewritten (e.g. after a copy by hand)."""
    recorded = read_recorded_sha256(dest)
    if recorded != digest:
        if recorded is not None:
            log.warning("%s changed since its checksum was recorded (%s); recording %s", dest, recorded, digest)
        _write_record(dest, digest)
    log.info("%s is already complete (sha256 %s); not downloading", dest, digest)
    size = dest.stat().st_size
    return DownloadResult(dest, dest.resolve().as_uri(), digest, size, size)


def _fetch(
    url: str, part: Path, timeout: float, chunk_size: int, progress: bool
) -> tuple[hashlib._Hash, int]:
    """Bring `part` up to the whole file from `url`; return its hash and the offset the transfer began at.

    A short transfer leaves `part` in place, so the next URL or the next run resumes it.
    """
    offset = part.stat().st_size if part.exists() else 0
    source = _open(url, offset, timeout)
    with source.stream:
        if source.start:
            log.info("resuming %s from byte %d", url, source.start)
            hasher = _hash_file(part)
        else:
            hasher = hashlib.sha256()
        part.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with (
            part.open("ab" if source.start else "wb") as out,
            tqdm(total=source.total, initial=source.start, desc=part.name.removesuffix(".part"),
                 unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar,
        ):
            while chunk := source.stream.read(chunk_size):
                out.write(chunk)
                hasher.update(chunk)
                bar.update(len(chunk))
        seconds = time.monotonic() - started

    size = part.stat().st_size
    if source.total is not None and size < source.total:
        raise _AttemptFailed(f"transfer stopped at byte {size} of {source.total}; kept {part} to resume")
    fetched = size - source.start
    log.info(
        "downloaded %s: %d bytes (%d fetched, resumed from byte %d) in %.1f s, %.1f MB/s",
        url, size, fetched, source.start, seconds, fetched / 1e6 / max(seconds, 1e-6),
    )
    return hasher, source.start


def _open(url: str, offset: int, timeout: float) -> _Source:
    """Open `url` at byte `offset` if the source allows it, else at byte 0 (see `_Source.start`)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return _open_file(url, urllib.request.url2pathname(parsed.path), offset)

    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        # A fresh opener reads the proxy settings of this call, not those of the first urlopen.
        response = urllib.request.build_opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code != 416 or not offset:
            raise
        _, total = _content_range(error.headers.get("Content-Range"))
        if total in (None, offset):
            log.info("%s has no bytes past %d; taking the partial download as complete", url, offset)
            return _Source(io.BytesIO(), offset, offset)
        log.info("%s: partial download (%d bytes) exceeds the file (%d bytes); starting over", url, offset, total)
        return _open(url, 0, timeout)

    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206 and offset:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            response.close()
            raise _AttemptFailed(f"asked for bytes from {offset}, got {response.headers.get('Content-Range')!r}")
        if total is None and length is not None:
            total = offset + length
        return _Source(response, offset, total)
    if response.status == 200:
        if offset:
            log.info("%s ignored the Range header; starting over from byte 0 (was at %d)", url, offset)
        return _Source(response, 0, length)
    response.close()
    raise _AttemptFailed(f"unexpected HTTP {response.status} {response.reason}")


def _open_file(url: str, path: str, offset: int) -> _Source:
    """urllib's file handler ignores Range, so resume a file:// URL by seeking the file itself."""
    stream = open(path, "rb")  # noqa: SIM115 - the caller reads and closes it
    size = os.fstat(stream.fileno()).st_size
    if offset > size:
        log.info("%s: partial download (%d bytes) exceeds the file (%d bytes); starting over", url, offset, size)
        offset = 0
    stream.seek(offset)
    return _Source(stream, offset, size)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None for what it does not say."""
    match = _CONTENT_RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (None if total == "*" else int(total))


def _reason(error: BaseException, timeout: float) -> str:
    """A short phrase for one failed URL, so the final error stays on one line."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        error = error.reason
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    return " ".join(str(error).split()) or type(error).__name__


def _normalise_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise DownloadError(f"expected sha256 must be 64 hexadecimal digits, got {value!r}")
    return digest


def _hash_file(path: Path) -> hashlib._Hash:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256")


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _write_record(dest: Path, digest: str) -> None:
    """`sha256sum -c` can check the record; atomic so a crash never leaves a half-written one."""
    with atomic_path(_record_path(dest)) as tmp:
        tmp.write_text(f"{digest}  {dest.name}\n")
