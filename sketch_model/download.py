"""Download the official Quick, Draw! files of named categories into a local cache:
`python -m sketch_model data download cat "hot air balloon" --format npz`, and
`python -m sketch_model data list` for the 345 categories and what the cache holds.

The files come from the dataset's public bucket, or a mirror laid out like it (--base-url or
SKETCH_MODEL_DATA_URL): sketchrnn/<class>.npz, full/simplified/<class>.ndjson and
full/raw/<class>.ndjson. The cache (--cache, else SKETCH_MODEL_CACHE, else
~/.cache/sketch_model/quickdraw) holds them as <format>/<class>.<ext>. A download is written to
<file>.part and renamed only once it has every byte the server announced, so a file without
.part is whole; an interrupted download resumes from its .part with an HTTP Range request.
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import http.client
import os
import re
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from .errors import DISK_FULL, DataFileError

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset"
FORMATS = {"npz": ("sketchrnn", ".npz"),  # format: (folder in the bucket, file extension)
           "simplified": ("full/simplified", ".ndjson"),
           "raw": ("full/raw", ".ndjson")}
CATEGORIES: tuple[str, ...] = tuple(
    resources.files(__package__).joinpath("quickdraw_categories.txt").read_text().splitlines())
TIMEOUT_SECONDS = 60.0  # for connecting and for each read
CHUNK_BYTES = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def cache_dir(path: str | Path | None = None) -> Path:
    """The download folder: `path`, else $SKETCH_MODEL_CACHE, else
    ~/.cache/sketch_model/quickdraw."""
    chosen = path or os.environ.get("SKETCH_MODEL_CACHE")
    if chosen:
        return Path(chosen).expanduser()
    return Path.home() / ".cache" / "sketch_model" / "quickdraw"


def base_url(url: str | None = None) -> str:
    """The bucket's address: `url`, else $SKETCH_MODEL_DATA_URL, else the official bucket."""
    url = (url or os.environ.get("SKETCH_MODEL_DATA_URL") or DEFAULT_BASE_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataFileError(f"the data URL {url!r} is not an http:// or https:// address")
    return url


def _folded(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def category(name: str) -> str:
    """The official name of a category, forgiving case, underscores and extra spaces."""
    if name in CATEGORIES:
        return name
    by_folded = {_folded(c): c for c in CATEGORIES}
    if _folded(name) in by_folded:
        return by_folded[_folded(name)]
    close = [by_folded[c] for c in difflib.get_close_matches(_folded(name), list(by_folded), n=3)]
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "`data list` shows all 345"
    raise DataFileError(f"{name!r} is not a Quick, Draw! category; {hint}")


def remote_url(name: str, fmt: str, base: str) -> str:
    folder, ext = FORMATS[fmt]
    return f"{base}/{folder}/{quote(name + ext)}"


def local_path(cache: Path, name: str, fmt: str) -> Path:
    return cache / fmt / (name + FORMATS[fmt][1])


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def download(names: list[str], fmt: str = "npz", cache: str | Path | None = None,
             url: str | None = None, say: Callable[[str], None] = print) -> list[Path]:
    """The local paths of the `fmt` files of categories `names`, fetching those not yet in the
    cache. Every name is checked before anything is fetched."""
    if fmt not in FORMATS:
        raise DataFileError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    official = [category(name) for name in names]
    base, root = base_url(url), cache_dir(cache)
    paths = []
    for name in official:
        path = local_path(root, name, fmt)
        if path.exists():
            say(f"cached: {path}")
        else:
            fetch(remote_url(name, fmt, base), path)
            say(f"downloaded: {path}")
        paths.append(path)
    return paths


def fetch(url: str, dest: Path) -> None:
    """Download `url` to `dest` through `dest`.part, resuming what an earlier attempt left
    there; raises DataFileError (keeping the .part) when the transfer fails or comes up short."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part(dest)
    with open(part, "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataFileError(f"another download of {dest.name} into {dest.parent} "
                                "is in progress") from None
        if dest.exists():  # the download that held the lock just finished it
            part.unlink()
            return
        try:
            _transfer(url, handle, dest.name)
        except OSError as err:  # writing the .part failed
            hint = "the disk is full" if err.errno in DISK_FULL else err.strerror or str(err)
            raise DataFileError(f"cannot write {part}: {hint}; "
                                "run the same command again to resume") from None
    os.replace(part, dest)


def _transfer(url: str, handle: BinaryIO, label: str) -> None:
    """Append the rest of `url` to `handle`, or all of it if the server sends the whole file."""
    offset = os.fstat(handle.fileno()).st_size
    with _open(url, offset) as response:
        start, total = _start_and_total(response, offset, url)
        if start == 0:
            handle.truncate(0)
            handle.seek(0)
        with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=label, disable=None) as bar:
            while chunk := _read(response, label):
                handle.write(chunk)
                bar.update(len(chunk))
    handle.flush()
    size = os.fstat(handle.fileno()).st_size
    if total is not None and size != total:
        raise DataFileError(f"the download of {label} stopped at {size} of {total} bytes; "
                            "run the same command again to resume")


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    """GET `url` from byte `offset` on; a range the server cannot serve (the .part is as long
    as the file, or longer) is given up for the whole file."""
    headers = {"User-Agent": "sketch_model"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=TIMEOUT_SECONDS)
    except HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            return _open(url, 0)
        if err.code == 404:
            raise DataFileError(f"{url} does not exist (HTTP 404); is the data URL right?") from None
        raise DataFileError(f"the server refused {url}: HTTP {err.code} {err.reason}") from None
    except (URLError, OSError, http.client.HTTPException) as err:
        raise DataFileError(f"cannot reach {url}: {getattr(err, 'reason', err)}") from None


def _start_and_total(response: http.client.HTTPResponse, offset: int,
                     url: str) -> tuple[int, int | None]:
    """The byte the body starts at and the file's full size (None when the server omits it)."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match[1]) != offset:
            raise DataFileError(f"{url} answered the request for bytes {offset}- with the range "
                                f"{response.headers.get('Content-Range')!r}")
        return offset, None if match[2] == "*" else int(match[2])
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _read(response: http.client.HTTPResponse, label: str) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as err:
        raise DataFileError(f"the connection broke while downloading {label} ({err}); "
                            "run the same command again to resume") from None


def local_formats(cache: Path, name: str) -> dict[str, str]:
    """Per format, whether the cache holds `name`'s file: "yes", "partial" (a .part) or "-"."""
    states = {}
    for fmt in FORMATS:
        path = local_path(cache, name, fmt)
        states[fmt] = "yes" if path.exists() else "partial" if _part(path).exists() else "-"
    return states


def list_categories(cache: str | Path | None = None, say: Callable[[str], None] = print) -> None:
    """Print every category with the formats the cache holds, then a summary line."""
    root = cache_dir(cache)
    width = max(map(len, CATEGORIES)) + 2
    say("category".ljust(width) + "".join(fmt.ljust(12) for fmt in FORMATS).rstrip())
    held = 0
    for name in CATEGORIES:
        states = local_formats(root, name)
        held += any(state != "-" for state in states.values())
        say(name.ljust(width) + "".join(state.ljust(12) for state in states.values()).rstrip())
    say(f"{len(CATEGORIES)} categories; {held} with files in {root}")


def _download_command(args: argparse.Namespace) -> None:
    download(args.classes, args.format, args.cache, args.base_url)


def _list_command(args: argparse.Namespace) -> None:
    list_categories(args.cache)


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `data download` and `data list` on the command line's subparsers."""
    data = subparsers.add_parser("data", help="download Quick, Draw! files; "
                                              "list the categories and the cache")
    commands = data.add_subparsers(dest="data_command", required=True)
    cache_help = ("download folder (default: $SKETCH_MODEL_CACHE, "
                  "else ~/.cache/sketch_model/quickdraw)")

    p = commands.add_parser("download", help="fetch the official files of Quick, Draw! categories")
    p.add_argument("classes", nargs="+", metavar="CLASS",
                   help='category names, e.g. cat "hot air balloon"')
    p.add_argument("--format", default="npz", choices=list(FORMATS),
                   help="npz: sketch-rnn stroke-3 splits; simplified or raw: Quick, Draw! ndjson")
    p.add_argument("--cache", help=cache_help)
    p.add_argument("--base-url", help="the bucket or a mirror (default: "
                                      f"$SKETCH_MODEL_DATA_URL, else {DEFAULT_BASE_URL})")
    p.set_defaults(run=_download_command)

    p = commands.add_parser("list", help="the 345 categories and the formats the cache holds")
    p.add_argument("--cache", help=cache_help)
    p.set_defaults(run=_list_command)
