"""benchmarks/completion_quality.py: its figures against an independent computation on model
stand-ins whose completions are known, its quick mode on the bundled models, and the
`latent` option of Sketcher.complete that it compares on a VAE."""

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from sketch_model import SketchError
from sketch_model.model import SketchRNN
from sketch_model.sample import Sketcher
from tests.helpers import ROOT, sheep, tiny_hparams

_spec = importlib.util.spec_from_file_location("completion_quality",
                                               ROOT / "benchmarks" / "completion_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MAX_LEN = 250


def _cut(drawing):
    """The prefix length by the benchmark's rule, computed here stroke by stroke."""
    best = None
    for row in range(len(drawing) - 1):
        if drawing[row, 2] == 1:
            k = row + 1
            if best is None or abs(k - len(drawing) / 2) < abs(best - len(drawing) / 2):
                best = k
    return best


def _chamfer(a, b):
    return (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2


class StandIn:
    """Completes drawing i's prefix with the rows `tails[i]`, whatever the seed."""

    def __init__(self, drawings, tails):
        self.hps = SimpleNamespace(max_seq_len=MAX_LEN)
        self.drawings, self.tails = drawings, tails

    def complete(self, prefix, n, temperature, seed, latent):
        i = next(i for i, d in enumerate(self.drawings)
                 if len(d) > len(prefix) and np.array_equal(d[:len(prefix)], prefix))
        return [np.concatenate([prefix, self.tails[i]]) for _ in range(n)]


def _expected(drawings, tails, seed):
    """The benchmark's figures for completions prefix + tails[i], computed from scratch."""
    kept = [i for i, d in enumerate(drawings) if _cut(d) is not None]
    others = bench.other_drawings(len(kept), seed)
    rows = []
    for slot, i in enumerate(kept):
        d, k = drawings[i], _cut(drawings[i])
        points = np.cumsum(d[:, :2].astype(np.float64), axis=0)
        j = kept[others[slot]]
        kj = _cut(drawings[j])
        placed = points[k - 1] + np.cumsum(drawings[j][kj:, :2].astype(np.float64), axis=0)
        done = np.concatenate([d[:k], tails[i]])
        done_points = np.cumsum(done[:, :2].astype(np.float64), axis=0)
        d_model = _chamfer(points[k:], done_points[k:]) if len(tails[i]) else np.inf
        d_other = _chamfer(points[k:], placed)
        size = points.max(0) - points.min(0)
        ratio = (done_points.max(0) - done_points.min(0)) / size
        rows.append(dict(ended=len(done) < MAX_LEN,
                         finished=len(done) < MAX_LEN and len(tails[i]) >= 0.2 * (len(d) - k),
                         length=len(done) / len(d), width=ratio[0], height=ratio[1],
                         closer=d_model < d_other, ratio=d_model / d_other,
                         match=bool(np.all((ratio >= 0.8) & (ratio <= 1.25)))))
    column = lambda name: np.array([r[name] for r in rows])  # noqa: E731
    return {"drawings": len(kept), "skipped": len(drawings) - len(kept),
            "ending_rate": column("ended").mean(), "finish_rate": column("finished").mean(),
            "median_length_ratio": np.median(column("length")),
            "median_width_ratio": np.median(column("width")),
            "median_height_ratio": np.median(column("height")),
            "extent_match_rate": column("match").mean(),
            "closer_rate": column("closer").mean(),
            "median_distance_ratio": np.median(column("ratio"))}


def _drawings():
    """Twelve test sheep and a drawing of a single stroke, which cannot be cut."""
    drawings = sheep("test", n=12)
    line = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], np.float32)
    return drawings[:5] + [line] + drawings[5:]


def test_true_endings_score_perfectly():
    drawings = _drawings()
    tails = [d[_cut(d):] if _cut(d) else d[:0] for d in drawings]
    report = bench.completion_report(StandIn(drawings, tails), drawings, samples=2, seed=3)
    cuttable = sum(_cut(d) is not None for d in drawings)
    assert report["drawings"] == cuttable and report["skipped"] == len(drawings) - cuttable >= 1
    assert report["completions"] == 2 * cuttable
    for name in ("ending_rate", "finish_rate", "median_length_ratio", "median_width_ratio",
                 "median_height_ratio", "extent_match_rate", "closer_rate"):
        assert report[name] == 1.0, name
    assert report["median_distance_ratio"] == 0.0


