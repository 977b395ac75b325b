"""Download the official Quick, Draw! files of named categories into a local cache:
`python -m sketch_model data download cat "hot air balloon" --format npz`, and
`python -m sketch_model data list` for the 345 categories and what the cache holds.

The files come from the dataset's public bucket, or a mirror laid out like it (--base-url or
SKETCH_MODEL_DATA_URL): sketchrnn/<class>.npz, full/simplified/<class>.ndjson and
full/raw/<class>.ndjson. The cache (--cache, else SKETCH_MODEL_CACHE, else
~/.cache/sketch_model/quickdraw) holds them as <format>/<class>.<ext>. A download is written to
<file>.part and renamed only once it has every byte the server announced and its content is
what it claims to be (an .npz with the three splits, ndjson lines of drawings), so a file
without .part is whole; an interrupted download resumes from its .part with an HTTP Range
request. `fetch` does this for any file, with the caller's size limit and content check.
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import http.client
import json
import os
import re
import stat
import time
import zipfile
from functools import partial
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from tqdm import tqdm

from .datasets import MAX_NPZ_BYTES
from .errors import DISK_FULL, DataFileError
from .quickdraw import bounded_lines

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset"
FORMATS = {"npz": ("sketchrnn", ".npz"),  # format: (folder in the bucket, file extension)
           "simplified": ("full/simplified", ".ndjson"),
           "raw": ("full/raw", ".ndjson")}
CATEGORIES: tuple[str, ...] = tuple(
    resources.files(__package__).joinpath("quickdraw_categories.txt").read_text().splitlines())
TIMEOUT_SECONDS = 60.0  # for connecting and for each read
DEADLINE_SECONDS = 3600.0  # for a whole download (what came is kept: the next run resumes)
MAX_REDIRECTS = 5
# The largest file of each format accepted: Google's are well under these.
MAX_BYTES = {"npz": MAX_NPZ_BYTES, "simplified": 2 << 30, "raw": 8 << 30}
CHUNK_BYTES = 1 << 16
Progress = Callable[[int, "int | None"], None]  # (bytes so far, total or None)
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
             url: str | None = None, say: Callable[[str], None] = print,
             progress: Callable[[str, int, int | None], None] | None = None) -> list[Path]:
    """The local paths of the `fmt` files of categories `names`, fetching those not yet in the
    cache. Every name is checked before anything is fetched. `progress(name, bytes, total)`
    is called as each file comes (total None when the server does not say)."""
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
            fetch(remote_url(name, fmt, base), path, max_bytes=MAX_BYTES[fmt],
                  validate=check_npz if fmt == "npz" else check_ndjson,
                  progress=None if progress is None else partial(progress, name))
            say(f"downloaded: {path}")
        paths.append(path)
    return paths


def fetch(url: str, dest: Path, *, validate: Callable[[Path], None], max_bytes: int,
          progress_label: str | None = None, progress: Progress | None = None) -> None:
    """Download the http(s) `url` to `dest` through `dest`.part, resuming what an earlier
    attempt left there with a Range request.

    The body may not exceed `max_bytes` (checked against Content-Length first, then as it
    comes); the connection and each read time out after TIMEOUT_SECONDS and the whole
    transfer after DEADLINE_SECONDS; redirects go to http(s) only, at most MAX_REDIRECTS.
    `progress(bytes so far, total or None)` is called after each chunk (for a progress bar
    other than the terminal's). Once complete, `validate(part)` checks the content and raises DataFileError if it is not
    what it claims to be; only then is it renamed to `dest`. Raises DataFileError: keeping
    the .part when the transfer breaks (run again to resume), deleting it when the content is
    refused.
    """
    label = progress_label or dest.name
    if urlsplit(url).scheme not in ("http", "https"):
        raise DataFileError(f"{url!r} is not an http:// or https:// address")
    part = _part(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise DataFileError(f"cannot write {part}: {err.strerror or err}") from None
    with os.fdopen(fd, "ab") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataFileError(f"{part} is not a regular file; remove it and run again")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataFileError(f"another download of {dest.name} into {dest.parent} "
                                "is in progress") from None
        if dest.exists():  # the download that held the lock just finished it
            part.unlink()
            return
        try:
            _transfer(url, handle, label, max_bytes, progress)
        except _Refused as err:
            part.unlink(missing_ok=True)
            raise DataFileError(f"{err}; nothing was kept") from None
        except OSError as err:  # writing the .part failed
            hint = "the disk is full" if err.errno in DISK_FULL else err.strerror or str(err)
            raise DataFileError(f"cannot write {part}: {hint}; "
                                "run the same command again to resume") from None
        try:
            validate(part)
        except DataFileError as err:
            part.unlink(missing_ok=True)
            raise DataFileError(f"{url} did not send {label} as it should be: {err}; "
                                "nothing was kept") from None
    os.replace(part, dest)


class _Refused(DataFileError):
    """A download that must not be kept or resumed: over the size limit, or redirected to an
    address that is not allowed."""


def _transfer(url: str, handle: BinaryIO, label: str, max_bytes: int,
              progress: Progress | None = None) -> None:
    """Append the rest of `url` to `handle`, or all of it if the server sends the whole file."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    offset = os.fstat(handle.fileno()).st_size
    with _open(url, offset) as response:
        start, total = _start_and_total(response, offset, url)
        if total is not None and total > max_bytes:
            raise _Refused(f"{url} is {total} bytes, over the limit of {max_bytes} bytes")
        if start == 0:
            handle.truncate(0)
            handle.seek(0)
        size = start
        with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=label, disable=None) as bar:
            while chunk := _read(response, label):
                size += len(chunk)
                if size > max_bytes:
                    raise _Refused(f"{url} sent over {max_bytes} bytes, the limit for {label}")
                handle.write(chunk)
                bar.update(len(chunk))
                if progress is not None:
                    progress(size, total)
                if time.monotonic() > deadline:
                    handle.flush()
                    raise DataFileError(f"the download of {label} took over "
                                        f"{DEADLINE_SECONDS:.0f} s ({size} bytes so far); "
                                        "run the same command again to resume")
    handle.flush()
    size = os.fstat(handle.fileno()).st_size
    if total is not None and size != total:
        raise DataFileError(f"the download of {label} stopped at {size} of {total} bytes; "
                            "run the same command again to resume")


