"""Fixtures for the app's tests: tiny trained models, and the app's directories pointed at them.

The app reads SKETCH_MODELS_DIR, SKETCH_RUNS_DIR and SKETCH_DATA_DIR when `common` is first
imported, so they are set once for the whole session, before any page runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ARTIFACTS = ROOT / "test-artifacts"
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the tests import canvas_json whatever pytest's import mode
    sys.path.insert(0, HERE)

# Small enough to train in seconds on two CPU cores; real enough to exercise every page.
TINY = ["--steps", "20", "--set", "dec_rnn_size=32", "--set", "enc_rnn_size=16",
        "--set", "z_size=8", "--set", "num_mixture=3", "--set", "batch_size=8",
        "--set", "save_every=10", "--set", "max_seq_len=250"]


def data_dir() -> Path:
    """The bundled data: assets/data once the project ships it, else the shared copy."""
    bundled = ROOT / "assets" / "data"
    return bundled if any(bundled.glob("*.npz")) else SHARED_DATA


def _library_digest() -> str:
    """Changes whenever the library's code does, so cached tiny models never go stale."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "sketch_model").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _train(data: Path, out: Path, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "sketch_model", "train", str(data),
                             "--out", str(out), *TINY, *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="session")
def workdir() -> Path:
    """A scratch directory of this session's own. (pytest's tmp_path_factory directories are
    numbered per user and pruned by any other pytest run of that user, mid-test included.)"""
    path = Path(tempfile.mkdtemp(prefix="sketch_app_tests_"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_models(request, workdir) -> Path:
    """A models directory with `tiny_vae` (conditional) and `tiny_uncond`, trained once.

    Kept in pytest's cache (when enabled), keyed by the library's source, so later runs reuse them.
    """
    name = f"sketch_app_models_{_library_digest()}"
    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir(name)) if cache is not None else workdir / name
    wanted = {"tiny_vae": [], "tiny_uncond": ["--set", "conditional=false"]}
    missing = {name: extra for name, extra in wanted.items()
               if not (folder / name / "status.json").is_file()
               or '"finished"' not in (folder / name / "status.json").read_text()}
    data = data_dir() / "aaron_sheep.npz"
    jobs = {}
    for name, extra in missing.items():
        shutil.rmtree(folder / name, ignore_errors=True)
        jobs[name] = _train(data, folder / name, extra)
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, f"training {name} failed:\n{output.decode(errors='replace')}"
    return folder


@pytest.fixture(scope="session")
def app_dirs(tiny_models, workdir) -> dict[str, Path]:
    """Point the app at the tiny models, an empty runs directory and the bundled data."""
    runs = workdir / "runs"
    runs.mkdir()
    dirs = {"SKETCH_MODELS_DIR": tiny_models, "SKETCH_RUNS_DIR": runs, "SKETCH_DATA_DIR": data_dir()}
    saved = {key: os.environ.get(key) for key in dirs}
    os.environ.update({key: str(value) for key, value in dirs.items()})
    if str(APP) not in sys.path:
        sys.path.insert(0, str(APP))
    yield dirs
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
