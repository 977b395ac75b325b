"""Tests of sketch_model.datasets against the real data in ../shared/data."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketch_model import datasets
from sketch_model.errors import DataFileError, DrawingError, TrainingError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHEEP = DATA / "aaron_sheep.npz"
SIMPLIFIED = DATA / "quickdraw_mini" / "simplified"
RAW = DATA / "quickdraw_mini" / "raw"


@pytest.fixture(scope="module")
def sheep() -> dict[str, list[np.ndarray]]:
    return datasets.read_npz(SHEEP)


@pytest.fixture(scope="module")
def sheep_train(sheep) -> list[np.ndarray]:
    return datasets.normalize(sheep["train"], datasets.scale_factor(sheep["train"]))


def sketch(n: int, pen_every: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    result = np.zeros((n, 3), dtype=np.float32)
    result[:, 0:2] = rng.integers(-20, 20, size=(n, 2))
    result[pen_every - 1::pen_every, 2] = 1
    result[-1, 2] = 1
    return result


def object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def save_npz(path: Path, **members: np.ndarray) -> Path:
    np.savez(path, **members)
    return path


def npy_with_pickle(payload: bytes, shape: tuple = (1,)) -> bytes:
    """A .npy member whose header says object array and whose body is `payload`."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": "|O", "fortran_order": False, "shape": shape})
    return stream.getvalue() + payload


def zip_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# --- read_npz ---------------------------------------------------------------------------------

def test_read_npz_matches_trusted_np_load(sheep):
    trusted = np.load(SHEEP, allow_pickle=True, encoding="latin1")
    assert {s: len(sheep[s]) for s in datasets.SPLITS} == {"train": 7400, "valid": 300, "test": 300}
    for split in datasets.SPLITS:
        for ours, theirs in zip(sheep[split], trusted[split]):
            assert ours.dtype == np.float32 and ours.shape == theirs.shape
            np.testing.assert_array_equal(ours, theirs)


class _WritesFile:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


class _RunsShell:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch '{self.target}'",))


@pytest.mark.parametrize("hostile", [_WritesFile, _RunsShell])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, hostile):
    target = tmp_path / "pwned"
    # Both a bare hostile pickle and one hidden inside an otherwise genuine object array.
    bare = npy_with_pickle(pickle.dumps(hostile(target), protocol=2))
    inner = io.BytesIO()
    np.save(inner, object_array([sketch(4), hostile(target)]), allow_pickle=True)
    assert not target.exists()
    for train in (bare, inner.getvalue()):
        good = io.BytesIO()
        np.save(good, object_array([sketch(4)]), allow_pickle=True)
        path = zip_members(tmp_path / "evil.npz", {"train.npy": train, "valid.npy": good.getvalue(),
                                                   "test.npy": good.getvalue()})
        with pytest.raises(DataFileError, match="refusing"):
            datasets.read_npz(path)
        assert not target.exists()


def test_pickle_that_is_not_an_array_is_refused(tmp_path):
    member = npy_with_pickle(pickle.dumps([1, 2, 3], protocol=2))
    path = zip_members(tmp_path / "list.npz", {f"{s}.npy": member for s in datasets.SPLITS})
    with pytest.raises(DataFileError, match="not the object array"):
        datasets.read_npz(path)


def test_truncated_corrupt_and_empty_files(tmp_path):
    data = SHEEP.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "text.npz": b"train,valid,test\n1,2,3\n",
        # A flipped byte deep inside the compressed train member fails its CRC or inflation.
        "corrupt.npz": data[:500_000] + bytes([data[500_000] ^ 0xFF]) + data[500_001:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataFileError):
            datasets.read_npz(tmp_path / name)
    with pytest.raises(DataFileError, match="cannot read"):
        datasets.read_npz(tmp_path / "absent.npz")


