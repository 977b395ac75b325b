"""`models list` and `models download` against a local server on 127.0.0.1 that serves the
real shared sketch-rnn-js files laid out like Google's bucket folder. No other network is used."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

import sketch_model
from sketch_model import google_models
from sketch_model.errors import DataFileError
from tests.helpers import local_server
from tests.test_download import BucketHandler

GOOGLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchrnn_js_models"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    for name in ("SKETCH_MODEL_CACHE", "SKETCH_MODEL_MODELS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket(tmp_path):
    """The shared gen files, a fake VAE (a gen file under a .vae.json name) and an HTML page
    under a model's name, served from 127.0.0.1; .url is the folder's address."""
    root = tmp_path / "large_models"
    root.mkdir()
    for name in ("sheep", "key", "palm_tree", "lobster"):
        shutil.copyfile(GOOGLE / f"{name}.gen.json", root / f"{name}.gen.json")
    shutil.copyfile(GOOGLE / "dog.gen.json", root / "dog.vae.json")
    (root / "cat.gen.json").write_text("<html><body>Not here</body></html>")
    with local_server(BucketHandler, root=tmp_path, requests=[], ignore_range=False,
                      drop_after=None) as server:
        server.url += "/large_models"
        yield server


def run_cli(argv: list[str]) -> object:
    parser = argparse.ArgumentParser()
    google_models.add_models_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_the_published_classes():
    assert len(google_models.CLASSES) == 114
    assert {"cat", "bicycle", "the_mona_lisa", "everything"} <= set(google_models.CLASSES)
    assert {p.name.split(".")[0] for p in GOOGLE.glob("*.gen.json")} <= set(google_models.CLASSES)


def test_download_then_cache_then_load(bucket, tmp_path, capsys):
    cache = tmp_path / "cache"
    run_cli(["models", "download", "Palm Tree", "sheep", "--cache", str(cache),
             "--base-url", bucket.url])
    out = capsys.readouterr().out
    assert out.count("downloaded:") == 2
    path = cache / "sketchrnn_js" / "palm_tree.gen.json"
    assert path.read_bytes() == (GOOGLE / "palm_tree.gen.json").read_bytes()
    run_cli(["models", "download", "sheep", "--cache", str(cache), "--base-url", bucket.url])
    assert "cached:" in capsys.readouterr().out
    assert len(bucket.requests) == 2
    assert sketch_model.load_model(path).hps.max_seq_len == 151


def test_list_shows_bundled_and_cached(bucket, tmp_path, capsys):
    cache = tmp_path / "cache"
    google_models.download_models(["lobster"], "gen", cache, bucket.url, say=lambda _: None)
    run_cli(["models", "list", "--cache", str(cache)])
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert len(rows) == 114
    assert rows["lobster"] == ["cached", "-"]
    assert rows["everything"][1] == "n/a"
    for key in google_models.bundled_models():
        name, kind = key.split(".")
        assert rows[name][google_models.KINDS.index(kind)] == "bundled"


def test_environment_sets_url_and_cache(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCH_MODEL_MODELS_URL", bucket.url)
    monkeypatch.setenv("SKETCH_MODEL_CACHE", str(tmp_path / "env-cache"))
    [path] = google_models.download_models(["sheep"], say=lambda _: None)
    assert path == tmp_path / "env-cache" / "sketchrnn_js" / "sheep.gen.json"


def test_an_html_page_is_not_kept(bucket, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataFileError, match="not a sketch-rnn-js model file"):
        google_models.download_models(["cat"], "gen", cache, bucket.url)
    assert not list((cache / "sketchrnn_js").iterdir())


def test_a_file_of_the_wrong_kind_is_not_kept(bucket, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataFileError, match="holds a gen model, not a vae model"):
        google_models.download_models(["dog"], "vae", cache, bucket.url)
    assert not list((cache / "sketchrnn_js").iterdir())


def test_unknown_class_and_gen_only_class_are_refused_before_any_request(bucket, tmp_path):
    with pytest.raises(DataFileError, match="did you mean 'cat'"):
        google_models.download_models(["sheep", "catt"], "gen", tmp_path, bucket.url)
    with pytest.raises(DataFileError, match="gen model only"):
        google_models.download_models(["everything"], "vae", tmp_path, bucket.url)
    with pytest.raises(DataFileError, match="not an http"):
        google_models.download_models(["sheep"], "gen", tmp_path, "file:///etc")
    assert bucket.requests == []


def test_a_dropped_download_resumes(bucket, tmp_path):
    cache = tmp_path / "cache"
    expected = (GOOGLE / "key.gen.json").read_bytes()
    bucket.drop_after = 0.5
    with pytest.raises(DataFileError, match="run the same command again to resume"):
        google_models.download_models(["key"], "gen", cache, bucket.url)
    bucket.drop_after = None
    [path] = google_models.download_models(["key"], "gen", cache, bucket.url, say=lambda _: None)
    assert bucket.requests[-1][1] == f"bytes={len(expected) // 2}-"
    assert path.read_bytes() == expected
    assert json.loads(path.read_text())[0]["name"] == "key"
