"""`pip install .` into a fresh virtual environment gives a working `sketch-model` command.

The venv sees the system's site-packages (the pinned dependencies are installed there already)
and the build runs without isolation, so the test downloads nothing. The source is copied to a
scratch folder first, so the build's `build/` and `.egg-info` never land in the working tree."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import sketch_model

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_pip_install_gives_a_working_sketch_model_command(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT / "sketch_model", source / "sketch_model",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    bin_dir = venv / "bin"
    work = tmp_path / "elsewhere"  # not the repository: only the installed copy can be imported
    work.mkdir()

    installed = _run([bin_dir / "python", "-m", "pip", "install", "--no-deps",
                      "--no-build-isolation", "--no-index", "-q", source], work)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    version = _run([bin_dir / "sketch-model", "--version"], work)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"sketch_model {sketch_model.__version__}"

    helped = _run([bin_dir / "sketch-model", "--help"], work)
    assert helped.returncode == 0, helped.stderr
    for command in ("train", "eval", "sample", "simplify", "data"):
        assert command in helped.stdout

    where = _run([bin_dir / "python", "-c", "import importlib.metadata as m, sketch_model; "
                  "print(sketch_model.__file__); print(m.version('sketch_model')); "
                  "print('\\n'.join(m.requires('sketch_model')))"], work)
    assert where.returncode == 0, where.stderr
    module_file, version_text, *requires = where.stdout.splitlines()
    assert Path(module_file).is_relative_to(venv)
    assert version_text == sketch_model.__version__
    assert (Path(module_file).parent / "quickdraw_categories.txt").is_file()
    pinned = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert requires == [line for line in pinned if line]
