"""Tests of sketch_model.download against a local HTTP server on 127.0.0.1 that serves real
Quick, Draw! files laid out like the dataset's bucket. No other network is used."""

from __future__ import annotations

import argparse
import fcntl
import shutil
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

import pytest

from sketch_model import datasets, download
from sketch_model.errors import DataFileError
from tests.helpers import local_server

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIMPLIFIED = DATA / "quickdraw_mini" / "simplified"
# bucket path -> the real file it serves
BUCKET_FILES = {
    "sketchrnn/sheep.npz": DATA / "aaron_sheep.npz",
    "full/simplified/cat.ndjson": SIMPLIFIED / "cat.ndjson",
    "full/simplified/The Mona Lisa.ndjson": SIMPLIFIED / "The Mona Lisa.ndjson",
    "full/raw/The Mona Lisa.ndjson": DATA / "quickdraw_mini" / "raw" / "The_Mona_Lisa.ndjson",
}


class BucketHandler(BaseHTTPRequestHandler):
    """GET of the files under server.root, honouring "Range: bytes=N-" unless
    server.ignore_range; with server.drop_after set, it sends that fraction of the body (under
    a Content-Length for all of it) and closes the connection."""

    def do_GET(self) -> None:
        server = self.server
        wanted = self.headers.get("Range")
        server.requests.append((self.path, wanted))
        path = server.root / unquote(self.path).lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if wanted and not server.ignore_range:
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_after is not None:
            self.wfile.write(body[:int(len(body) * server.drop_after)])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    for name in ("SKETCH_MODEL_CACHE", "SKETCH_MODEL_DATA_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket(tmp_path):
    """A local server of a bucket holding BUCKET_FILES; .url is its base URL."""
    root = tmp_path / "bucket"
    for name, source in BUCKET_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / name)
    with local_server(BucketHandler, root=root, requests=[], ignore_range=False,
                      drop_after=None) as server:
        yield server


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def run_cli(argv: list[str]) -> None:
    """Parse and run `argv` the way sketch_model.cli does, with only the data commands."""
    parser = argparse.ArgumentParser()
    add = parser.add_subparsers(dest="command", required=True)
    download.add_data_commands(add)
    args = parser.parse_args(argv)
    args.run(args)


def test_the_345_categories():
    names = download.CATEGORIES
    assert len(names) == len(set(names)) == 345
    assert {p.stem for p in SIMPLIFIED.glob("*.ndjson")} | {"zigzag"} == set(names)


@pytest.mark.parametrize("fmt, name, bucket_path", [
    ("npz", "sheep", "sketchrnn/sheep.npz"),
    ("simplified", "The Mona Lisa", "full/simplified/The Mona Lisa.ndjson"),
    ("raw", "The Mona Lisa", "full/raw/The Mona Lisa.ndjson"),
])
def test_download_each_format(bucket, cache, fmt, name, bucket_path):
    [path] = download.download([name], fmt, cache, bucket.url, say=lambda _: None)
    assert path == cache / fmt / Path(bucket_path).name
    assert path.read_bytes() == BUCKET_FILES[bucket_path].read_bytes()
    assert not list(cache.rglob("*.part"))
    assert bucket.requests == [("/" + bucket_path.replace(" ", "%20"), None)]
    assert datasets.load_dataset([path], 250).train  # the library reads what it downloaded


def test_the_cli_downloads_and_then_hits_the_cache(bucket, cache, capsys):
    argv = ["data", "download", "cat", "the_mona_lisa", "--format", "simplified",
            "--cache", str(cache), "--base-url", bucket.url + "/"]
    run_cli(argv)
    assert len(bucket.requests) == 2
    assert "downloaded:" in capsys.readouterr().out
    run_cli(argv)
    assert len(bucket.requests) == 2  # no request the second time
    out = capsys.readouterr().out.splitlines()
    assert out == [f"cached: {cache / 'simplified' / 'cat.ndjson'}",
                   f"cached: {cache / 'simplified' / 'The Mona Lisa.ndjson'}"]


def test_environment_variables_set_the_url_and_the_cache(bucket, cache, monkeypatch):
    monkeypatch.setenv("SKETCH_MODEL_DATA_URL", bucket.url)
    monkeypatch.setenv("SKETCH_MODEL_CACHE", str(cache))
    [path] = download.download(["sheep"], say=lambda _: None)
    assert path == cache / "npz" / "sheep.npz" and path.exists()
    monkeypatch.delenv("SKETCH_MODEL_CACHE")
    assert download.cache_dir() == Path.home() / ".cache" / "sketch_model" / "quickdraw"
    monkeypatch.delenv("SKETCH_MODEL_DATA_URL")
    assert download.base_url() == "https://storage.googleapis.com/quickdraw_dataset"