class _Redirects(HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, to http(s) addresses only."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise _Refused(f"{req.full_url} redirects to {newurl!r}, which is not an http:// or "
                           "https:// address")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    """GET `url` from byte `offset` on; a range the server cannot serve (the .part is as long
    as the file, or longer) is given up for the whole file."""
    headers = {"User-Agent": "sketch_model"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return build_opener(_Redirects).open(Request(url, headers=headers),
                                             timeout=TIMEOUT_SECONDS)
    except HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            return _open(url, 0)
        if err.code == 404:
            raise DataFileError(f"{url} does not exist (HTTP 404); is the data URL right?") from None
        if 300 <= err.code < 400:
            raise DataFileError(f"{url} redirects more than {MAX_REDIRECTS} times, in a loop, or "
                                f"to an address that is not allowed (HTTP {err.code})") from None
        raise DataFileError(f"the server refused {url}: HTTP {err.code} {err.reason}") from None
    except (URLError, OSError, http.client.HTTPException) as err:
        raise DataFileError(f"cannot reach {url}: {getattr(err, 'reason', err)}") from None


def _start_and_total(response: http.client.HTTPResponse, offset: int,
                     url: str) -> tuple[int, int | None]:
    """The byte the body starts at and the file's full size (None when the server omits it)."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if not match or int(match[1]) != offset:
            raise DataFileError(f"{url} answered the request for bytes {offset}- with the "
                                f"range {response.headers.get('Content-Range')!r}")
        return offset, None if match[2] == "*" else int(match[2])
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() and len(length) < 20 else None


def _read(response: http.client.HTTPResponse, label: str) -> bytes:
    """What the next read brings (read1: a slow server cannot hold a read open for long)."""
    try:
        return response.read1(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as err:
        raise DataFileError(f"the connection broke while downloading {label} ({err}); "
                            "run the same command again to resume") from None


def check_npz(path: Path) -> None:
    """Raise DataFileError unless `path` is a sketch-rnn .npz: a zip holding train, valid and
    test arrays (datasets.read_npz checks the arrays themselves when the file is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DataFileError(f"it is not a zip file, so not an .npz ({err}); "
                            "an error page?") from None
    missing = sorted({f"{split}.npy" for split in ("train", "valid", "test")} - names)
    if missing:
        raise DataFileError(f"the .npz lacks {', '.join(missing)}")


def check_ndjson(path: Path, lines: int = 100) -> None:
    """Raise DataFileError unless the first `lines` lines of `path` (all, if fewer) are JSON
    objects with a `drawing` list, as in Quick, Draw! ndjson files."""
    seen = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(bounded_lines(handle), 1):
            if line is not None and not line.strip():
                continue
            try:
                record = json.loads(line) if line is not None else None
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("drawing"), list):
                raise DataFileError(f"line {number} is not a JSON object with a drawing "
                                    "(an error page?)")
            seen += 1
            if seen == lines:
                return
    if not seen:
        raise DataFileError("it holds no drawing")


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
