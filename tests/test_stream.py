"""Streaming training data from ndjson files: the same sketches as the file holds, classes mixed
in proportion, exact resumption, and memory bounded by the shuffle buffer, not the file."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sketch_model import datasets
from sketch_model.errors import DataFileError, TrainingError
from sketch_model.stream import StreamBatcher, is_streamed, survey
from tests.helpers import ROOT, SHEEP, tiny_hparams

MINI = ROOT / "assets" / "data" / "quickdraw_mini" / "simplified"


def write_ndjson(path: Path, n: int, word: str, seed: int = 0, first_key: int = 0) -> Path:
    """n random-walk drawings of 2-5 strokes in Quick, Draw! simplified ndjson."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for i in range(n):
            strokes = []
            for _ in range(rng.integers(2, 6)):
                k = int(rng.integers(2, 16))
                xs, ys = (np.clip(np.cumsum(rng.integers(-12, 13, k)) + 128, 0, 255).tolist()
                          for _ in range(2))
                strokes.append([xs, ys])
            f.write(json.dumps({"word": word, "key_id": str(first_key + i), "drawing": strokes,
                                "countrycode": "US", "recognized": True}) + "\n")
    return path


def served(batcher: StreamBatcher, steps: range) -> list[bytes]:
    """The sketches of the batches of `steps` (augmentation off), each as stroke-3 bytes."""
    result = []
    for step in steps:
        strokes, lengths = batcher.batch(step)
        for row, n in zip(strokes, lengths):
            result.append(row[1:n + 1][:, [0, 1, 3]].astype(np.float32).tobytes())
    return result


def plain_batcher(paths, batch_size=10, buffer_size=50, seed=0) -> StreamBatcher:
    found = survey(paths, 250)
    return StreamBatcher(found, found.scale_factor, batch_size, 250, seed, 0.0, 0.0,
                         buffer_size=buffer_size)