def test_data_list_shows_every_category_and_the_cache(bucket, cache, capsys):
    download.download(["sheep"], "npz", cache, bucket.url, say=lambda _: None)
    download.download(["cat"], "simplified", cache, bucket.url, say=lambda _: None)
    (cache / "raw").mkdir()
    (cache / "raw" / "cat.ndjson.part").write_bytes(b"{")
    run_cli(["data", "list", "--cache", str(cache)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["category", "npz", "simplified", "raw"]
    assert len(lines) == 1 + 345 + 1
    rows = {line[:25].strip(): line[25:].split() for line in lines[1:-1]}
    assert set(rows) == set(download.CATEGORIES)
    assert rows["sheep"] == ["yes", "-", "-"]
    assert rows["cat"] == ["-", "yes", "partial"]
    assert rows["zigzag"] == ["-", "-", "-"]
    assert lines[-1] == f"345 categories; 2 with files in {cache}"


def test_an_unknown_class_is_refused_before_any_request(bucket, cache):
    with pytest.raises(DataFileError,
                       match="'sheeep' is not a Quick, Draw! category; did you mean 'sheep'"):
        download.download(["cat", "sheeep"], "npz", cache, bucket.url)
    with pytest.raises(DataFileError, match="'qwertyuiop' is not .* `data list` shows all 345"):
        download.download(["qwertyuiop"], "npz", cache, bucket.url)
    assert bucket.requests == []
    assert not cache.exists()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/quickdraw", "127.0.0.1:8000/quickdraw"])
def test_a_base_url_that_is_not_http_is_refused(cache, url):
    with pytest.raises(DataFileError, match="is not an http:// or https:// address"):
        download.download(["sheep"], "npz", cache, url)


def test_a_missing_file_and_an_unreachable_server_are_clear_errors(bucket, cache):
    with pytest.raises(DataFileError, match=r"sketchrnn/cat\.npz does not exist \(HTTP 404\)"):
        download.download(["cat"], "npz", cache, bucket.url)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(DataFileError, match="cannot reach"):
        download.download(["sheep"], "npz", cache, f"http://127.0.0.1:{port}")
    assert not (cache / "npz" / "sheep.npz").exists()


def test_a_dropped_connection_is_resumed_with_a_range_request(bucket, cache):
    expected = BUCKET_FILES["sketchrnn/sheep.npz"].read_bytes()
    path = cache / "npz" / "sheep.npz"
    bucket.drop_after = 0.5
    with pytest.raises(DataFileError, match=f"stopped at {len(expected) // 2} of {len(expected)} "
                                            "bytes; run the same command again to resume"):
        download.download(["sheep"], "npz", cache, bucket.url)
    assert not path.exists()
    assert download._part(path).read_bytes() == expected[:len(expected) // 2]
    bucket.drop_after = None
    download.download(["sheep"], "npz", cache, bucket.url, say=lambda _: None)
    assert bucket.requests[-1] == ("/sketchrnn/sheep.npz", f"bytes={len(expected) // 2}-")
    assert path.read_bytes() == expected
    assert not download._part(path).exists()


def test_a_server_that_ignores_range_gets_the_whole_file_again(bucket, cache):
    expected = BUCKET_FILES["sketchrnn/sheep.npz"].read_bytes()
    path = cache / "npz" / "sheep.npz"
    path.parent.mkdir(parents=True)
    download._part(path).write_bytes(b"not the start of the file")
    bucket.ignore_range = True
    download.download(["sheep"], "npz", cache, bucket.url, say=lambda _: None)
    assert bucket.requests == [("/sketchrnn/sheep.npz", "bytes=25-")]
    assert path.read_bytes() == expected


def test_a_part_as_long_as_the_file_is_fetched_again(bucket, cache):
    # the server cannot serve the range (HTTP 416), so the whole file is asked for
    expected = BUCKET_FILES["full/simplified/cat.ndjson"].read_bytes()
    path = cache / "simplified" / "cat.ndjson"
    path.parent.mkdir(parents=True)
    download._part(path).write_bytes(b"x" * len(expected))
    download.download(["cat"], "simplified", cache, bucket.url, say=lambda _: None)
    assert [r for _, r in bucket.requests] == [f"bytes={len(expected)}-", None]
    assert path.read_bytes() == expected


def test_a_download_already_in_progress_is_not_joined(bucket, cache):
    path = cache / "npz" / "sheep.npz"
    path.parent.mkdir(parents=True)
    with open(download._part(path), "ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DataFileError, match="another download of sheep.npz .* is in progress"):
            download.download(["sheep"], "npz", cache, bucket.url)
    assert bucket.requests == []
