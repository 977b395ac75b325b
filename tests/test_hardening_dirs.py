"""Hardening, round two (issue 26): the files of run and model directories, the trainer's
writes, stops, settings, output paths and per-drawing limits.

Every file of a run or model directory is read only when it is a regular file within a size
limit, and JSON files are checked field by field; the trainer's writes never follow a link and
never lose the old content; a stop ends a process stuck writing its output; every --set value
and every output path is checked before any work; a drawing's points are limited as a whole.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sketch_model import HParams, ModelFileError, SketchError, load_model
from sketch_model import cli, datasets, files, quickdraw
from sketch_model import train as train_module
from sketch_model.errors import DataFileError, TrainingError
from sketch_model.model import build_model

ROOT = Path(__file__).resolve().parents[1]
SHEEP = ROOT / "assets" / "data" / "aaron_sheep.npz"
TINY = HParams(dec_rnn_size=32, enc_rnn_size=16, z_size=8, num_mixture=3, batch_size=8,
               max_seq_len=20)
TINY_SET = ["dec_rnn_size=32", "enc_rnn_size=16", "z_size=8", "num_mixture=3", "batch_size=8",
            "save_every=2", "bucket_width=250"]
TINY_TRAIN = [arg for value in TINY_SET for arg in ("--set", value)]


def quietly(*args, **kwargs) -> None:
    pass


class Hung(Exception):
    pass


def within(seconds: float, call, *args):
    """call(*args), which must return (or raise) within `seconds`: a read that blocks on a FIFO
    is ended by SIGALRM and fails the test. Returns what the call raised, or None."""
    def alarm(signum, frame):
        raise Hung(f"{call.__name__} still runs after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        call(*args)
    except Hung:
        raise
    except Exception as err:  # handed to the test
        return err
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return None


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_directory(path: Path) -> None:
    path.mkdir()


def link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def make_sparse_9_gib(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(9 << 30)


HOSTILE = {"a FIFO": make_fifo, "a directory": make_directory,
           "a link to /dev/zero": link_to_dev_zero, "a 9 GiB sparse file": make_sparse_9_gib}


def replace_with(path: Path, kind: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    HOSTILE[kind](path)


# --- model directories ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A complete model directory of a tiny untrained VAE, with a card (best.json, eval.json)."""
    path = tmp_path_factory.mktemp("tiny")
    train_module.save_model(path, build_model(TINY))
    TINY.save(path / "hparams.json")
    (path / "dataset.json").write_text(json.dumps({"scale_factor": 15.0, "sources": ["x.npz"]}))
    (path / "best.json").write_text(json.dumps({"step": 10, "valid_loss": 0.5}))
    (path / "eval.json").write_text(json.dumps({"loss": 0.5, "n": 300, "split": "test"}))
    return path


@pytest.fixture
def model_dir(tiny_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_dir, tmp_path / "model"))


def test_the_tiny_model_directory_loads_with_its_card(tiny_dir):
    sketcher = load_model(tiny_dir)
    assert sketcher.card["best"]["step"] == 10 and sketcher.card["eval"]["n"] == 300


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("name", ["hparams.json", "dataset.json", "best.json", "eval.json",
                                  "model.keras"])
def test_files_of_a_model_directory_that_are_not_regular_files_are_refused(model_dir, name, kind):
    replace_with(model_dir / name, kind)
    error = within(60, load_model, model_dir)
    assert isinstance(error, ModelFileError), repr(error)
    assert name in str(error)
    expected = "over the limit" if "sparse" in kind else "not a regular file"
    assert expected in str(error)