def test_truncated_npy_member(tmp_path):
    whole = io.BytesIO()
    np.save(whole, object_array([sketch(30)] * 5), allow_pickle=True)
    numeric = io.BytesIO()
    np.save(numeric, np.zeros((4, 10, 3), dtype=np.int16))
    for train in (whole.getvalue()[:-40], numeric.getvalue()[:-40]):
        path = zip_members(tmp_path / "short.npz",
                           {"train.npy": train, "valid.npy": whole.getvalue(), "test.npy": whole.getvalue()})
        with pytest.raises(DataFileError):
            datasets.read_npz(path)


def test_size_limit_is_checked(tmp_path):
    with pytest.raises(DataFileError, match="over the limit"):
        datasets.read_npz(SHEEP, max_bytes=1_000_000)


def test_missing_split_lists_what_is_there(tmp_path):
    good = object_array([sketch(10)])
    path = save_npz(tmp_path / "two.npz", train=good, valid=good)
    with pytest.raises(DataFileError, match=r"\['test'\].*\['train', 'valid'\]"):
        datasets.read_npz(path)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 2), dtype=np.int16), r"train\[1\] has shape \(5, 2\)"),
    (np.zeros(5, dtype=np.int16), r"train\[1\] has shape \(5,\)"),
    (np.array([[1.0, np.nan, 0.0]], dtype=np.float32), r"train\[1\] holds NaN"),
    (np.array([[1, 2, 0], [3, 4, 2]], dtype=np.int16), r"train\[1\] has pen values"),
    (np.array([["a", "b", "c"]]), r"train\[1\] is not a numeric array"),
])
def test_bad_sketches_are_named(tmp_path, bad, message):
    good = object_array([sketch(10)])
    path = save_npz(tmp_path / "bad.npz", train=object_array([sketch(10), bad]), valid=good, test=good)
    with pytest.raises(DataFileError, match=message):
        datasets.read_npz(path)


def test_numeric_members_are_accepted(tmp_path):
    block = np.stack([sketch(12, seed=i) for i in range(4)]).astype(np.int16)
    path = save_npz(tmp_path / "numeric.npz", train=block, valid=block[:1], test=block[:2])
    data = datasets.read_npz(path)
    assert [len(data[s]) for s in datasets.SPLITS] == [4, 1, 2]
    np.testing.assert_array_equal(data["train"][3], block[3])
    flat = save_npz(tmp_path / "flat.npz", train=block[0], valid=block[0], test=block[0])
    with pytest.raises(DataFileError, match="shape"):
        datasets.read_npz(flat)


# --- read_ndjson and splits -------------------------------------------------------------------

def test_read_simplified_and_raw_ndjson():
    simplified = datasets.read_ndjson(SIMPLIFIED / "cat.ndjson")
    raw = datasets.read_ndjson(RAW / "cat.ndjson")
    assert simplified.kind == "simplified" and raw.kind == "raw"
    assert len(simplified.sketches) == 25 and simplified.skipped == 0 and raw.skipped == 0
    assert set(simplified.words) == {"cat"} and set(raw.words) == {"cat"}
    assert set(raw.key_ids) <= set(simplified.key_ids)
    for drawing in simplified.sketches + raw.sketches:
        assert drawing.dtype == np.float32 and drawing.shape[1] == 3 and drawing[-1, 2] == 1


