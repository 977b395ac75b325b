"""The benchmarks' quick modes run, so the scripts cannot rot (their figures are in README)."""

import os
import subprocess
import sys

from tests.helpers import ROOT


def run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_train_throughput_quick():
    out = run("benchmarks/train_throughput.py", "--quick")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [(cell, path) for cell in ("lstm", "layer_norm", "hyper")
                                            for path in ("autodiff", "auto")]
    assert all(float(r[2]) > 0 and float(r[6]) > 0 for r in rows)
    assert all(float(r[7]) == 1.0 for r in rows[::2])  # speed-ups are against the old path


def test_sampling_latency_quick():
    out = run("benchmarks/sampling_latency.py", "--quick")
    names = [line.rsplit(None, 2)[0].strip() for line in out.splitlines()[1:]]
    assert names == ["load_model", "complete n=1", "complete n=4", "complete n=8", "reconstruct n=8",
                     "interpolate 10", "encode_many 200"]


def test_model_quality_on_the_bundled_unconditional_model():
    out = run("benchmarks/model_quality.py", "assets/models/sheep_uncond",
              "assets/data/aaron_sheep.npz", "--json")
    report = __import__("json").loads(out.strip().splitlines()[-1])
    assert report["n"] == 300 and 0 <= report["ending_rate"] <= 1
    assert 0 <= report["stalled_rate"] <= 1 - report["ending_rate"]  # stalled ones never end
    assert 0 <= report["ending_rate_paper_pen"] <= 1
    assert all(0 < report[f"{event}_probability_median"] < 1 for event in ("lift", "end"))


def test_model_quality_on_the_bundled_vae_reports_the_retrieval_figures():
    out = run("benchmarks/model_quality.py", "assets/models/sheep_vae",
              "assets/data/aaron_sheep.npz", "--json")
    report = __import__("json").loads(out.strip().splitlines()[-1])
    assert report["retrieval_n"] == 100 and 0 < report["L_KL"]
    assert 0 <= report["retrieval_top1"] <= report["retrieval_top10"] <= 1
    assert 0 <= report["retrieval_median_rank"] <= 99
    assert 0 <= report["reconstruction_ending_rate"] <= 1