BAD_FIELDS = [
    ("dataset.json", {"scale_factor": True}, "scale_factor"),
    ("dataset.json", {"scale_factor": 15.0, "sources": "x.npz"}, "sources"),
    ("dataset.json", {"scale_factor": 15.0, "streamed": "yes"}, "streamed"),
    ("best.json", {"step": -1, "valid_loss": 0.5}, "step"),
    ("best.json", {"step": 1.5, "valid_loss": 0.5}, "step"),
    ("best.json", {"step": True, "valid_loss": 0.5}, "step"),
    ("best.json", {"step": 3, "valid_loss": float("nan")}, "valid_loss"),
    ("best.json", {"step": 3, "valid_loss": "low"}, "valid_loss"),
    ("best.json", {"step": 3}, "valid_loss"),
    ("best.json", [3, 0.5], "JSON object"),
    ("eval.json", {"loss": "low"}, "loss"),
    ("eval.json", {"loss": float("inf")}, "loss"),
    ("eval.json", {"n": -3}, "n"),
    ("eval.json", None, "JSON object"),
    ("hparams.json", {"batch_size": 2.5}, "batch_size"),
    ("hparams.json", {"batch_size": True}, "batch_size"),
    ("hparams.json", {"learning_rate": float("nan")}, "learning_rate"),
    ("hparams.json", {"grad_clip": 0}, "grad_clip"),
    ("hparams.json", {"num_steps": -5}, "num_steps"),
    ("hparams.json", {"dec_rnn_size": 10**9}, "dec_rnn_size"),
    ("hparams.json", {"conditional": "yes"}, "conditional"),
    ("hparams.json", {"seed": -1}, "seed"),
    ("hparams.json", {"format_version": True}, "format version True"),
]


@pytest.mark.parametrize("name, change, field", BAD_FIELDS,
                         ids=[f"{n}-{f}-{i}" for i, (n, _, f) in enumerate(BAD_FIELDS)])
def test_json_fields_of_the_wrong_type_or_range_are_named(model_dir, name, change, field):
    path = model_dir / name
    if isinstance(change, dict) and name == "hparams.json":
        change = {**json.loads(path.read_text()), **change}
    path.write_text(json.dumps(change))
    with pytest.raises(ModelFileError) as info:
        load_model(model_dir)
    message = str(info.value)
    assert name in message and field in message, message


def test_json_nested_too_deep_or_not_utf8_is_refused(model_dir):
    for content in (b"[" * 100_000 + b"]" * 100_000, b'{"scale_factor": "\xff"}'):
        (model_dir / "dataset.json").write_bytes(content)
        with pytest.raises(ModelFileError, match="dataset.json is not valid JSON"):
            load_model(model_dir)


# --- the reader itself ------------------------------------------------------------------------

@pytest.mark.parametrize("field, good, bad", [
    (files.Field(int, low=0), [0, 7, 10**15], [-1, 1.0, True, "3", None, [1]]),
    (files.Field(float, low=1e-6), [1, 2.5, 1e300], [0, 1e-9, float("nan"), float("inf"),
                                                     False, "2.5"]),
    (files.Field(str, nullable=True), ["x", "", None], [1, ["x"]]),
    (files.Field(str, choices=("running", "failed")), ["running"], ["stopped", 1]),
    (files.Field(bool), [True, False], [1, 0, "true", None]),
])
def test_schema_fields_accept_only_their_type_and_range(field, good, bad):
    assert all(field.accepts(value) for value in good)
    assert not any(field.accepts(value) for value in bad)


@pytest.mark.parametrize("error", [ModelFileError, TrainingError])
def test_the_reader_raises_the_callers_error_naming_file_and_field(tmp_path, error):
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"state": "dancing", "step": 1, "steps": 2}))
    with pytest.raises(error, match=r"status\.json has state 'dancing', not one of"):
        files.read_json(path, files.STATUS_SCHEMA, error)
    path.write_text(json.dumps({"state": "running", "step": 1}))
    with pytest.raises(error, match=r"status\.json lacks the field 'steps'"):
        files.read_json(path, files.STATUS_SCHEMA, error)
    with pytest.raises(error, match="over the limit of 10 bytes"):
        files.read_bytes(path, 10, error)
    with pytest.raises(error, match="is missing"):
        files.read_bytes(tmp_path / "nothing.json", 10, error)


def test_appending_never_goes_through_a_link_or_into_a_fifo(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "link.csv").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo.csv")
    for name in ("link.csv", "fifo.csv"):
        error = within(10, files.open_append, tmp_path / name)
        assert isinstance(error, TrainingError) and name in str(error), repr(error)
    assert victim.read_text() == "precious"
    (tmp_path / "log.csv").write_text("a\n")
    with files.open_append(tmp_path / "log.csv") as f:
        f.write("b\n")
    assert (tmp_path / "log.csv").read_text() == "a\nb\n"


