"""Page logic through Streamlit's AppTest, on tiny models trained by the `tiny_models` fixture."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from canvas_json import APP, canvas, canvas_value, circle_stroke, fabric_path, zigzags

SHARED_GOOGLE = APP.parent.parent / "shared" / "data" / "sketchrnn_js_models"
PAGES = ["pages/1_Draw_and_complete.py", "pages/2_Interpolate.py", "pages/3_Generate.py",
         "pages/4_Train.py", "pages/5_Dataset_gallery.py"]

pytestmark = pytest.mark.usefixtures("app_dirs")


def open_page(page: str | None = None, model: str = "tiny_vae") -> AppTest:
    at = AppTest.from_file(str(APP / "Home.py"), default_timeout=120)
    at.session_state["model_choice"] = model
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def draw(at: AppTest, key: str, json_data: dict) -> None:
    """Put a drawing on a canvas, as the browser component would report it."""
    version = at.session_state[f"{key}_version"] if f"{key}_version" in at.session_state else 0
    at.session_state[f"{key}_{version}"] = canvas_value(json_data)


def test_home_lists_bundled_models():
    at = open_page()
    assert "tiny_vae" in texts(at.markdown) and "tiny_uncond" in texts(at.markdown)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("model", ["tiny_vae", "tiny_uncond"])
def test_every_page_loads(page, model):
    at = open_page(page, model)
    assert not at.error, texts(at.error)
    if "Train" not in page:
        assert at.sidebar.selectbox[0].value == model


def test_generate_produces_drawings():
    at = open_page("pages/3_Generate.py")
    at.slider(key="generate_n").set_value(3)
    at.checkbox(key="generate_fixed").check()
    at.button(key="generate").click().run()
    assert not at.exception and not at.error, texts(at.error)
    drawings, _ = at.session_state["generate_results"]
    assert len(drawings) == 3  # a barely trained model may end a drawing at once: 0 points
    assert len(at.image) >= 3
    # the same seed gives the same drawings
    at.button(key="generate").click().run()
    again, _ = at.session_state["generate_results"]
    assert all((a == b).all() for a, b in zip(drawings, again))


def test_replay_draws_a_growing_prefix():
    at = open_page("pages/3_Generate.py")
    at.slider(key="generate_n").set_value(2)
    at.checkbox(key="generate_fixed").check()
    at.button(key="generate").click().run()
    drawings, _ = at.session_state["generate_results"]
    longest = max(range(2), key=lambda i: len(drawings[i]))
    if len(drawings[longest]) < 3:
        pytest.skip("the tiny model drew almost nothing")
    at.segmented_control(key="generate_replay_pick").set_value(longest).run()
    replay = at.slider(key=f"generate_replay_{longest}_k")
    assert replay.value == len(drawings[longest])
    full = at.image[-1].value
    replay.set_value(2).run()
    assert not at.exception
    assert at.image[-1].value != full
    at.button(key=f"generate_replay_{longest}_play").click().run()
    assert not at.exception


def test_generate_unconditional():
    at = open_page("pages/3_Generate.py", "tiny_uncond")
    at.button(key="generate").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert len(at.session_state["generate_results"][0]) == 6


def test_empty_canvas_gives_a_message():
    at = open_page("pages/1_Draw_and_complete.py")
    at.button(key="complete").click().run()
    assert not at.exception
    assert "empty" in texts(at.warning)
    assert "draw_results" not in at.session_state


def test_single_dot_gives_a_message():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(fabric_path([(100, 100), (100, 100)])))
    at.button(key="complete").click().run()
    assert not at.exception
    assert "dot" in texts(at.warning) or at.error, texts(at.warning)
    assert "draw_results" not in at.session_state


def test_complete_shows_candidates_with_the_prefix():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(4)
    at.button(key="complete").click().run()
    assert not at.exception and not at.error, texts(at.error)
    result = at.session_state["draw_results"]
    assert len(result["drawings"]) == 4
    prefix = result["input"]
    for drawing in result["drawings"]:
        assert (drawing[: len(prefix)] == prefix).all()
    assert result["prefix_len"] == len(prefix)
    assert len(at.download_button) == 3  # SVG, PNG and JSON of the drawing shown in place
    assert at.button(key="draw_keep")
    assert at.segmented_control(key="draw_pick").value == 0


def test_keep_puts_the_continuation_on_the_canvas_and_drops_the_results():
    """Keep adds the chosen candidate's strokes after the user's, where they were drawn; the
    results, made from the drawing before, are gone; Complete works again on the new drawing."""
    import numpy as np

    from sketch_model.canvas import fabric_to_polylines
    from sketch_model.strokes import stroke3_to_polylines

    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(3)
    at.button(key="complete").click().run()
    result = at.session_state["draw_results"]
    pick = max(range(3), key=lambda i: len(result["drawings"][i]))  # one that adds strokes
    at.segmented_control(key="draw_pick").set_value(pick).run()
    chosen = result["drawings"][pick]
    assert len(chosen) > len(result["input"])
    user_lines = stroke3_to_polylines(result["input"])
    model_lines = stroke3_to_polylines(chosen)[len(user_lines):]
    at.button(key="draw_keep").click().run()
    assert not at.exception and not at.error, texts(at.error)
    objects = at.session_state["draw_initial"]["objects"]
    assert objects[0] == circle_stroke() and len(objects) == 1 + len(model_lines)
    kept, _ = fabric_to_polylines({"objects": objects[1:]})
    for mine, theirs in zip(kept, model_lines):
        np.testing.assert_allclose(mine, theirs, atol=1e-3)
    assert "draw_results" not in at.session_state
    at.button(key="complete").click().run()
    assert len(at.session_state["draw_results"]["input"]) > len(result["input"])


def test_results_belong_to_their_drawing():
    """A new stroke or Clear makes the results stale: they are dropped, not shown."""
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(1)
    at.button(key="complete").click().run()
    assert "draw_results" in at.session_state
    draw(at, "draw", canvas(circle_stroke(), circle_stroke(r=30)))
    at.run()
    assert "draw_results" not in at.session_state
    at.button(key="complete").click().run()
    at.button(key="draw_clear").click().run()
    assert "draw_results" not in at.session_state
    assert "Draw on the canvas" in texts(at.info)


def test_live_mode_completes_after_each_stroke_without_a_click():
    at = open_page("pages/1_Draw_and_complete.py")
    at.slider(key="draw_n").set_value(2)
    at.toggle(key="draw_live").set_value(True).run()
    assert "draw_results" not in at.session_state
    draw(at, "draw", canvas(circle_stroke()))
    at.run()
    first = at.session_state["draw_results"]
    assert len(first["drawings"]) == 2
    at.run()  # nothing new drawn: the same results, not fresh ones
    assert at.session_state["draw_results"] is first or \
        at.session_state["draw_results"]["digest"] == first["digest"]
    draw(at, "draw", canvas(circle_stroke(), circle_stroke(r=30)))
    at.run()
    assert at.session_state["draw_results"]["digest"] != first["digest"]


def test_the_drawing_and_results_survive_leaving_the_page():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(2)
    at.button(key="complete").click().run()
    results = at.session_state["draw_results"]
    at.switch_page("pages/3_Generate.py").run()
    at.switch_page("pages/1_Draw_and_complete.py").run()
    assert not at.exception
    version = at.session_state["draw_version"]
    assert at.session_state["draw_initial"]["objects"] == [circle_stroke()] and version >= 1
    assert at.session_state["draw_results"]["digest"] == results["digest"]


def test_reconstruct_with_a_vae_and_not_without():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(2)
    at.button(key="reconstruct").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.session_state["draw_results"]["kind"] == "reconstruction"
    assert len(at.session_state["draw_results"]["drawings"]) == 2

    at = open_page("pages/1_Draw_and_complete.py", "tiny_uncond")
    assert at.button(key="reconstruct").disabled


def test_too_long_drawing_is_fitted_with_a_message():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(*zigzags(strokes=6, corners=80)))  # about 480 points, max 250
    at.slider(key="draw_n").set_value(1)
    at.button(key="complete").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert texts(at.info), "fit_to_model's message is shown"
    assert len(at.session_state["draw_results"]["input"]) <= 250


def test_undo_and_clear():
    at = open_page("pages/1_Draw_and_complete.py")
    draw(at, "draw", canvas(circle_stroke(), circle_stroke(r=30)))
    at.run()
    at.button(key="draw_undo").click().run()
    assert at.session_state["draw_initial"]["objects"] == [circle_stroke()]
    assert at.session_state["draw_json"]["objects"] == [circle_stroke()]
    at.button(key="draw_clear").click().run()
    assert not at.session_state["draw_json"]["objects"]
    at.button(key="complete").click().run()
    assert "empty" in texts(at.warning)


def test_interpolate_moves_along_the_path():
    at = open_page("pages/2_Interpolate.py")
    draw(at, "interp_A", canvas(circle_stroke()))
    draw(at, "interp_B", canvas(fabric_path([(20, 20), (300, 40), (200, 300), (30, 250)])))
    at.button(key="interp_encode").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.session_state["interp"]["z"].shape[0] == 2
    before = [img.value for img in at.image]
    at.slider(key="interp_t").set_value(0.0).run()
    frames = at.session_state["interp"]["frames"]
    assert any(key[0] == "fine" and key[1] == 0 for key in frames)
    at.slider(key="interp_t").set_value(1.0).run()
    assert any(key[0] == "fine" and key[1] == 20 for key in frames)
    assert not at.exception and before


def test_interpolate_from_a_dataset():
    at = open_page("pages/2_Interpolate.py")
    at.segmented_control(key="interp_source").set_value("Pick from a dataset").run()
    assert not at.exception and not at.error, texts(at.error)
    at.button(key="interp_encode").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "interp" in at.session_state


def test_interpolate_refuses_an_unconditional_model():
    at = open_page("pages/2_Interpolate.py", "tiny_uncond")
    assert "unconditional" in texts(at.warning)


def test_gallery_and_latent_map():
    at = open_page("pages/5_Dataset_gallery.py")
    assert not at.error, texts(at.error)
    assert at.image, "a grid of sketches"
    at.slider(key="latent_count").set_value(20)
    at.button(key="latent_encode").click().run()
    assert not at.exception and not at.error, texts(at.error)
    key, xy = at.session_state["latent"]
    assert xy.shape == (20, 2)


def test_quickdraw_categories_in_the_gallery():
    at = open_page("pages/5_Dataset_gallery.py")
    options = at.selectbox(key="gallery_source").options
    if "Quick, Draw! categories" not in options:
        pytest.skip("no Quick, Draw! files in the data directory")
    at.selectbox(key="gallery_source").set_value("Quick, Draw! categories").run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.image


def test_upload_that_is_not_a_sketch_file():
    at = open_page("pages/4_Train.py")
    at.file_uploader(key="train_uploads").set_value(
        [("bad.npz", b"this is not a sketch file", "application/octet-stream")]).run()
    assert not at.exception
    assert "not a sketch file" in texts(at.sidebar.error)


def test_upload_of_a_quickdraw_file_is_accepted():
    line = json.dumps({"word": "cat", "key_id": "1", "recognized": True, "countrycode": "GB",
                       "timestamp": "2017-03-01", "drawing": [[[10, 60, 110], [20, 80, 20]],
                                                              [[30, 90], [100, 100]]]})
    at = open_page("pages/4_Train.py")
    at.file_uploader(key="train_uploads").set_value(
        [("cats.ndjson", (line + "\n").encode(), "application/x-ndjson")]).run()
    assert not at.exception
    assert not at.sidebar.error, texts(at.sidebar.error)


def _fake_job(app_dirs, state: str, error: str | None = None, pid: int | None = None) -> None:
    """A job pointer and run directory as the train command leaves them, without training."""
    pid = pid or os.getpid()
    runs = app_dirs["SKETCH_RUNS_DIR"]
    run = runs / f"fake-{state}"
    run.mkdir(exist_ok=True)
    (run / "status.json").write_text(json.dumps(
        {"state": state, "step": 3, "steps": 10, "pid": pid, "error": error}))
    (run / "log.csv").write_text("step,loss,L_R,L_KL,lr,kl_weight\n1,2.0,1.5,0.5,0.001,0.01\n"
                                 "2,1.8,1.4,0.4,0.001,0.02\n")
    (runs / "current_job.json").write_text(json.dumps(
        {"run_dir": str(run), "pid": pid, "started": 0}))


def test_a_second_job_is_refused(app_dirs):
    # a live process whose command line names sketch_model stands in for the training job
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "sketch_model"])
    _fake_job(app_dirs, "running", pid=stand_in.pid)
    try:
        at = open_page("pages/4_Train.py")
        assert "fake-running" in texts(at.get("progress")) or at.button(key="train_stop")
        at.button(key="train_start").click().run()
        assert "already running" in texts(at.error)
    finally:
        stand_in.kill()
        stand_in.wait()
        (app_dirs["SKETCH_RUNS_DIR"] / "current_job.json").unlink()


def test_a_failed_job_shows_its_error(app_dirs):
    _fake_job(app_dirs, "failed", "DataFileError: the training set is empty")
    try:
        at = open_page("pages/4_Train.py")
        assert "the training set is empty" in texts(at.error)
        assert at.get("plotly_chart"), "the curves of the log so far"
    finally:
        (app_dirs["SKETCH_RUNS_DIR"] / "current_job.json").unlink()


def test_finished_runs_appear_in_the_model_picker(app_dirs, tiny_models):
    run = app_dirs["SKETCH_RUNS_DIR"] / "my-sheep"
    shutil.copytree(tiny_models / "tiny_vae", run)
    try:
        at = open_page("pages/3_Generate.py", "my-sheep (your run)")
        assert "my-sheep (your run)" in at.sidebar.selectbox[0].options
        assert at.sidebar.selectbox[0].value == "my-sheep (your run)"
        at.button(key="generate").click().run()
        assert not at.error, texts(at.error)
    finally:
        shutil.rmtree(run)


def test_two_sessions_keep_their_own_drawings_and_results():
    """Two browser tabs are two sessions: what one draws and gets back never shows in the other."""
    one = open_page("pages/1_Draw_and_complete.py")
    two = open_page("pages/1_Draw_and_complete.py")
    draw(one, "draw", canvas(circle_stroke()))
    one.slider(key="draw_n").set_value(2)
    one.button(key="complete").click().run()
    draw(two, "draw", canvas(circle_stroke(cx=120, r=40)))
    two.slider(key="draw_n").set_value(3)
    two.button(key="complete").click().run()
    assert not one.exception and not two.exception
    first, second = one.session_state["draw_results"], two.session_state["draw_results"]
    assert len(first["drawings"]) == 2 and len(second["drawings"]) == 3
    assert first["input"].shape != second["input"].shape or not (first["input"] == second["input"]).all()
    one.run()  # a rerun of the first session still shows its own results
    assert len(one.session_state["draw_results"]["drawings"]) == 2


def test_the_card_of_a_streamed_run_says_so(app_dirs, tiny_models):
    run = app_dirs["SKETCH_RUNS_DIR"] / "my-cats"
    shutil.copytree(tiny_models / "tiny_vae", run)
    info = json.loads((run / "dataset.json").read_text())
    info.update(sources=["/data/cat.ndjson", "/data/pig.ndjson"], classes=["cat", "pig"],
                streamed=True, sizes={"valid": 1234})
    (run / "dataset.json").write_text(json.dumps(info))
    try:
        at = open_page("pages/3_Generate.py", "my-cats (your run)")
        shown = texts(at.markdown) + texts(at.sidebar.markdown)
        assert "cat.ndjson, pig.ndjson (2 classes); streamed, 1234 validation sketches" in shown
    finally:
        shutil.rmtree(run)


def test_the_model_card_is_shown_as_written_with_its_picture(app_dirs, tiny_models):
    run = app_dirs["SKETCH_RUNS_DIR"] / "carded"
    shutil.copytree(tiny_models / "tiny_vae", run)
    shutil.copy2(APP.parent / "assets" / "models" / "sheep_vae" / "samples.png", run / "samples.png")
    outside = os.path.relpath(APP.parent / "assets" / "models" / "sheep_uncond" / "samples.png", run)
    (run / "README.md").write_text("# carded: a tiny VAE\n\n![16 samples](samples.png)\n\n"
                                   f"## Limitations\nDraws only sheep.\n\n![outside]({outside})\n")
    try:
        at = open_page("pages/3_Generate.py", "carded (your run)")
        shown = texts(at.sidebar.markdown)
        assert "# carded: a tiny VAE" in shown and "## Limitations\nDraws only sheep." in shown
        pictures = at.sidebar.image
        assert len(pictures) == 1  # the card's own picture; never a file outside its directory
        assert pictures[0].captions == ["16 samples"]
    finally:
        shutil.rmtree(run)


def test_a_google_model_completes_at_the_canvas_scale(tmp_path, monkeypatch):
    """A downloaded Google model is offered by its class name; the canvas drawing goes to it at
    the model's size and its continuation comes back at the canvas's."""
    import numpy as np

    cache = tmp_path / "cache" / "sketchrnn_js"
    cache.mkdir(parents=True)
    shutil.copy(SHARED_GOOGLE / "key.gen.json", cache / "key.gen.json")
    monkeypatch.setenv("SKETCH_MODEL_CACHE", str(tmp_path / "cache"))
    at = open_page("pages/1_Draw_and_complete.py", model="key (Google)")
    assert "key (Google)" in at.sidebar.selectbox[0].options
    draw(at, "draw", canvas(circle_stroke()))
    at.slider(key="draw_n").set_value(2)
    at.button(key="complete").click().run()
    assert not at.exception and not at.error, texts(at.error)
    result = at.session_state["draw_results"]
    prefix = result["input"]
    for drawing in result["drawings"]:
        np.testing.assert_allclose(drawing[:len(prefix)], prefix, rtol=1e-5, atol=1e-3)
        added = np.cumsum(drawing[:, :2], axis=0)[len(prefix):]
        if len(added):  # the continuation stays near the canvas, not 850 / 360 times larger
            assert np.ptp(added, axis=0).max() < 3 * 360


def test_settings_survive_leaving_the_page():
    at = open_page("pages/4_Train.py")
    at.number_input(key="train_steps").set_value(1230).run()
    at.selectbox(key="train_size").set_value("Small").run()
    at.switch_page("pages/3_Generate.py").run()
    at.switch_page("pages/4_Train.py").run()
    assert not at.exception
    assert at.number_input(key="train_steps").value == 1230
    assert at.selectbox(key="train_size").value == "Small"
    assert not texts(at.warning), texts(at.warning)  # no "set via the Session State API" notice
    at.switch_page("pages/1_Draw_and_complete.py").run()
    at.slider(key="draw_n").set_value(7).run()
    at.switch_page("pages/4_Train.py").run()
    at.switch_page("pages/1_Draw_and_complete.py").run()
    assert at.slider(key="draw_n").value == 7


def test_a_category_not_here_is_downloaded_from_the_page_and_trained_on(tmp_path, monkeypatch):
    """Every category is offered; one that is not here comes from a local mirror of the bucket
    (127.0.0.1) into the cache, and the training set's size is shown before Start."""
    from tests.helpers import local_server
    from tests.test_download import BucketHandler

    root = tmp_path / "bucket"
    (root / "sketchrnn").mkdir(parents=True)
    shutil.copy(APP.parent.parent / "shared" / "data" / "aaron_sheep.npz",
                root / "sketchrnn" / "zigzag.npz")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("SKETCH_MODEL_CACHE", str(tmp_path / "cache"))
    with local_server(BucketHandler, root=root, requests=[], ignore_range=False,
                      drop_after=None) as server:
        monkeypatch.setenv("SKETCH_MODEL_DATA_URL", server.url)
        at = open_page("pages/4_Train.py")
        picker = at.multiselect(key="train_categories")
        assert len(picker.options) == 345
        at.multiselect(key="train_bundled").set_value([]).run()
        picker.set_value(["zigzag"]).run()
        assert "Not here yet: zigzag" in texts(at.warning)
        at.button(key="train_download").click().run()
        assert not at.exception and not at.error, texts(at.error)
        assert (tmp_path / "cache" / "npz" / "zigzag.npz").is_file()
        assert server.requests and server.requests[0][0] == "/sketchrnn/zigzag.npz"
        assert "Training set: 7,400 drawings, 300 for validation." in texts(at.caption)
        assert not texts(at.warning)


def test_without_a_network_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCH_MODEL_DATA_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("SKETCH_MODEL_CACHE", str(tmp_path / "cache"))
    at = open_page("pages/4_Train.py")
    at.multiselect(key="train_categories").set_value(["zigzag"]).run()
    at.button(key="train_download").click().run()
    assert not at.exception
    assert "Without a network" in texts(at.error)