def test_malformed_ndjson_lines_are_counted(tmp_path):
    good = (SIMPLIFIED / "cat.ndjson").read_text().splitlines()[:3]
    raw_line = (RAW / "cat.ndjson").read_text().splitlines()[0]
    bad = [
        "not json at all",
        "[1, 2, 3]",
        "[" * 100_000,  # nested too deep for the JSON parser
        json.dumps({"key_id": "1", "word": "cat"}),  # no drawing
        json.dumps({"word": "cat", "drawing": [[[1, 2], [3, 4]]]}),  # no key_id
        json.dumps({"key_id": "2", "drawing": [[[1, 2], [3, 4]], [[1], [2], [3]]]}),  # mixed rows
        json.dumps({"key_id": "3", "drawing": []}),
        raw_line,  # a raw drawing in a simplified file
    ]
    path = tmp_path / "cat.ndjson"
    path.write_text("\n".join([good[0], *bad[:4], good[1], "", *bad[4:], good[2]]) + "\n")
    result = datasets.read_ndjson(path)
    assert result.skipped == len(bad) and len(result.sketches) == 3 and result.kind == "simplified"
    with pytest.raises(DataFileError, match="no usable"):
        datasets.read_ndjson(RAW / "cat.ndjson", kind="simplified")
    (tmp_path / "empty.ndjson").write_text("")
    with pytest.raises(DataFileError, match="no usable"):
        datasets.read_ndjson(tmp_path / "empty.ndjson")
    with pytest.raises(DataFileError, match="cannot read"):
        datasets.read_ndjson(tmp_path / "absent.ndjson")


def test_split_is_deterministic_and_disjoint():
    key_ids = [json.loads(line)["key_id"]
               for path in sorted(SIMPLIFIED.glob("*.ndjson")) for line in path.read_text().splitlines()]
    splits = [datasets.split_of(k) for k in key_ids]
    assert splits == [datasets.split_of(k) for k in key_ids]
    fractions = {s: splits.count(s) / len(splits) for s in datasets.SPLITS}
    assert abs(fractions["train"] - 0.8) < 0.03 and abs(fractions["valid"] - 0.1) < 0.02

    files = [SIMPLIFIED / "cat.ndjson", SIMPLIFIED / "bus.ndjson"]
    first, second = datasets.load_dataset(files, 250), datasets.load_dataset(files, 250)
    expected = {s: sum(datasets.split_of(k) == s for f in files
                       for k in datasets.read_ndjson(f).key_ids) for s in datasets.SPLITS}
    assert {s: len(getattr(first, s)) for s in datasets.SPLITS} == expected
    for split in datasets.SPLITS:
        assert first.labels[split] == second.labels[split]
        assert all(np.array_equal(a, b) for a, b in zip(getattr(first, split), getattr(second, split)))
    seen = [a.tobytes() for s in datasets.SPLITS for a in getattr(first, s)]
    assert len(seen) == len(set(seen)) == 50


# --- load_dataset -----------------------------------------------------------------------------

def test_load_dataset_combines_files_and_directories(tmp_path):
    folder = tmp_path / "classes"
    folder.mkdir()
    shutil.copy(SHEEP, folder / "sheep.npz")
    shutil.copy(SIMPLIFIED / "cat.ndjson", folder / "cat.ndjson")
    (folder / "notes.txt").write_text("ignored")
    data = datasets.load_dataset([folder, RAW / "pig.ndjson"], max_seq_len=100)
    assert data.sources == [str(folder / "cat.ndjson"), str(folder / "sheep.npz"), str(RAW / "pig.ndjson")]
    assert data.classes == ["cat", "pig", "sheep"]
    for split in datasets.SPLITS:
        sketches = getattr(data, split)
        assert len(sketches) == len(data.labels[split])
        assert all(s.dtype == np.float32 and 0 < len(s) <= 100 for s in sketches)
    sheep_kept = data.labels["train"].count("sheep")
    assert sheep_kept + data.dropped_too_long["train"] >= 7400 > sheep_kept > 0


def test_load_dataset_drops_empty_sketches_and_rejects_bad_paths(tmp_path):
    items = object_array([sketch(10), np.zeros((0, 3), dtype=np.int16), sketch(300)])
    path = save_npz(tmp_path / "few.npz", train=items, valid=items, test=items)
    data = datasets.load_dataset([path], max_seq_len=250)
    assert [len(data.train), len(data.valid), len(data.test)] == [1, 1, 1]
    assert data.dropped_empty == 3 and data.dropped_too_long == {"train": 1, "valid": 1, "test": 1}
    assert data.labels["train"] == ["few"]
    (tmp_path / "sketch.csv").write_text("1,2,3")
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "sketch.csv", tmp_path / "absent.npz", tmp_path / "empty"):
        with pytest.raises(DataFileError):
            datasets.load_dataset([bad], max_seq_len=250)
    with pytest.raises(DataFileError):
        datasets.load_dataset([], max_seq_len=250)