# --- run directories ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run of 2 steps of a tiny model: checkpoint.npz, model.keras, best.json, log.csv..."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train_module.train([str(SHEEP)], run, steps=2, overrides=TINY_SET, say=quietly)
    return run


@pytest.fixture
def run_dir(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))


def resume(run: Path, steps: int = 4) -> None:
    train_module.train([str(SHEEP)], run, steps=steps, overrides=TINY_SET, say=quietly)


def logged_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


RUN_CASES = ([("checkpoint.npz", kind) for kind in sorted(HOSTILE)]
             + [(name, kind) for name in ("hparams.json", "dataset.json", "best.json", "log.csv")
                for kind in ("a FIFO", "a link to /dev/zero")])


@pytest.mark.parametrize("name, kind", RUN_CASES)
def test_files_of_a_run_directory_that_are_not_regular_files_stop_training_clearly(
        run_dir, name, kind):
    replace_with(run_dir / name, kind)
    error = within(120, resume, run_dir)
    assert isinstance(error, SketchError), repr(error)
    assert name in str(error)


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.pop("step"), "the step None"),
    (lambda a: a.update(step=np.array(-4)), "the step"),
    (lambda a: a.update(step=np.array([1, 2])), "the step"),
    (lambda a: a.update(step=np.array(2.5)), "the step"),
    (lambda a: a.update({"model/0": np.full(a["model/0"].shape, "x")}), "model/0 of dtype <U1"),
])
def test_a_checkpoint_with_a_bad_step_or_dtype_is_refused(run_dir, change, expected):
    path = run_dir / "checkpoint.npz"
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(TrainingError, match=expected):
        resume(run_dir)