def test_stream_serves_every_training_sketch_of_the_file_and_nothing_else(tmp_path):
    path = write_ndjson(tmp_path / "blob.ndjson", 600, "blob")
    reference = datasets.load_dataset([path], 250)  # the file read whole, independently
    factor = datasets.scale_factor(reference.train)
    as_bytes = lambda sketches: [s.tobytes() for s in datasets.normalize(sketches, factor)]
    train = Counter(as_bytes(reference.train))
    held_out = set(as_bytes(reference.valid + reference.test))
    batcher = plain_batcher([path])
    assert batcher.capacity == 200  # CHUNK_BATCHES batches at least
    passes = 3
    seen = Counter(served(batcher, range(passes * len(reference.train) // 10)))
    assert not set(seen) & held_out
    assert set(seen) == set(train)
    # Each pass reads every training sketch once; the buffer holds back at most its capacity.
    counts = np.array([seen[key] / train[key] for key in train])
    assert counts.min() >= passes - 1 and counts.max() <= passes + 1
    assert abs(counts.mean() - passes) < 0.2


def test_survey_scale_factor_and_validation_sample_match_the_whole_file(tmp_path):
    path = write_ndjson(tmp_path / "blob.ndjson", 400, "blob")
    reference = datasets.load_dataset([path], 250)
    found = survey([path], 250)
    np.testing.assert_allclose(found.scale_factor, datasets.scale_factor(reference.train), rtol=1e-9)
    assert [s.tobytes() for s in found.valid] == [s.tobytes() for s in reference.valid]
    few = survey([path], 250, scale_sample=50, valid_sample=7)
    assert len(few.valid) == 7
    np.testing.assert_allclose(few.scale_factor, datasets.scale_factor(reference.train[:50]),
                               rtol=1e-9)


def test_classes_mix_in_proportion_to_their_files(tmp_path):
    big = write_ndjson(tmp_path / "big.ndjson", 1500, "big", seed=1)
    small = write_ndjson(tmp_path / "small.ndjson", 500, "small", seed=2, first_key=10_000)
    sizes = {name: len(datasets.load_dataset([p], 250).train) for name, p in
             (("big", big), ("small", small))}
    small_set = {s.tobytes() for s in datasets.normalize(
        datasets.load_dataset([small], 250).train, survey([big, small], 250).scale_factor)}
    first = served(plain_batcher([big, small], buffer_size=300), range(40))
    share = sum(key in small_set for key in first) / len(first)
    assert abs(share - sizes["small"] / (sizes["big"] + sizes["small"])) < 0.06


def test_resumed_stream_gives_the_same_batches(tmp_path):
    paths = [write_ndjson(tmp_path / "a.ndjson", 300, "a", seed=3),
             write_ndjson(tmp_path / "b.ndjson", 200, "b", seed=4, first_key=5_000), SHEEP]
    found = survey(paths, 250)

    def make():
        return StreamBatcher(found, found.scale_factor, 10, 250, 7, 0.15, 0.1, buffer_size=60)

    whole = make()
    expected = [whole.batch(step) for step in range(45)]
    first = make()
    for step in range(13):  # stop mid-chunk, with batches still in hand
        first.batch(step)
    state = {k: np.array(v) for k, v in first.state().items()}
    resumed = make()
    resumed.restore(state, 13)
    for step in range(13, 45):
        strokes, lengths = resumed.batch(step)
        np.testing.assert_array_equal(strokes, expected[step][0])
        np.testing.assert_array_equal(lengths, expected[step][1])
    with pytest.raises(ValueError, match="in order"):
        resumed.batch(3)


def test_stream_refuses_changed_data_and_too_little_data(tmp_path):
    path = write_ndjson(tmp_path / "a.ndjson", 200, "a")
    batcher = plain_batcher([path])
    batcher.batch(0)
    state = batcher.state()
    write_ndjson(path, 220, "a")
    with pytest.raises(TrainingError, match="changed"):
        plain_batcher([path]).restore(state, 1)
    few = write_ndjson(tmp_path / "few.ndjson", 12, "few")
    with pytest.raises(TrainingError, match="fewer than batch_size"):
        plain_batcher([few], batch_size=20).batch(0)


def test_only_ndjson_data_streams():
    assert is_streamed([MINI / "cat.ndjson", SHEEP]) and is_streamed([MINI])
    assert not is_streamed([SHEEP])


def test_train_command_streams_and_resumes_to_the_same_weights(tmp_path):
    data = [str(write_ndjson(tmp_path / "a.ndjson", 300, "a")), str(MINI / "cat.ndjson")]
    settings = [f"--set={k}={v}" for k, v in {**tiny_hparams().to_dict(), "save_every": 3}.items()
                if k in ("dec_rnn_size", "enc_rnn_size", "z_size", "num_mixture", "batch_size",
                         "save_every")]

    def train(out, steps):
        subprocess.run([sys.executable, "-m", "sketch_model", "train", *data, "--out", str(out),
                        "--steps", str(steps), *settings], check=True, cwd=ROOT,
                       capture_output=True, timeout=300)
        with np.load(out / "checkpoint.npz") as ckpt:
            return {k: ckpt[k] for k in ckpt.files if k.startswith("model/")}

    whole = train(tmp_path / "whole", 7)
    train(tmp_path / "split", 4)
    resumed = train(tmp_path / "split", 7)
    assert json.loads((tmp_path / "whole" / "dataset.json").read_text())["streamed"] is True
    for key in whole:
        np.testing.assert_allclose(resumed[key], whole[key], atol=1e-5)


MEMORY_BOUND_MB = 20  # what streaming may add to the process, whatever the file's size

MEASURE = """
import sys, threading, time
from sketch_model import datasets, stream

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

def growth(work):
    # Peak resident memory during `work` above the resident memory before it, in MB: sampled
    # every 2 ms (the peak since start-up, VmHWM, is TensorFlow's import, not this).
    before, peak, done = rss_kb(), [0], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.002)
    sampler = threading.Thread(target=sample)
    sampler.start()
    kept = work()
    done.set()
    sampler.join()
    return (max(peak[0], rss_kb()) - before) / 1024, kept

def stream_once():
    found = stream.survey([sys.argv[1]], 250, scale_sample=2000)
    batcher = stream.StreamBatcher(found, found.scale_factor, 100, 250, 0, 0.15, 0.1)
    step = 0
    while batcher.passes < 1:  # until the whole file has been read
        batcher.batch(step)
        step += 1
    return step

streamed, steps = growth(stream_once)
in_memory, _ = growth(lambda: datasets.load_dataset([sys.argv[1]], 250))
print(streamed, in_memory, steps)
"""


def test_streaming_a_large_file_takes_bounded_memory(tmp_path):
    path = write_ndjson(tmp_path / "large.ndjson", 60_000, "large")
    assert path.stat().st_size > 1.0 * MEMORY_BOUND_MB * 2**20
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True, cwd=ROOT,
                         capture_output=True, text=True, timeout=600).stdout.split()
    streamed, in_memory, steps = float(out[0]), float(out[1]), int(out[2])
    print(f"streamed {streamed:.1f} MB, in memory {in_memory:.1f} MB, {steps} steps")
    assert steps * 100 > 30_000  # served most of the training split (the buffer holds the rest)
    assert streamed < MEMORY_BOUND_MB
    assert streamed < in_memory / 2  # holding the file instead costs several times more


def test_a_file_without_drawings_is_named_with_its_own_malformed_lines(tmp_path):
    good = tmp_path / "good.ndjson"
    good.write_text("not json\n" * 3 + (MINI / "cat.ndjson").read_text())
    bad = tmp_path / "bad.ndjson"
    bad.write_text("{}\n[1, 2]\n")
    for read in (lambda: survey([good, bad], 250), lambda: datasets.load_dataset([good, bad], 250)):
        with pytest.raises(DataFileError, match=r"bad.ndjson holds no usable .* \(2 malformed lines\)"):
            read()


def test_streamed_batches_are_dequantized_when_asked(tmp_path):
    found = survey([write_ndjson(tmp_path / "blob.ndjson", 300, "blob")], 250)
    make = lambda width: StreamBatcher(found, found.scale_factor, 10, 250, 0, 0.0, 0.0,
                                       dequantize_width=width, buffer_size=50)
    (a, a_len), (b, b_len) = make(0.0).batch(0), make(0.05).batch(0)
    np.testing.assert_array_equal(a_len, b_len)
    np.testing.assert_array_equal(a[..., 2:], b[..., 2:])
    drawn = (np.arange(a.shape[1])[None, :] <= a_len[:, None]) & (np.arange(a.shape[1]) > 0)
    diff = (b - a)[..., 0:2][drawn]
    assert np.all(np.abs(diff) <= 0.025 + 1e-6) and np.all(diff != 0)
