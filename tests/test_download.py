"""Downloads over file:// and loopback HTTP only: resume, restart, truncation, checksums, offline failure."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from r3lm.data.download import DownloadError, download, read_recorded_sha256

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/gosai2024/table_s2_rows.tsv"
NAME = "DATA-Table_S2__MPRA_dataset.txt"
PAYLOAD = random.Random(0).randbytes(200_000)  # several chunks at CHUNK, so resume lands mid-stream
CHUNK = 16_384


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would swallow the loopback requests."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A private copy of the real 9-row table, so a test may delete it."""
    if not SAMPLE.parent.is_dir():
        pytest.skip(f"shared sample data not found: {SAMPLE.parent}")
    copy = tmp_path / "source" / NAME
    copy.parent.mkdir()
    shutil.copyfile(SAMPLE, copy)
    return copy


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "resources" / "gosai2024" / NAME


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- file:// -----------------------------------------------------------------------------------------


def test_file_url_download_records_checksum_and_second_call_is_a_no_op(sample: Path, dest: Path) -> None:
    data = sample.read_bytes()
    result = download([sample.as_uri()], dest, progress=False)

    assert dest.read_bytes() == data
    assert result.sha256 == sha(data) == read_recorded_sha256(dest)
    assert dest.with_name(NAME + ".sha256").read_text() == f"{sha(data)}  {NAME}\n"
    assert (result.path, result.url, result.n_bytes, result.resumed_from) == (dest, sample.as_uri(), len(data), 0)
    assert not part_of(dest).exists()

    sample.unlink()  # no source any more: only the finished file can satisfy the second call
    again = download([sample.as_uri()], dest, sha256=sha(data), progress=False)
    assert (again.sha256, again.n_bytes, again.resumed_from) == (sha(data), len(data), len(data))


def test_file_placed_by_hand_is_accepted_and_recorded(sample: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True)
    shutil.copyfile(sample, dest)
    result = download(["http://127.0.0.1:9/unused"], dest, progress=False)
    assert result.sha256 == read_recorded_sha256(dest) == sha(sample.read_bytes())


def test_file_url_resumes_from_partial_download(
    sample: Path, dest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = sample.read_bytes()
    resume_at = len(data) // 3
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(data[:resume_at])

    with caplog.at_level(logging.INFO, logger="r3lm.data.download"):
        result = download([sample.as_uri()], dest, sha256=sha(data), progress=False)

    assert dest.read_bytes() == data
    assert result.resumed_from == resume_at
    assert result.sha256 == read_recorded_sha256(dest) == sha(data)
    assert f"resuming {sample.as_uri()} from byte {resume_at}" in caplog.text


def test_wrong_partial_download_fails_checksum_and_is_deleted(sample: Path, dest: Path) -> None:
    data = sample.read_bytes()
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"X" * 100)

    with pytest.raises(DownloadError, match=f"expected {sha(data)}, got [0-9a-f]{{64}}"):
        download([sample.as_uri()], dest, sha256=sha(data), progress=False)

    assert not part_of(dest).exists()
    assert not dest.exists()


def test_checksum_mismatch_writes_nothing(sample: Path, dest: Path) -> None:
    with pytest.raises(DownloadError, match="sha256 mismatch") as raised:
        download([sample.as_uri()], dest, sha256="0" * 64, progress=False)

    assert raised.value.exit_code == 2
    assert sha(sample.read_bytes()) in str(raised.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == []


# --- loopback HTTP -----------------------------------------------------------------------------------


class PayloadHandler(BaseHTTPRequestHandler):
    """Serves PAYLOAD; `mode` picks how it treats Range: honour it, ignore it, or cut the body short."""

    mode = "range"
    range_headers: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        type(self).range_headers.append(header)
        start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1)) if header else 0
        if self.mode == "range" and header:
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            body = PAYLOAD[start:]
        else:
            self.send_response(200)
            body = PAYLOAD
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "truncate":
            body = body[: len(body) // 2]  # promise everything, send half, then hang up
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server() -> Iterator[tuple[str, type[PayloadHandler]]]:
    """A loopback server on a free port; yields the payload URL and a handler class to configure."""
    handler = type("Handler", (PayloadHandler,), {"mode": "range", "range_headers": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/{NAME}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_http_resume_sends_range_and_appends(server, dest: Path) -> None:
    url, handler = server
    resume_at = 50_000
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD[:resume_at])

    result = download([url], dest, sha256=sha(PAYLOAD), chunk_size=CHUNK, progress=False)

    assert handler.range_headers == [f"bytes={resume_at}-"]
    assert dest.read_bytes() == PAYLOAD
    assert (result.url, result.resumed_from, result.n_bytes) == (url, resume_at, len(PAYLOAD))
    assert read_recorded_sha256(dest) == sha(PAYLOAD)


def test_http_server_ignoring_range_restarts_from_zero(
    server, dest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = server
    handler.mode = "ignore-range"
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD[:50_000])

    with caplog.at_level(logging.INFO, logger="r3lm.data.download"):
        result = download([url], dest, chunk_size=CHUNK, progress=False)

    assert handler.range_headers == ["bytes=50000-"]
    assert dest.read_bytes() == PAYLOAD
    assert result.resumed_from == 0
    assert "ignored the Range header; starting over" in caplog.text


def test_http_truncated_transfer_keeps_part_and_retry_completes_it(server, dest: Path) -> None:
    url, handler = server
    handler.mode = "truncate"

    with pytest.raises(DownloadError, match=r"transfer stopped at byte 100000 of 200000"):
        download([url], dest, chunk_size=CHUNK, progress=False)
    assert part_of(dest).read_bytes() == PAYLOAD[:100_000]
    assert not dest.exists()

    handler.mode = "range"
    result = download([url], dest, sha256=sha(PAYLOAD), chunk_size=CHUNK, progress=False)
    assert handler.range_headers == [None, "bytes=100000-"]
    assert dest.read_bytes() == PAYLOAD
    assert result.resumed_from == 100_000
    assert not part_of(dest).exists()


def test_http_416_takes_complete_part_as_done(server, dest: Path) -> None:
    url, handler = server
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(PAYLOAD)

    result = download([url], dest, sha256=sha(PAYLOAD), progress=False)

    assert handler.range_headers == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD
    assert result.resumed_from == len(PAYLOAD)


def test_falls_back_to_next_url(server, tmp_path: Path, dest: Path) -> None:
    url, _ = server
    missing = (tmp_path / "missing.txt").as_uri()
    result = download([missing, url], dest, progress=False)
    assert result.url == url
    assert dest.read_bytes() == PAYLOAD


# --- offline -----------------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nobody listens on (bound then released), so connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_urls_fail_fast_with_one_line_naming_them(tmp_path: Path, dest: Path) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/x"
    missing = (tmp_path / "nowhere" / NAME).as_uri()

    started = time.monotonic()
    with pytest.raises(DownloadError) as raised:
        download([refused, missing], dest, connect_timeout=2.0, progress=False)
    elapsed = time.monotonic() - started

    message = str(raised.value)
    assert elapsed < 5
    assert "\n" not in message
    assert message.startswith(f"could not download {NAME} ({refused}: ")
    assert f"; {missing}: " in message
    assert message.endswith(f"download it by hand and place it at {dest}, then rerun")
    assert [p for p in tmp_path.rglob("*")] == []


def test_malformed_expected_sha256_is_rejected(dest: Path) -> None:
    with pytest.raises(DownloadError, match="64 hexadecimal digits"):
        download(["file:///unused"], dest, sha256="abc", progress=False)