def test_a_checkpoint_array_larger_than_its_bytes_is_refused_before_it_is_allocated(run_dir):
    """A 12-byte member whose header declares 40 GB: numpy would allocate it all first."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**10,)})
    path = run_dir / "checkpoint.npz"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data/huge.npy", header.getvalue() + b"\0" * 12)
    with pytest.raises(TrainingError, match=r"data/huge.npy declares a float32 array of shape "
                                            r"\(10000000000,\)"):
        resume(run_dir)


def test_a_dataset_json_with_a_bad_scale_factor_stops_the_resume(run_dir):
    (run_dir / "dataset.json").write_text(json.dumps({"scale_factor": -2.0}))
    with pytest.raises(TrainingError, match=r"dataset\.json has scale_factor -2\.0"):
        resume(run_dir)


def test_the_trainer_never_writes_through_a_symbolic_link(run_dir, tmp_path):
    victims = {}
    for name in ("hparams.json", "status.json", "best.json", "log.csv"):
        victim = tmp_path / f"victim-{name}"
        shutil.copyfile(run_dir / name, victim)  # readable as the real file, so training runs
        victims[victim] = victim.read_bytes()
        (run_dir / name).unlink()
        (run_dir / name).symlink_to(victim)
    resume(run_dir)
    for victim, content in victims.items():
        assert victim.read_bytes() == content, f"{victim.name} was written through its link"
    for name in ("hparams.json", "status.json", "best.json", "log.csv"):
        assert (run_dir / name).is_file() and not (run_dir / name).is_symlink()
    assert logged_steps(run_dir) == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_the_lock_is_never_a_link_followed_or_a_fifo_waited_on(run_dir, tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run_dir / "lock").unlink(missing_ok=True)
    if kind == "link":
        (run_dir / "lock").symlink_to(victim)
    else:
        os.mkfifo(run_dir / "lock")
    error = within(60, resume, run_dir)
    assert isinstance(error, TrainingError) and "lock" in str(error), repr(error)
    assert victim.read_text() == "precious"


def test_a_tb_folder_that_is_a_link_is_refused(run_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run_dir / "tb")
    (run_dir / "tb").symlink_to(elsewhere)
    with pytest.raises(TrainingError, match="tb is a symbolic link"):
        resume(run_dir)
    assert list(elsewhere.iterdir()) == []


def test_a_directory_where_the_checkpoint_goes_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint.npz").mkdir(parents=True)
    with pytest.raises(TrainingError, match=r"cannot write .*checkpoint\.npz"):
        train_module.train([str(SHEEP)], run, steps=2, overrides=TINY_SET, say=quietly)
    assert not list(run.glob(".*.tmp*"))


def test_the_log_is_whole_on_disk_as_soon_as_a_resume_rewrites_it(run_dir):
    before = (run_dir / "log.csv").read_bytes()
    logs = train_module._Logs(run_dir, start_step=2)
    try:  # what a kill -9 here would leave: every row up to the checkpoint, not 0 bytes
        assert (run_dir / "log.csv").read_bytes() == before
        assert logged_steps(run_dir) == [1, 2]
    finally:
        logs.close()


def test_a_stop_while_the_log_is_rewritten_keeps_the_old_log(run_dir, monkeypatch):
    before = (run_dir / "log.csv").read_bytes()

    def interrupted(self, start_step):
        yield {"step": "1"}
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module._Logs, "_kept_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_module._Logs(run_dir, start_step=2)
    assert (run_dir / "log.csv").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp*"))


def test_odd_rows_of_the_log_are_dropped_and_unreadable_ones_named(tmp_path):
    header = ",".join(train_module.LOG_COLUMNS)
    filler = ",".join(["0.5"] * (len(train_module.LOG_COLUMNS) - 1))
    (tmp_path / "log.csv").write_text(f"{header}\n1,{filler}\n²,{filler}\n{'9' * 5000},{filler}\n"
                                      f"-1,{filler}\n2,{filler}\n")
    train_module._Logs(tmp_path, start_step=5).close()
    assert logged_steps(tmp_path) == [1, 2]
    (tmp_path / "log.csv").write_text(f"{header}\n1,{'x' * 200_000}\n")
    with pytest.raises(TrainingError, match=r"log\.csv is not a readable log"):
        train_module._Logs(tmp_path, start_step=5)


# --- stops --------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_a_job_blocked_writing_to_a_full_pipe(tmp_path, signum):
    """The job's stderr is a pipe of one page that the test stops reading: its progress bar
    soon blocks in write(). A single SIGTERM or SIGINT must still end it within seconds, with
    its last checkpoint whole. (The stop handler used to only set a flag, and the write never
    returned.)"""
    run = tmp_path / "run"
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    job = subprocess.Popen([sys.executable, "-m", "sketch_model", "train", str(SHEEP), "--out",
                            str(run), "--steps", "100000", *TINY_TRAIN, "--set", "save_every=3"],
                           cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=write_end)
    os.close(write_end)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoint.npz").exists():  # read the pipe until training runs
            assert job.poll() is None and time.time() < deadline, "the job did not start"
            os.set_blocking(read_end, False)
            try:
                os.read(read_end, 1 << 16)
            except BlockingIOError:
                time.sleep(0.2)
        steps = []  # stop reading: the job must stall, blocked in a write
        for _ in range(60):
            time.sleep(1)
            steps.append(len(logged_steps(run)))
            if len(steps) >= 5 and steps[-1] == steps[-5]:
                break
        assert steps[-1] == steps[-5], f"the job never blocked: {steps}"
        started = time.monotonic()
        job.send_signal(signum)
        job.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        job.kill()
        job.wait()
        os.close(read_end)
    assert took < train_module.STOP_GRACE_SECONDS + 8, f"the stop took {took:.1f} s"
    assert job.returncode == 130
    with np.load(run / "checkpoint.npz") as checkpoint:
        assert int(checkpoint["step"]) % 3 == 0 and int(checkpoint["step"]) >= 3
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
    assert not list(run.glob(".*.tmp*"))


# --- settings -----------------------------------------------------------------------------------

BAD_SETTINGS = [
    ("learning_rate=nan", "learning_rate must be a finite number"),
    ("learning_rate=inf", "learning_rate must be a finite number"),
    ("learning_rate=0", "learning_rate must be a positive number"),
    ("grad_clip=0", "grad_clip must be a positive number"),
    ("grad_clip=-1", "grad_clip must be a positive number"),
    ("num_steps=-5", "num_steps must be at least 1"),
    ("batch_size=0", "batch_size must be between 1 and 100000"),
    ("batch_size=2.5", "batch_size expects a int"),
    ("dec_rnn_size=100000000", "dec_rnn_size must be between 1 and 16384"),
    ("num_mixture=-3", "num_mixture must be between 1 and 1000"),
    ("kl_weight=-0.5", "kl_weight must be 0 or more"),
    ("decay_rate=1.5", "decay_rate must be in (0, 1]"),
    ("random_scale_factor=1", "random_scale_factor must be in [0, 1)"),
    ("augment_stroke_prob=2", "augment_stroke_prob must be a probability"),
    ("seed=-1", "seed must be between 0 and 2**32 - 1"),
    ("recurrent_dropout_prob=0", "recurrent_dropout_prob is a keep probability"),
    ("conditional=maybe", "conditional is true or false"),
]


@pytest.mark.parametrize("setting, reason", BAD_SETTINGS)
def test_every_setting_is_checked_before_anything_is_created(tmp_path, capsys, setting, reason):
    run = tmp_path / "run"
    rc = cli.main(["train", str(SHEEP), "--out", str(run), "--set", setting])
    assert rc == 2
    assert reason in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.parametrize("steps", ["-5", "0"])
def test_a_step_count_below_one_is_refused(tmp_path, capsys, steps):
    rc = cli.main(["train", str(SHEEP), "--out", str(tmp_path / "run"), "--steps", steps])
    assert rc == 2 and "num_steps must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_same_data_file_under_several_names_is_read_once(tmp_path, monkeypatch):
    copy_dir = tmp_path / "data"
    copy_dir.mkdir()
    data = copy_dir / "sheep.npz"
    shutil.copyfile(SHEEP, data)
    (tmp_path / "link.npz").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    names = [str(data), "data/sheep.npz", "./data/../data/sheep.npz", "link.npz", "data"]
    assert datasets.expand_paths(names) == [data]
    once = datasets.load_dataset([data], 250)
    named_five_times = datasets.load_dataset(names, 250)
    assert [len(named_five_times.train), len(named_five_times.valid)] == [len(once.train),
                                                                           len(once.valid)]
    other = tmp_path / "other.npz"  # a copy is another file, read as such
    shutil.copyfile(SHEEP, other)
    assert datasets.expand_paths([data, other]) == [data, other]


# --- output paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where, expected", [
    ("missing/out.svg", "the directory .*missing does not exist"),
    ("afile/out.svg", "afile is a file, not a directory"),
    ("afile/deeper/out.svg", "afile is a file, not a directory"),
    ("x" * 300 + ".svg", "is 304 bytes long; file names hold at most 255"),
    ("/".join(["d"] * 2100) + "/o.svg", "is too long"),
    ("adir", "exists and is not a regular file: it is a directory"),
    ("dangling.svg", "a broken symbolic link"),
    ("fifo.svg", "it is a FIFO"),
])
def test_output_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path, where,
                                                                          expected):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "dangling.svg").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo.svg")
    error = within(10, files.check_output_path, tmp_path / where)
    assert isinstance(error, SketchError), repr(error)
    assert re.search(expected, str(error)), str(error)


def test_output_paths_that_can_be_written_pass(tmp_path):
    (tmp_path / "old.svg").write_text("x")
    for where in ("new.svg", "old.svg", "é" * 120 + ".svg"):
        assert files.check_output_path(tmp_path / where) == tmp_path / where
    # a run directory may be new, with new parents, but not under a file
    assert files.check_output_path(tmp_path / "a" / "b" / "run", directory=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TrainingError, match="afile is a file"):
        files.check_output_path(tmp_path / "afile" / "run", directory=True, error=TrainingError)


OUTPUT_CASES = [("missing/out", "does not exist"), ("afile/out", "afile is a file, not a directory"),
                ("n" * 260, "file names hold at most 255")]


@pytest.mark.parametrize("command, where, expected",
                         [(command, where, expected) for command in ("sample", "simplify", "train")
                          for where, expected in OUTPUT_CASES
                          if (command, where) != ("train", "missing/out")])  # train creates it
def test_the_commands_check_their_output_path(tmp_path, capsys, command, where, expected):
    (tmp_path / "afile").write_text("x")
    raw = ROOT.parent / "shared" / "data" / "quickdraw_mini" / "raw" / "cat.ndjson"
    suffix = {"sample": ".svg", "simplify": ".ndjson", "train": ""}[command]
    out = str(tmp_path / where) + suffix
    argv = {"sample": ["sample", "--n", "1", "--out", out],
            "simplify": ["simplify", str(raw), "--out", out],
            "train": ["train", str(SHEEP), "--out", out]}[command]
    assert cli.main(argv) == 2
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# --- per-drawing limits ---------------------------------------------------------------------------

RAW_FIELDS = {"word": "cat", "countrycode": "GB", "timestamp": "2017-03-01", "recognized": True}


def raw_line(drawing: list, key: str = "1") -> str:
    return json.dumps({**RAW_FIELDS, "key_id": key, "drawing": drawing})


def zigzag_stroke(turns: int) -> list:
    """A stroke across the 255-unit drawing and back, `turns` times: about 255 * turns points
    once resampled."""
    xs = [0, 255] * (turns // 2)
    return [xs, [0] * len(xs), list(range(len(xs)))]


@pytest.mark.parametrize("name, drawing", [
    ("a million one-point strokes", [[[i % 10], [0]] for i in range(1_000_000)]),  # 11 MB
    ("2001 strokes", [[[i % 255, 0], [0, 9], [i, i]] for i in range(2001)]),
    ("100001 points in one stroke", [[list(range(100_001)), [0] * 100_001, [0] * 100_001]]),
    ("10 strokes of 20,000 points each once resampled", [zigzag_stroke(80)] * 10),
])
def test_a_drawing_over_the_limits_is_skipped_without_resampling_it_whole(
        tmp_path, monkeypatch, name, drawing):
    good = raw_line([[[0, 100, 200], [0, 50, 0], [0, 1, 2]]], key="2")
    src, dst = tmp_path / "raw.ndjson", tmp_path / "out.ndjson"
    src.write_text(raw_line(drawing) + "\n" + good + "\n")
    resampled = []
    real = quickdraw.resample

    def counting(points, *args, **kwargs):
        out = real(points, *args, **kwargs)
        resampled.append(len(out))
        return out

    monkeypatch.setattr(quickdraw, "resample", counting)
    counts = quickdraw.simplify_ndjson(src, dst)
    assert counts == {"read": 2, "written": 1, "skipped": 1}
    assert json.loads(dst.read_text())["key_id"] == "2"
    assert sum(resampled) <= quickdraw.MAX_RESAMPLED_POINTS + 10  # never more than the limit
    assert datasets.read_ndjson(src).skipped == 1


def test_a_drawing_just_under_the_limits_is_kept(tmp_path):
    src = tmp_path / "raw.ndjson"
    src.write_text(raw_line([zigzag_stroke(80)] * 4) + "\n")  # about 81,600 points
    counts = quickdraw.simplify_ndjson(src, tmp_path / "out.ndjson")
    assert counts == {"read": 1, "written": 1, "skipped": 0}


def test_a_simplified_drawing_over_the_point_limit_is_skipped(tmp_path):
    xs = list(range(60_000))
    line = json.dumps({"word": "cat", "key_id": "1",
                       "drawing": [[xs, xs], [xs, xs]]})  # 120,000 points
    ok = json.dumps({"word": "cat", "key_id": "2", "drawing": [[[0, 9], [0, 9]]]})
    (tmp_path / "s.ndjson").write_text(line + "\n" + ok + "\n")
    result = datasets.read_ndjson(tmp_path / "s.ndjson")
    assert result.skipped == 1 and result.key_ids == ["2"]
    with pytest.raises(SketchError, match="over 100000 points"):
        quickdraw.drawing_to_stroke3([[xs, xs], [xs, xs]])


def test_simplify_never_writes_through_a_link_left_as_its_partial_file(tmp_path):
    raw = ROOT.parent / "shared" / "data" / "quickdraw_mini" / "raw" / "cat.ndjson"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.ndjson.partial").symlink_to(victim)
    quickdraw.simplify_ndjson(raw, tmp_path / "out.ndjson")
    assert victim.read_text() == "precious"
    assert (tmp_path / "out.ndjson").stat().st_size > 0


def test_the_app_listens_on_localhost_with_xsrf_protection_and_the_data_upload_limit():
    code = ("import streamlit.config as c; c.get_config_options(force_reparse=True); "
            "print(c.get_option('server.address'), c.get_option('server.enableXsrfProtection'), "
            "c.get_option('server.enableCORS'), c.get_option('server.maxUploadSize'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["localhost", "True", "True", str(datasets.MAX_NPZ_BYTES >> 20)]