# --- scale and normalisation ------------------------------------------------------------------

def test_scale_factor_against_naive_numpy(sheep):
    naive = np.std([value for s in sheep["train"] for row in s.astype(np.float64) for value in row[:2]])
    assert datasets.scale_factor(sheep["train"]) == pytest.approx(naive, rel=1e-12)


def test_normalize_clips_then_divides():
    drawing = np.array([[5000.0, -3000.0, 0.0], [10.0, -20.0, 1.0]], dtype=np.float32)
    (result,) = datasets.normalize([drawing], 10.0)
    np.testing.assert_allclose(result, [[100.0, -100.0, 0.0], [1.0, -2.0, 1.0]])
    assert result.dtype == np.float32 and drawing[0, 0] == 5000.0
    assert datasets.scale_factor([drawing, drawing]) == pytest.approx(np.std([1000, -1000, 10, -20] * 2))
    with pytest.raises(DataFileError):
        datasets.scale_factor([])
    with pytest.raises(DataFileError):
        datasets.scale_factor([np.zeros((3, 3))])


# --- augmentation -----------------------------------------------------------------------------

def reference_augment_strokes(strokes, prob, rng):
    """magenta sketch_rnn utils.augment_strokes, verbatim but for np.random.rand -> rng.random."""
    result = []
    prev_stroke = [0, 0, 1]
    count = 0
    stroke = [0, 0, 1]
    for i in range(len(strokes)):
        candidate = [strokes[i][0], strokes[i][1], strokes[i][2]]
        if candidate[2] == 1 or prev_stroke[2] == 1:
            count = 0
        else:
            count += 1
        urnd = rng.random()
        if candidate[2] == 0 and prev_stroke[2] == 0 and count > 2 and urnd < prob:
            stroke[0] += candidate[0]
            stroke[1] += candidate[1]
        else:
            stroke = candidate
            prev_stroke = stroke
            result.append(stroke)
    return np.array(result)


def test_augment_strokes_matches_reference_on_sheep(sheep_train):
    for seed, drawing in enumerate(sheep_train[:150]):
        for prob in (0.1, 0.5, 1.0):
            ours = datasets.augment_strokes(drawing, prob, np.random.default_rng(seed))
            theirs = reference_augment_strokes(drawing, prob, np.random.default_rng(seed))
            assert ours.dtype == theirs.dtype == np.float32
            np.testing.assert_array_equal(ours, theirs)
    assert len(datasets.augment_strokes(sheep_train[0], 1.0, np.random.default_rng(0))) < len(sheep_train[0])


@settings(max_examples=200, deadline=None)
@given(pens=st.lists(st.integers(0, 1), min_size=1, max_size=60), prob=st.floats(0, 1),
       seed=st.integers(0, 2**32 - 1))
def test_augment_strokes_matches_reference_on_any_pen_pattern(pens, prob, seed):
    rng = np.random.default_rng(seed)
    drawing = np.column_stack([rng.normal(size=(len(pens), 2)), pens]).astype(np.float32)
    ours = datasets.augment_strokes(drawing, prob, np.random.default_rng(seed))
    theirs = reference_augment_strokes(drawing, prob, np.random.default_rng(seed))
    np.testing.assert_array_equal(ours, theirs)
    # Dropping keeps the absolute position of every pen-up point and of the final point.
    ends = np.cumsum(drawing[:, :2], axis=0)[drawing[:, 2] == 1]
    np.testing.assert_allclose(np.cumsum(ours[:, :2], axis=0)[ours[:, 2] == 1], ends, atol=1e-4)


