"""Hardening of the app (issue 26): upload names and run names the file system cannot hold,
the same bytes uploaded twice, and hostile files where the Train page reads a job's state."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app"
pytestmark = pytest.mark.usefixtures("app_dirs")


def train_page() -> AppTest:
    at = AppTest.from_file(str(APP / "Home.py"), default_timeout=120)
    at.session_state["model_choice"] = "tiny_vae"
    at.run()
    at.switch_page("pages/4_Train.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def cat_file(key: str) -> bytes:
    line = {"word": "cat", "key_id": key, "recognized": True, "countrycode": "GB",
            "timestamp": "2017-03-01", "drawing": [[[10, 60, 110], [20, 80, 20]]]}
    return (json.dumps(line) + "\n").encode()


def test_the_same_bytes_uploaded_under_two_names_both_work(app_dirs):
    content = cat_file("same-bytes")
    at = train_page()
    at.file_uploader(key="train_uploads").set_value(
        [("cats.ndjson", content, "application/x-ndjson"),
         ("more cats.ndjson", content, "application/x-ndjson")]).run()
    assert not at.exception and not at.sidebar.error, texts(at.sidebar.error)
    folder = app_dirs["SKETCH_RUNS_DIR"] / "uploads" / hashlib.sha256(content).hexdigest()[:16]
    assert [p.name for p in folder.iterdir()] == ["cats.ndjson"]
    assert (folder / "cats.ndjson").read_bytes() == content


class Upload:
    """What st.file_uploader returns, as save_uploads uses it."""

    def __init__(self, name: str, content: bytes) -> None:
        self.name, self.content = name, content

    def getvalue(self) -> bytes:
        return self.content


def test_save_uploads_gives_one_existing_file_for_the_same_bytes_twice():
    import common

    content = cat_file("same-bytes-direct")
    paths = common.save_uploads([Upload("a.ndjson", content), Upload("b.ndjson", content),
                                 Upload("a.ndjson", content)])
    assert len(paths) == 1 and Path(paths[0]).read_bytes() == content


@pytest.mark.parametrize("name", ["é" * 200 + ".ndjson", "x" * 300 + ".ndjson",
                                  "../../escape.ndjson", "a\\..\\b.ndjson",
                                  "con:tr?ol*|<>\x7f.ndjson", "..ndjson", "  .ndjson"])
def test_upload_names_the_file_system_cannot_hold_are_saved_under_safe_names(app_dirs, name):
    content = cat_file(f"name-{name!r}")
    at = train_page()
    at.file_uploader(key="train_uploads").set_value(
        [(name, content, "application/x-ndjson")]).run()
    assert not at.exception and not at.sidebar.error, texts(at.sidebar.error)
    folder = app_dirs["SKETCH_RUNS_DIR"] / "uploads" / hashlib.sha256(content).hexdigest()[:16]
    [saved] = folder.iterdir()
    assert len(os.fsencode(saved.name)) <= 120 and saved.suffix == ".ndjson"
    assert saved.read_bytes() == content


def test_upload_name_keeps_a_readable_stem_and_the_extension():
    import common

    assert common.upload_name("cat.ndjson") == "cat.ndjson"
    assert common.upload_name("hot air balloon.NDJSON") == "hot air balloon.ndjson"
    assert common.upload_name("sheep.npz") == "sheep.npz"
    assert common.upload_name("/etc/passwd") == "passwd.npz"
    assert common.upload_name("") == "upload.npz"
    long = common.upload_name("ü" * 300 + ".npz")
    assert long.endswith(".npz") and len(long.encode()) <= 104


@pytest.mark.parametrize("name", ["r" * 300, "é" * 60])
def test_a_run_name_too_long_for_the_file_system_gives_a_message(app_dirs, name):
    at = train_page()
    at.text_input(key="train_name").set_value(name).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert "run name is too long" in texts(at.error)
    assert not list(app_dirs["SKETCH_RUNS_DIR"].glob("r" * 50 + "*"))


@pytest.mark.parametrize("what", ["fifo", "dev_zero", "garbage"])
def test_a_hostile_job_state_reads_as_no_state_and_never_blocks(tmp_path, monkeypatch, what):
    import jobs

    monkeypatch.setattr(jobs, "RUNS_DIR", tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    paths = [tmp_path / jobs.POINTER, run / "status.json", run / "log.csv"]
    for path in paths:
        if what == "fifo":
            os.mkfifo(path)
        elif what == "dev_zero":
            path.symlink_to("/dev/zero")
        elif path.suffix == ".csv":  # a field over the csv module's limit
            path.write_text("step,loss\n1," + "x" * 200_000 + "\n")
        else:
            path.write_text('{"run_dir": 3, "pid": "x", "state": "dancing"}')

    def hung(signum, frame):
        raise AssertionError("reading the job's state blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        assert jobs.current_job() is None
        assert jobs.read_status(run) == {}
        assert jobs.read_log(run) == {}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