@pytest.mark.parametrize("kind", ["other", "nothing", "short", "endless"])
def test_figures_match_an_independent_computation(kind):
    """Completions by the ending of a validation sheep (real, but not the test sheep's own),
    by nothing, by too little (2 points), and by points up to max_seq_len (no end)."""
    drawings = _drawings()
    valid = sheep("valid", n=len(drawings))
    tails = []
    for d, v in zip(drawings, valid):
        tail = {"other": v[_cut(v):], "nothing": d[:0], "short": d[-2:],
                "endless": np.tile(d[-1:], (MAX_LEN, 1))}[kind]
        tails.append(tail[:MAX_LEN - (_cut(d) or 0)] if kind == "endless" else tail)
    report = bench.completion_report(StandIn(drawings, tails), drawings, seed=7)
    expected = _expected(drawings, tails, seed=7)
    for name, value in expected.items():
        assert report[name] == pytest.approx(value, rel=1e-9), name
    if kind == "other":  # a real ending of another sheep: not always nearer than a random one
        assert 0 < report["closer_rate"] < 1
    if kind == "nothing":
        assert report["finish_rate"] == 0 and report["closer_rate"] == 0
    if kind == "endless":
        assert report["ending_rate"] == 0


def test_other_drawings_are_never_the_drawing_itself():
    others = bench.other_drawings(50, seed=0)
    assert np.all(others != np.arange(50)) and others.min() >= 0 and others.max() < 50
    assert len(set(others)) > 25  # drawn, not a fixed shift


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "benchmarks/completion_quality.py", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("model,latent", [("sheep_uncond", "prefix"), ("sheep_vae", "prior")])
def test_quick_mode_on_the_bundled_models(model, latent):
    out = _run(f"assets/models/{model}", "assets/data/aaron_sheep.npz", "--quick", "--json",
               "--latent", latent)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["drawings"] + report["skipped"] == 10
    assert report["completions"] == report["drawings"]
    assert report["latent"] == (latent if model == "sheep_vae" else None)
    assert 0 <= report["finish_rate"] <= report["ending_rate"] <= 1
    assert 0 <= report["closer_rate"] <= 1 and report["median_length_ratio"] > 0


def test_the_prior_needs_a_vae():
    out = _run("assets/models/sheep_uncond", "assets/data/aaron_sheep.npz", "--quick",
               "--latent", "prior")
    assert out.returncode != 0 and "needs a VAE" in out.stderr


def _record_z(monkeypatch, sketcher) -> list:
    """The latent vectors the sketcher samples from, in a list that fills as it draws."""
    seen = []
    sample = sketcher._sample
    monkeypatch.setattr(sketcher, "_sample",
                        lambda z, *a, **k: seen.append(z) or sample(z, *a, **k))
    return seen


def test_complete_from_the_prior_draws_z_from_the_seed_and_encodes_nothing(monkeypatch):
    sketcher = Sketcher(SketchRNN(tiny_hparams()), 1.0)
    prefix = sheep(n=1)[0][:12]
    seen = _record_z(monkeypatch, sketcher)
    monkeypatch.setattr(sketcher, "encode", lambda *_: pytest.fail("the prior encodes nothing"))
    results = sketcher.complete(prefix, n=3, seed=5, latent="prior")
    expected = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(seen[0], expected)
    assert all(np.array_equal(r[:12], prefix) for r in results)


def test_the_default_latent_is_the_prefix_only_for_a_prefix_trained_vae(monkeypatch):
    """A VAE trained on whole drawings completes from the prior by default; one trained to
    encode prefixes (encode_prefix_prob > 0) from the prefix's mu, read as a started drawing
    and shared by the n."""
    prefix = sheep(n=1)[0][:12]
    whole = Sketcher(SketchRNN(tiny_hparams()), 1.0)
    assert whole.default_latent == "prior"
    default = whole.complete(prefix, n=2, seed=1)
    explicit = whole.complete(prefix, n=2, seed=1, latent="prior")
    assert all(np.array_equal(a, b) for a, b in zip(default, explicit))
    sketcher = Sketcher(SketchRNN(tiny_hparams(encode_prefix_prob=0.5)), 1.0)
    assert sketcher.default_latent == "prefix"
    default = sketcher.complete(prefix, n=2, seed=1)
    explicit = sketcher.complete(prefix, n=2, seed=1, latent="prefix")
    assert all(np.array_equal(a, b) for a, b in zip(default, explicit))
    seen = _record_z(monkeypatch, sketcher)
    sketcher.complete(prefix, n=2, seed=1)
    np.testing.assert_allclose(seen[0], np.stack([sketcher.encode(prefix, whole=False)] * 2))


def test_complete_checks_the_latent_option():
    unconditional = Sketcher(SketchRNN(tiny_hparams(conditional=False)), 1.0)
    prefix = sheep(n=1)[0][:12]
    with pytest.raises(SketchError, match="needs a conditional"):
        unconditional.complete(prefix, latent="prior")
    assert len(unconditional.complete(prefix, seed=0)[0]) >= 12
    with pytest.raises(SketchError, match="latent must be prefix or prior"):
        Sketcher(SketchRNN(tiny_hparams()), 1.0).complete(prefix, latent="posterior")