def test_random_scale_stretches_axes_within_range():
    drawing = sketch(20)
    rng = np.random.default_rng(7)
    x_scale, y_scale = [(rng.random() - 0.5) * 2 * 0.15 + 1.0 for _ in range(2)]
    result = datasets.random_scale(drawing, 0.15, np.random.default_rng(7))
    np.testing.assert_allclose(result[:, 0], drawing[:, 0] * x_scale, rtol=1e-6)
    np.testing.assert_allclose(result[:, 1], drawing[:, 1] * y_scale, rtol=1e-6)
    np.testing.assert_array_equal(result[:, 2], drawing[:, 2])
    assert 0.85 <= x_scale <= 1.15 and 0.85 <= y_scale <= 1.15 and x_scale != y_scale



def test_dequantize_adds_uniform_noise_of_the_given_width_to_offsets_only():
    drawing = sketch(20_000)
    result = datasets.dequantize(drawing, 0.4, np.random.default_rng(3))
    noise = result[:, 0:2] - drawing[:, 0:2]
    np.testing.assert_array_equal(result[:, 2], drawing[:, 2])
    assert noise.min() >= -0.2 - 1e-6 and noise.max() < 0.2 + 1e-6
    # Uniform on [-0.2, 0.2): standard deviation 0.4 / sqrt(12), mean 0 (40,000 draws).
    assert abs(noise.std() - 0.4 / np.sqrt(12)) < 0.002 and abs(noise.mean()) < 0.002
    # The integer grid is gone: no offset keeps its exact value, zeros included.
    zeros = drawing[:, 0:2] == 0
    assert zeros.sum() > 500 and not np.any(result[:, 0:2][zeros] == 0)


# --- batches ----------------------------------------------------------------------------------

def make_batcher(sketches, seed=0, max_seq_len=250, **changes):
    settings_ = dict(batch_size=100, random_scale_factor=0.15, augment_stroke_prob=0.1) | changes
    return datasets.Batcher(sketches, max_seq_len=max_seq_len, seed=seed, **settings_)


def check_batch(strokes, lengths, max_seq_len, bucket_width=10):
    steps = strokes.shape[1] - 1
    assert strokes.dtype == np.float32 and lengths.dtype == np.int32 and strokes.ndim == 3
    assert strokes.shape[2] == 5 and len(strokes) == len(lengths)
    assert steps <= max_seq_len and (steps % bucket_width == 0 or steps == max_seq_len)
    assert steps >= min(lengths.max() + 1, max_seq_len)
    np.testing.assert_array_equal(strokes[:, 0], np.tile([0, 0, 1, 0, 0], (len(strokes), 1)))
    for row, n in zip(strokes, lengths):
        assert np.all(row[1:n + 1, 4] == 0) and np.all(row[1:n + 1, 2] + row[1:n + 1, 3] == 1)
        np.testing.assert_array_equal(row[n + 1:], np.tile([0, 0, 0, 0, 1], (steps - n, 1)))


def test_batcher_is_deterministic_in_seed_and_step(sheep_train):
    batcher = make_batcher(sheep_train)
    assert batcher.batches_per_epoch == 74
    late = batcher.batch(200)
    for step in (0, 1, 73, 74):
        first, again = batcher.batch(step), batcher.batch(step)
        np.testing.assert_array_equal(first[0], again[0])
        check_batch(*first, max_seq_len=250)
    resumed = make_batcher(sheep_train).batch(200)  # a fresh run resumed at step 200
    np.testing.assert_array_equal(late[0], resumed[0])
    np.testing.assert_array_equal(late[1], resumed[1])
    other = make_batcher(sheep_train, seed=1).batch(200)
    assert other[0].shape != late[0].shape or not np.array_equal(other[0], late[0])


