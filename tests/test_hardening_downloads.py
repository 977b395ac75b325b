"""Hardening of downloads (issue 26): a server on 127.0.0.1 that answers with error pages,
endless or oversized bodies, a byte at a time, nothing at all, or redirects anywhere.

A download is checked for what it claims to be before it enters the cache, stops at a size
limit with or without Content-Length, times out (per read and as a whole), and follows at most
MAX_REDIRECTS redirects, to http(s) only. No other network is used.
"""

from __future__ import annotations

import io
import re
import signal
import time
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from sketch_model import download
from sketch_model.errors import DataFileError
from tests.helpers import local_server

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHEEP = DATA / "aaron_sheep.npz"
CAT = DATA / "quickdraw_mini" / "simplified" / "cat.ndjson"
HTML = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>\n"


def zip_without_splits() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.npy", b"x")
        archive.writestr("readme.txt", b"y")
    return buffer.getvalue()


class Hostile(BaseHTTPRequestHandler):
    """GET /<mode>/<bucket path>: mode decides the answer (see each branch)."""

    def do_GET(self) -> None:
        mode, _, rest = self.path.lstrip("/").partition("/")
        server = self.server
        server.requests.append(self.path)
        if mode == "real":  # the genuine file
            self._send(SHEEP.read_bytes() if rest.endswith(".npz") else CAT.read_bytes())
        elif mode == "html":  # an error page with status 200
            self._send(HTML)
        elif mode == "nosplits":
            self._send(zip_without_splits())
        elif mode == "nodrawing":
            self._send(b'{"word": "cat", "key_id": "1"}\n' * 3)
        elif mode == "endless":  # no Content-Length, bytes until the client hangs up
            self.send_response(200)
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                while True:
                    self.wfile.write(chunk)
                    server.sent += len(chunk)
            except OSError:
                return
        elif mode == "huge":  # announces a terabyte
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            try:
                self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif mode == "drip":  # a byte every 0.3 s, forever within a timeout per read
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"{")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                return
        elif mode == "silent":  # connects, then never answers
            time.sleep(6)
        elif mode.startswith("hops"):  # /hopsN/...: N redirects, then the real file
            n = int(mode[4:])
            self._redirect(f"/{'real' if n == 1 else f'hops{n - 1}'}/{rest}")
        elif mode == "loop":
            self._redirect(self.path)
        elif mode == "tofile":
            self._redirect("file:///etc/passwd")
        elif mode == "toftp":
            self._redirect("ftp://127.0.0.1/sketchrnn/sheep.npz")
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    for name in ("SKETCH_MODEL_CACHE", "SKETCH_MODEL_DATA_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with local_server(Hostile, requests=[], sent=0) as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


class Hung(Exception):
    pass


def refused(server, cache, mode: str, fmt: str = "npz", name: str = "sheep",
            seconds: float = 30) -> str:
    """The DataFileError message of downloading `name` from /<mode>/, which must come within
    `seconds`; checks that nothing entered the cache."""
    def alarm(signum, frame):
        raise Hung(f"the download from /{mode}/ still runs after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with pytest.raises(DataFileError) as info:
            download.download([name], fmt, cache, f"{server.url}/{mode}", say=lambda _: None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not download.local_path(cache, name, fmt).exists()
    return str(info.value)


def test_the_genuine_files_still_download(server, cache):
    [npz] = download.download(["sheep"], "npz", cache, f"{server.url}/real", say=lambda _: None)
    [ndjson] = download.download(["cat"], "simplified", cache, f"{server.url}/real",
                                 say=lambda _: None)
    assert npz.read_bytes() == SHEEP.read_bytes() and ndjson.read_bytes() == CAT.read_bytes()


@pytest.mark.parametrize("mode, fmt, expected", [
    ("html", "npz", "it is not a zip file, so not an .npz"),
    ("html", "simplified", "line 1 is not a JSON object with a drawing"),
    ("html", "raw", "line 1 is not a JSON object with a drawing"),
    ("nosplits", "npz", "the .npz lacks test.npy, valid.npy"),
    ("nodrawing", "simplified", "line 1 is not a JSON object with a drawing"),
])
def test_content_that_is_not_what_it_claims_never_enters_the_cache(server, cache, mode, fmt,
                                                                   expected):
    name = "sheep" if fmt == "npz" else "cat"
    message = refused(server, cache, mode, fmt, name)
    assert expected in message and "nothing was kept" in message
    assert not list(cache.rglob("*.part"))
    # and the next run asks again rather than answering "cached"
    refused(server, cache, mode, fmt, name)
    assert len(server.requests) == 2


def test_a_body_without_content_length_stops_at_the_limit(server, cache, monkeypatch):
    monkeypatch.setitem(download.MAX_BYTES, "npz", 1 << 20)
    message = refused(server, cache, "endless")
    assert f"sent over {1 << 20} bytes" in message
    assert not list(cache.rglob("*.part"))
    time.sleep(0.5)
    assert server.sent < 16 << 20  # the client hung up near the limit


def test_an_announced_size_over_the_limit_is_refused_before_reading(server, cache):
    message = refused(server, cache, "huge")
    assert f"is {10**12} bytes, over the limit of {download.MAX_BYTES['npz']} bytes" in message
    assert not list(cache.rglob("*.part"))


def test_a_byte_at_a_time_meets_the_total_deadline(server, cache, monkeypatch):
    monkeypatch.setattr(download, "DEADLINE_SECONDS", 2.0)
    started = time.monotonic()
    message = refused(server, cache, "drip", "simplified", "cat")
    assert time.monotonic() - started < 10
    assert "took over 2 s" in message and "run the same command again to resume" in message
    part = download._part(download.local_path(cache, "cat", "simplified"))
    assert 1 <= part.stat().st_size < 1000  # what came is kept for the resume


def test_a_server_that_never_answers_times_out(server, cache, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 1.0)
    started = time.monotonic()
    message = refused(server, cache, "silent")
    assert time.monotonic() - started < 5
    assert "timed out" in message


def test_a_few_redirects_are_followed(server, cache):
    hops = f"{server.url}/hops{download.MAX_REDIRECTS}"
    [path] = download.download(["sheep"], "npz", cache, hops, say=lambda _: None)
    assert path.read_bytes() == SHEEP.read_bytes()
    assert len(server.requests) == download.MAX_REDIRECTS + 1


@pytest.mark.parametrize("mode, expected", [
    (f"hops{download.MAX_REDIRECTS + 1}", "redirects more than 5 times"),
    ("loop", "redirects more than 5 times, in a loop"),
    ("tofile", "not allowed"),
    ("toftp", "redirects to 'ftp://127.0.0.1/sketchrnn/sheep.npz', which is not an http"),
])
def test_redirects_too_many_or_off_http_are_refused(server, cache, mode, expected):
    message = refused(server, cache, mode)
    assert expected in message
    assert len(server.requests) <= download.MAX_REDIRECTS + 1


def test_fetch_takes_any_content_check(server, tmp_path):
    """As `models download` uses it: the check sees the complete .part, before the rename."""
    seen = []

    def must_be_json_model(part: Path) -> None:
        seen.append((part.name, part.read_bytes()))
        if not part.read_bytes().startswith(b"["):
            raise DataFileError("it is not a sketch-rnn-js model (a JSON list)")

    dest = tmp_path / "models" / "cat.gen.json"
    with pytest.raises(DataFileError, match=re.escape(
            "did not send cat.gen.json as it should be: it is not a sketch-rnn-js model")):
        download.fetch(f"{server.url}/html/cat.gen.json", dest, validate=must_be_json_model,
                       max_bytes=1 << 20, progress_label="cat.gen.json")
    assert seen == [("cat.gen.json.part", HTML)]
    assert not dest.exists() and not download._part(dest).exists()
    download.fetch(f"{server.url}/real/cat.ndjson", dest, validate=lambda part: None,
                   max_bytes=1 << 20)
    assert dest.read_bytes() == CAT.read_bytes()
    with pytest.raises(DataFileError, match="over the limit of 100 bytes"):
        download.fetch(f"{server.url}/real/x.npz", tmp_path / "x.npz", validate=lambda p: None,
                       max_bytes=100)
    with pytest.raises(DataFileError, match="is not an http:// or https:// address"):
        download.fetch("file:///etc/passwd", tmp_path / "passwd", validate=lambda p: None,
                       max_bytes=1 << 20)


def test_a_part_file_that_is_a_link_is_not_written_through(server, cache, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    part = download._part(download.local_path(cache, "sheep", "npz"))
    part.parent.mkdir(parents=True)
    part.symlink_to(victim)
    message = refused(server, cache, "real")
    assert "cannot write" in message
    assert victim.read_text() == "precious"
    assert server.requests == []

