"""The app's training job: one background `python -m sketch_model train` at a time.

The job is a detached subprocess (its own session), so Streamlit reruns, page reloads and
closed tabs do not touch it. `RUNS_DIR/current_job.json` names the job the app started last;
every session reads it, so a reload shows the running job and a second start is refused.
The run directory's `status.json`, written by the train command, says how the job is doing.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from common import ROOT, RUNS_DIR
from sketch_model.errors import SketchError
from sketch_model.files import MAX_LOG_BYTES, STATUS_SCHEMA, Field, open_regular, read_json

POINTER = "current_job.json"
POINTER_SCHEMA = {"run_dir": Field(str), "pid": Field(int, low=1, high=2**31 - 1),
                  "started": Field(float)}
MAX_RUN_NAME_BYTES = 100


def console_path(run_dir: Path) -> Path:
    """The train command's stdout and stderr, beside its run directory (which it creates)."""
    return run_dir.parent / f".{run_dir.name}.console.log"


@dataclasses.dataclass
class Job:
    run_dir: Path
    pid: int
    started: float
    state: str  # starting | running | finished | stopped | failed
    step: int = 0
    steps: int = 0
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")

    @property
    def name(self) -> str:
        return self.run_dir.name


def _alive(pid: int) -> bool:
    """Whether the process runs; reaps it first if it is our own exited child (a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier server): os.kill tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a reused pid (after a reboot, say) is some other program
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    # Empty while the process is still inside exec(), just after Popen returns.
    return not command or b"sketch_model" in command


def read_status(run_dir: Path) -> dict:
    """The run's status.json, or {} when it is missing or not a valid status."""
    try:
        return read_json(run_dir / "status.json", STATUS_SCHEMA)
    except SketchError:
        return {}


def console_tail(run_dir: Path, lines: int = 25) -> str:
    try:
        text = console_path(run_dir).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def current_job() -> Job | None:
    """The job the app started last, with its state as of now; None if there never was one."""
    try:
        pointer = read_json(RUNS_DIR / POINTER, POINTER_SCHEMA)
    except SketchError:
        return None
    run_dir, pid, started = Path(pointer["run_dir"]), pointer["pid"], float(pointer["started"])
    status = read_status(run_dir)
    alive = _alive(pid)
    state = status.get("state") or ("starting" if alive else "failed")
    logged = read_log(run_dir).get("step") or [0]  # status.json's step is written at the end
    job = Job(run_dir, pid, started, state, int(max(status.get("step") or 0, logged[-1])),
              int(status.get("steps") or 0), status.get("error"))
    if job.state == "running" and not alive:
        job.state = "failed"  # killed without a chance to say so
    if job.state == "failed" and not job.error:
        job.error = console_tail(run_dir) or "the training process ended unexpectedly"
    return job


class JobRefused(Exception):
    """A job cannot start now; the message says why."""


def start(data: list[str], steps: int, settings: dict[str, object], name: str | None = None) -> Job:
    """Start training in the background; raises JobRefused while another job is active."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUNS_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions clicking Start at once: one wins
        job = current_job()
        if job is not None and job.active:
            raise JobRefused(f"A training job is already running ({job.name}; its progress is "
                             "below). Stop it or wait for it to finish: only one job runs at a "
                             "time.")
        run_dir = _new_run_dir(name)
        command = [sys.executable, "-m", "sketch_model", "train", *data, "--out", str(run_dir),
                   "--steps", str(steps)]
        for key, value in settings.items():
            command += ["--set", f"{key}={value}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            with open(console_path(run_dir), "wb") as console:
                process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                           stdout=console, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        except OSError as err:
            raise JobRefused(f"The job cannot start: {err.strerror or err} ({run_dir}).") from None
        pointer = {"run_dir": str(run_dir), "pid": process.pid, "started": time.time(),
                   "command": command}
        tmp = RUNS_DIR / f".{POINTER}.tmp"
        tmp.write_text(json.dumps(pointer, indent=2))
        tmp.replace(RUNS_DIR / POINTER)
    return current_job() or Job(run_dir, process.pid, pointer["started"], "starting")


def _new_run_dir(name: str | None) -> Path:
    """A new directory under RUNS_DIR named after `name` (made safe), or the time."""
    base = name or time.strftime("run-%Y%m%d-%H%M%S")
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).strip(".-") or "run"
    if len(base.encode("utf-8")) > MAX_RUN_NAME_BYTES:
        raise JobRefused(f"The run name is too long: at most {MAX_RUN_NAME_BYTES} bytes "
                         f"({len(base.encode('utf-8'))} given). Choose a shorter name.")
    candidate, n = RUNS_DIR / base, 1
    while os.path.lexists(candidate) or os.path.lexists(console_path(candidate)):
        n += 1
        candidate = RUNS_DIR / f"{base}-{n}"
    return candidate


def stop(job: Job) -> None:
    """Ask the job to save a checkpoint and exit (SIGTERM); the train command does the rest."""
    if job.state == "running" and _alive(job.pid):
        os.kill(job.pid, signal.SIGTERM)


def read_log(run_dir: Path) -> dict[str, list[float]]:
    """log.csv as columns of floats (empty cells become NaN); {} until the first row."""
    try:
        with open_regular(run_dir / "log.csv", MAX_LOG_BYTES) as raw:
            rows = list(csv.DictReader(io.TextIOWrapper(raw, newline="", errors="replace")))
    except (SketchError, OSError, csv.Error):
        return {}
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key is None:
                continue
            try:
                number = float(value) if value not in (None, "") else float("nan")
            except ValueError:
                number = float("nan")
            columns.setdefault(key, []).append(number)
    return columns


def curves(log: dict) -> go.Figure:
    """Losses, learning rate and KL weight against the step."""
    figure = make_subplots(1, 3, subplot_titles=("Losses", "Learning rate", "KL weight"))
    step = log.get("step", [])
    for column, panel in (("loss", 1), ("L_R", 1), ("L_KL", 1), ("valid_loss", 1),
                          ("valid_L_R", 1), ("valid_L_KL", 1), ("lr", 2), ("kl_weight", 3)):
        if column in log:
            valid = column.startswith("valid")
            figure.add_trace(go.Scatter(
                x=step, y=log[column], name=column, connectgaps=True,
                mode="lines+markers" if valid else "lines",
                line={"dash": "dot"} if valid else None), 1, panel)
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h"})
    return figure