def test_batcher_epoch_uses_each_sketch_once_grouped_by_length(sheep_train):
    batcher = make_batcher(sheep_train, random_scale_factor=0.0, augment_stroke_prob=0.0)
    lengths = np.array([len(s) for s in sheep_train])
    spreads = []
    for step in range(74, 148):  # all of epoch 1
        strokes, batch_lengths = batcher.batch(step)
        check_batch(strokes, batch_lengths, 250)
        spreads.append(batch_lengths.max() - batch_lengths.min())
    epoch = batcher.epoch_batches(1)
    assert epoch.shape == (74, 100) and len(np.unique(epoch)) == 7400
    np.testing.assert_array_equal(np.sort(batcher.batch(80)[1]), np.sort(lengths[epoch[6]]))
    random_spread = np.mean([np.ptp(lengths[np.random.default_rng(i).choice(7400, 100)]) for i in range(20)])
    assert np.mean(spreads) < random_spread / 3


def test_batch_length_never_exceeds_max_seq_len(sheep_train):
    short = [s for s in sheep_train if len(s) <= 125]
    batcher = make_batcher(short, seed=3, max_seq_len=125, batch_size=50)
    assert max(batcher.batch(step)[0].shape[1] for step in range(batcher.batches_per_epoch)) == 126
    for step in range(0, 3 * batcher.batches_per_epoch, 7):
        check_batch(*batcher.batch(step), max_seq_len=125)
    full = make_batcher(sheep_train, augment_stroke_prob=0.0)
    has_longest = [k for k in range(74) if 250 in full.batch(k)[1]]
    assert has_longest and all(full.batch(k)[0].shape[1] == 251 for k in has_longest)


def test_batcher_dequantizes_training_offsets_when_asked(sheep_train):
    plain = make_batcher(sheep_train, random_scale_factor=0.0, augment_stroke_prob=0.0)
    noisy = make_batcher(sheep_train, random_scale_factor=0.0, augment_stroke_prob=0.0,
                         dequantize_width=0.05)
    (a, a_len), (b, b_len) = plain.batch(3), noisy.batch(3)
    np.testing.assert_array_equal(a_len, b_len)
    np.testing.assert_array_equal(a[..., 2:], b[..., 2:])
    drawn = np.arange(a.shape[1])[None, :] <= a_len[:, None]  # start token .. last point
    drawn[:, 0] = False
    diff = (b - a)[..., 0:2][drawn]
    assert np.all(np.abs(diff) <= 0.025 + 1e-6) and np.all(diff != 0)
    np.testing.assert_array_equal(b[..., 0:2][~drawn], a[..., 0:2][~drawn])


def test_batcher_rejects_bad_input(sheep_train):
    with pytest.raises(TrainingError, match="fewer than batch_size"):
        make_batcher(sheep_train[:10])
    with pytest.raises(DrawingError, match="max_seq_len"):
        make_batcher(sheep_train, max_seq_len=100)


def test_eval_batches_cover_everything_in_length_order(sheep_train):
    sketches = sheep_train[:250]
    batches = list(datasets.eval_batches(sketches, 100, 250))
    assert [len(lengths) for _, lengths in batches] == [100, 100, 50]
    all_lengths = np.concatenate([lengths for _, lengths in batches])
    np.testing.assert_array_equal(all_lengths, np.sort([len(s) for s in sketches]))
    for strokes, lengths in batches:
        check_batch(strokes, lengths, 250)
    first, again = list(datasets.eval_batches(sketches, 100, 250)), batches
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))


def test_pad_batch_to_n_max(sheep_train):
    strokes, lengths = datasets.pad_batch(sheep_train[:4], 250)
    assert strokes.shape == (4, 251, 5)
    check_batch(strokes, lengths, 250, bucket_width=251)
    np.testing.assert_allclose(strokes[0, 1:lengths[0] + 1, :2], sheep_train[0][:, :2])
    np.testing.assert_array_equal(strokes[0, 1:lengths[0] + 1, 3], sheep_train[0][:, 2])
    with pytest.raises(DrawingError):
        datasets.pad_batch(sheep_train[:4], 10)
