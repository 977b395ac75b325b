"""End to end in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The app runs as `streamlit run app/Home.py` on a free local port, pointed at the tiny models.
Screenshots and the timings (Complete, live mode, page switches, the first visit) go to
test-artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from canvas_json import APP
from conftest import data_dir
from tests.helpers import local_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium "
                                       "(apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BUNDLED_MODELS = APP.parent / "assets" / "models"


@contextlib.contextmanager
def start_app(app_dirs, workdir: Path, name: str):
    """`streamlit run app/Home.py` on a free port; yields its base URL, runs and model names.

    Its models are the tiny test models plus the bundled ones (for a realistic timing).
    """
    port = free_port()
    runs = workdir / f"{name}_runs"  # its own runs directory: training starts here
    models = workdir / f"{name}_models"
    runs.mkdir()
    models.mkdir()
    for source in [*app_dirs["SKETCH_MODELS_DIR"].iterdir(),
                   *(BUNDLED_MODELS.iterdir() if BUNDLED_MODELS.is_dir() else [])]:
        if source.is_dir() and not (models / source.name).exists():
            (models / source.name).symlink_to(source.resolve())
    env = {**os.environ, **{k: str(v) for k, v in app_dirs.items()}, "SKETCH_RUNS_DIR": str(runs),
           "SKETCH_MODELS_DIR": str(models)}
    log = open(workdir / f"{name}_streamlit.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP / "Home.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=APP.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            log.flush()
            pytest.fail(f"streamlit did not start:\n{Path(log.name).read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield {"url": url, "runs": runs, "models": sorted(p.name for p in models.iterdir())}
    finally:
        _stop_training(runs)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server(app_dirs, workdir):
    with start_app(app_dirs, workdir, "browser") as app:
        yield app


def _stop_training(runs: Path) -> None:
    """End a training job the test started (by its recorded pid), so none outlives the tests."""
    pointer = runs / "current_job.json"
    if pointer.exists():
        pid = json.loads(pointer.read_text())["pid"]
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def new_page(browser):
    """A page in a fresh browser context, closed on exit."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser, server):
    with new_page(browser) as page:
        yield page


def open_page(page, server, path: str = "") -> None:
    page.goto(f"{server['url']}/{path}")
    page.wait_for_selector("[data-testid='stSidebar']")
    page.locator("h1:visible").first.wait_for()  # the page's script has started drawing
    wait_idle(page)


def wait_idle(page, timeout: float = 120) -> None:
    """Wait until the script has finished running (no 'running' status widget)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout * 1000)


def choose_model(page, label: str = "tiny_vae") -> None:
    """Pick a model in the sidebar's model picker."""
    page.locator("[data-testid='stSidebar'] [class*='st-key-model_picker_'] input").click()
    page.get_by_role("option", name=label, exact=True).click()
    wait_idle(page)
    page.wait_for_function(
        "(label) => document.querySelector(\"[data-testid='stSidebar'] [class*='st-key-model_picker_']"
        " input\").value === label", arg=label)


def draw_stroke(page, key: str, points: list[tuple[float, float]], version: int = 0) -> None:
    """Real mouse events inside the canvas: press, move through the points, release; then wait
    until the app has the stroke (its stroke count under the canvas goes up)."""
    canvas = page.locator(f".st-key-{key}_{version} canvas.upper-canvas")
    canvas.wait_for()
    canvas.scroll_into_view_if_needed()
    count = page.locator(f".st-key-{key}_count")
    before = int(count.inner_text().split()[0])
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=4)
    page.mouse.up()
    expect(count).to_have_text(re.compile(rf"^{before + 1} stroke"))
    wait_idle(page)


def sheep_points(cx: float = 170, cy: float = 170) -> list[tuple[float, float]]:
    """A rough loop, like the body of a sheep."""
    import math

    return [(cx + 90 * math.cos(a / 10 * math.pi), cy + 60 * math.sin(a / 10 * math.pi))
            for a in range(21)]


def test_home(page, server, artifacts):
    open_page(page, server)
    page.get_by_text("tiny_vae").first.wait_for()
    page.screenshot(path=str(artifacts / "home.png"), full_page=True)


def _complete_four(page) -> float:
    """Click Complete; the seconds until 4 new candidate drawings are on the page."""
    images = "[class*='st-key-draw_candidate_'] img"
    before = page.evaluate(f"() => [...document.querySelectorAll(\"{images}\")].map(i => i.src).join()")
    started = time.perf_counter()
    page.get_by_role("button", name="Complete", exact=True).click()
    page.wait_for_function(
        f"""(before) => {{ const imgs = [...document.querySelectorAll("{images}")];
                          return imgs.length === 4 && imgs.map(i => i.src).join() !== before; }}""",
        arg=before)
    seconds = time.perf_counter() - started
    wait_idle(page)
    return seconds


def _check_downloads(page) -> None:
    """The Save menu of the drawing shown in place gives a real SVG, PNG and stroke-3 JSON."""
    first = page.locator(".st-key-draw_shown")
    for label, check in (("SVG", lambda b: b"<svg" in b[:200]),
                         ("PNG", lambda b: b.startswith(b"\x89PNG")),
                         ("JSON", lambda b: all(len(row) == 3 for row in json.loads(b)))):
        first.get_by_role("button", name="Save").click()
        with page.expect_download() as download:
            page.get_by_role("button", name=label, exact=True).click()
        content = Path(download.value.path()).read_bytes()
        assert check(content), f"{label} download: {content[:80]!r}"
        page.keyboard.press("Escape")


def test_draw_and_complete_four_candidates(page, server, artifacts):
    open_page(page, server, "Draw_and_complete")
    choose_model(page, "tiny_vae")
    slider = page.locator(".st-key-draw_n input[type='range']")
    assert slider.input_value() == "4", "4 candidates requested"
    draw_stroke(page, "draw", sheep_points())
    assert page.locator("[class*='st-key-draw_candidate_']").count() == 0
    timings = {"complete_4_candidates_click_to_result_s": {"tiny_vae": round(_complete_four(page), 3)}}
    assert page.locator("[class*='st-key-draw_candidate_']").count() == 4
    assert page.locator("[class*='st-key-draw_candidate_'] img").count() == 4
    page.screenshot(path=str(artifacts / "draw_and_complete.png"), full_page=True)
    _check_downloads(page)
    if "sheep_vae" in server["models"]:  # the bundled model: the time a user waits
        choose_model(page, "sheep_vae")
        _complete_four(page)  # the first call warms up
        runs = [_complete_four(page) for _ in range(5)]
        timings["complete_4_candidates_click_to_result_s"]["sheep_vae"] = round(sorted(runs)[2], 3)
        timings["complete_4_candidates_click_to_result_s"]["sheep_vae_runs"] = [round(r, 3) for r in runs]
        page.screenshot(path=str(artifacts / "draw_and_complete_sheep_vae.png"), full_page=True)
    record_timings(artifacts, "complete_4_candidates_click_to_result_s",
                   timings["complete_4_candidates_click_to_result_s"])


def test_google_class_completes_in_place_keep_and_draw_on(page, server, artifacts):
    """Pick a Google class, draw half a bicycle with the mouse, Complete: the continuation is
    drawn on the drawing itself; Keep puts it on the canvas; draw one more stroke and Complete
    again."""
    if "google_bicycle" not in server["models"]:
        pytest.fail("the bundled Google bicycle model is missing from assets/models")
    open_page(page, server, "Draw_and_complete")
    choose_model(page, "bicycle (Google)")
    wheel = [(110 + 45 * math.cos(a / 10 * math.pi), 230 + 45 * math.sin(a / 10 * math.pi))
             for a in range(21)]
    draw_stroke(page, "draw", wheel)
    draw_stroke(page, "draw", [(110, 230), (170, 160), (230, 230)])
    _complete_four(page)
    shown = page.locator(".st-key-draw_shown img")
    expect(shown).to_have_count(1)
    assert shown.bounding_box()["width"] >= 300, "the candidate is shown at the canvas's size"
    page.screenshot(path=str(artifacts / "complete_in_place.png"), full_page=True)
    page.locator(".st-key-draw_keep").get_by_role("button", name="Keep").click()
    wait_idle(page)
    # the kept continuation is on the canvas as strokes (the remounted canvas reports them)
    expect(page.locator(".st-key-draw_count")).not_to_have_text(re.compile(r"^[0-2] stroke"))
    wait_idle(page)
    expect(page.locator("[class*='st-key-draw_candidate_']")).to_have_count(0)
    version = next(v for v in range(20)  # the canvas was remounted with the kept strokes
                   if page.locator(f".st-key-draw_{v} canvas.upper-canvas").count())
    draw_stroke(page, "draw", [(60, 60), (100, 50)], version=version)
    _complete_four(page)
    page.screenshot(path=str(artifacts / "complete_in_place_after_keep.png"), full_page=True)


def test_live_mode_completes_after_a_stroke(page, server):
    open_page(page, server, "Draw_and_complete")
    choose_model(page, "tiny_uncond")
    page.locator(".st-key-draw_live label").click()
    wait_idle(page)
    draw_stroke(page, "draw", sheep_points())
    expect(page.locator("[class*='st-key-draw_candidate_'] img")).to_have_count(4)
    page.locator(".st-key-draw_clear button").click()
    wait_idle(page)
    expect(page.locator("[class*='st-key-draw_candidate_']")).to_have_count(0)


def test_undo_clear_and_an_empty_canvas(page, server):
    open_page(page, server, "Draw_and_complete")
    choose_model(page, "tiny_vae")
    draw_stroke(page, "draw", sheep_points())
    draw_stroke(page, "draw", [(40, 40), (120, 60), (200, 40)])
    page.locator(".st-key-draw_undo button").click()
    wait_idle(page)
    page.locator(".st-key-draw_1 canvas.upper-canvas").wait_for()  # remounted with one stroke
    expect(page.locator(".st-key-draw_count")).to_have_text("1 stroke")
    page.locator(".st-key-draw_clear button").click()
    wait_idle(page)
    page.locator(".st-key-draw_2 canvas.upper-canvas").wait_for()
    expect(page.locator(".st-key-draw_count")).to_have_text("0 strokes")
    expect(page.locator(".st-key-draw_clear button")).to_be_disabled()  # nothing left to clear
    page.get_by_role("button", name="Complete", exact=True).click()
    page.get_by_text("The canvas is empty").wait_for()


def test_the_canvas_toolbar_covers_nothing(page, server):
    """The canvas component's own toolbar (it sits above the canvas, over the caption, in a
    shadow root) is clipped away: the caption gets the clicks where the toolbar would be."""
    open_page(page, server, "Draw_and_complete")
    draw_stroke(page, "draw", sheep_points())
    toolbar = page.locator(".st-key-draw_0 .dc-toolbar-card")
    expect(toolbar).to_have_count(1)  # the component still makes it; it must not show
    page.locator(".st-key-draw_0 canvas.upper-canvas").hover()  # the toolbar shows on hover
    box = toolbar.bounding_box()
    hit = page.evaluate(
        """([x, y]) => { const el = document.elementFromPoint(x, y);
                         return el ? el.closest(".st-key-draw_0") === null : false; }""",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert hit, "the canvas's toolbar is on top of the page above the canvas"
    expect(page.get_by_text("Draw here; the model finishes your drawing")).to_be_visible()


def test_interpolation_slider_changes_the_drawing(page, server, artifacts):
    open_page(page, server, "Interpolate")
    # A trained model: a barely trained one decodes every z to nearly the same few points.
    choose_model(page, "sheep_vae")
    draw_stroke(page, "interp_A", sheep_points(150, 150))
    draw_stroke(page, "interp_B", [(30, 30), (250, 40), (200, 260), (40, 240), (30, 30)])
    page.get_by_role("button", name="Encode both").click()
    point = page.locator(".st-key-interp_point img")
    point.wait_for()
    wait_idle(page)
    before = point.get_attribute("src")
    slider = page.locator(".st-key-interp_t input[type='range']")
    slider.focus()
    for _ in range(6):  # 0.50 -> 0.80 in steps of 0.05
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => Number(document.querySelector(\".st-key-interp_t input[type='range']\").value) > 0.75")
    wait_idle(page)
    page.wait_for_function(
        "(before) => document.querySelector('.st-key-interp_point img').getAttribute('src') !== before",
        arg=before)
    assert point.get_attribute("src") != before
    point.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "interpolate.png"))


def test_generate(page, server, artifacts):
    open_page(page, server, "Generate")
    choose_model(page, "tiny_vae")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function(
        "() => document.querySelectorAll(\"[class*='st-key-generate_candidate_'] img\").length >= 6")
    wait_idle(page)
    page.screenshot(path=str(artifacts / "generate.png"), full_page=True)


def test_dataset_gallery(page, server, artifacts):
    open_page(page, server, "Dataset_gallery")
    choose_model(page, "tiny_vae")
    page.locator("[data-testid='stImage'] img").first.wait_for()
    page.screenshot(path=str(artifacts / "dataset_gallery.png"), full_page=True)
    page.get_by_role("tab", name="Latent map").click()
    page.get_by_role("button", name="Encode and project").click()
    points = page.locator(".st-key-latent_map .js-plotly-plot .scatterlayer .point")
    points.first.wait_for()
    wait_idle(page)
    points.nth(3).click(force=True)  # clicking a point shows its drawing
    page.locator(".st-key-latent_drawing img").wait_for()
    wait_idle(page)
    page.locator(".st-key-latent_drawing img").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "latent_map.png"))


CURVE_POINTS = ("() => { const plot = document.querySelector('.st-key-train_chart .js-plotly-plot');"
                " return plot && plot.data && plot.data.length ? plot.data[0].x.length : 0; }")


STEPS_SHOWN = ("() => { const bar = document.querySelector("
               "\"[data-testid='stMain'] [data-testid='stProgress']\");"
               " const m = bar && bar.innerText.match(/step (\\d+)/);"
               " return m ? parseInt(m[1], 10) : -1; }")


def _wait_for_training(page, server, condition: str, timeout: float = 300) -> None:
    """Poll the page until the JS `condition` holds; fail at once, with the job's console
    output, if the job fails or the time runs out."""
    deadline = time.time() + timeout
    while not page.evaluate(condition):
        failed = page.get_by_text("Training failed").count() > 0
        if failed or time.time() > deadline:
            logs = "\n".join(p.read_text(errors="replace")[-3000:]
                              for p in server["runs"].glob(".*.console.log"))
            pytest.fail(("training failed" if failed else f"timed out waiting for {condition}")
                        + f"\n{logs}")
        page.wait_for_timeout(1000)


def start_training(page) -> None:
    """Set 1,000 steps with a checkpoint every 10 in the Train page's sidebar, then Start."""
    sidebar = page.locator("[data-testid='stSidebar']")
    for key, value in (("train_steps", "1000"), ("train_save_every", "10")):
        field = sidebar.locator(f".st-key-{key} input")
        field.fill(value)
        field.press("Enter")
        wait_idle(page)
    sidebar.get_by_role("button", name="Start training").click()


def test_training_from_the_sidebar(page, server, artifacts):
    open_page(page, server, "Train")
    sidebar = page.locator("[data-testid='stSidebar']")
    start_training(page)
    page.locator("[data-testid='stProgress']").wait_for()
    # The curve appears (log.csv's first rows), then grows as the job logs more.
    _wait_for_training(page, server, f"({CURVE_POINTS})() > 0")
    first, points = page.evaluate(STEPS_SHOWN), page.evaluate(CURVE_POINTS)
    assert first >= 0, "the progress bar names no step"
    # the curve (log.csv) and the progress bar (status.json) refresh on their own schedules
    _wait_for_training(page, server, f"({CURVE_POINTS})() > {points}")
    _wait_for_training(page, server, f"({STEPS_SHOWN})() > {first}")
    page.screenshot(path=str(artifacts / "train.png"), full_page=True)
    # a second start is refused while the job runs
    sidebar.get_by_role("button", name="Start training").click()
    page.get_by_text("only one job runs at a time").wait_for()
    page.locator(".st-key-train_stop").get_by_role("button", name="Stop").click()
    page.get_by_text("The model is saved in").wait_for(timeout=300_000)  # stopped cleanly
    # the stopped run is a model now, in every page's model picker
    open_page(page, server, "Generate")
    page.locator("[data-testid='stSidebar'] [class*='st-key-model_picker_'] input").click()
    expect(page.get_by_role("option", name=re.compile(r"\(your run\)"))).to_have_count(1)


PAGES = {"Draw_and_complete": "Draw & complete", "Interpolate": "Interpolate",
         "Generate": "Generate", "Train": "Train",
         "Dataset_gallery": "Dataset gallery & latent map"}
READING_SECONDS = 8  # how long the first visitor reads the home page before going on


def record_timings(artifacts: Path, name: str, value) -> None:
    """Add one figure to test-artifacts/timings.json (kept between the tests of a run)."""
    path = artifacts / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = value
    timings["machine"] = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    path.write_text(json.dumps(timings, indent=2) + "\n")
    print(name, value)


def switch_to(page, path: str) -> float:
    """Click the page's link in the sidebar; the seconds until its script has finished."""
    started = time.perf_counter()
    page.locator("[data-testid='stSidebarNav'] a[href$='/" + path + "']").click()
    page.locator("h1:visible", has_text=PAGES[path]).first.wait_for()  # its script runs
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    return time.perf_counter() - started


def test_page_switches(page, server, artifacts):
    """Every page once (each loads what it needs), then two rounds of switches, timed."""
    open_page(page, server)
    for path in PAGES:
        switch_to(page, path)
        wait_idle(page)
    rounds = {path: [] for path in PAGES}
    for _ in range(2):
        for path in PAGES:
            rounds[path].append(round(switch_to(page, path), 3))
            wait_idle(page)
    record_timings(artifacts, "page_switch_s", rounds)


def test_live_mode_latency_with_a_bundled_model(page, server, artifacts):
    """Complete as I draw, sheep_vae (512 units), 4 candidates: stroke end to candidates,
    median of 5 strokes."""
    if "sheep_vae" not in server["models"]:
        pytest.fail("the bundled sheep_vae is missing from assets/models")
    open_page(page, server, "Draw_and_complete")
    choose_model(page, "sheep_vae")
    page.locator(".st-key-draw_live label").click()
    wait_idle(page)
    images = "[class*='st-key-draw_candidate_'] img"
    canvas = page.locator(".st-key-draw_0 canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    runs = []
    for stroke in range(5):
        before = page.evaluate(f"() => [...document.querySelectorAll(\"{images}\")].map(i => i.src).join()")
        points = sheep_points(170, 100 + 50 * stroke)
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
        page.mouse.up()
        started = time.perf_counter()
        page.wait_for_function(
            f"""(before) => {{ const imgs = [...document.querySelectorAll("{images}")];
                              return imgs.length === 4 && imgs.map(i => i.src).join() !== before; }}""",
            arg=before)
        runs.append(round(time.perf_counter() - started, 3))
        wait_idle(page)
    record_timings(artifacts, "live_stroke_end_to_4_candidates_s",
                   {"sheep_vae": sorted(runs)[2], "sheep_vae_runs": runs})


def test_first_visit_to_the_drawing_page_after_the_app_starts(browser, app_dirs, workdir, artifacts):
    """A fresh app process: the home page, a few seconds of reading, then Draw & complete with
    the default model (sheep_vae, read through Keras): the seconds from the click until the
    page has finished, the model loaded (its summary shown) and the canvas ready."""
    with start_app(app_dirs, workdir, "fresh") as fresh, new_page(browser) as page:
        open_page(page, fresh)
        page.wait_for_timeout(READING_SECONDS * 1000)
        seconds = switch_to(page, "Draw_and_complete")
        expect(page.locator(".st-key-draw_0 canvas.upper-canvas")).to_have_count(1)
        expect(page.locator("[data-testid='stSidebar']").get_by_text("Model card")).to_be_visible()
        record_timings(artifacts, "first_visit_draw_page_s",
                       {"after_reading_home_s": READING_SECONDS, "seconds": round(seconds, 3)})


class SlowBucket(BaseHTTPRequestHandler):
    """The Quick, Draw! bucket on 127.0.0.1 (files under server.root), sending each file in 20
    pieces a tenth of a second apart, so that a progress bar has time to move."""

    def do_GET(self) -> None:
        path = self.server.root / unquote(self.path).lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        piece = len(data) // 20 + 1
        for start in range(0, len(data), piece):
            self.wfile.write(data[start:start + piece])
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, *args) -> None:
        pass


def test_a_category_not_here_downloads_from_the_page_and_trains(browser, app_dirs, workdir, artifacts):
    """Pick a Quick, Draw! category that is not here, watch it download from a local mirror of
    the bucket with a progress bar, then train on it from the sidebar."""
    root = workdir / "bucket"
    (root / "sketchrnn").mkdir(parents=True)
    shutil.copy(data_dir() / "aaron_sheep.npz", root / "sketchrnn" / "zigzag.npz")
    cache = workdir / "download_cache"
    with local_server(SlowBucket, root=root) as bucket, start_app(
            {**app_dirs, "SKETCH_MODEL_DATA_URL": bucket.url, "SKETCH_MODEL_CACHE": cache,
             "no_proxy": "127.0.0.1"}, workdir, "download") as app, new_page(browser) as page:
        open_page(page, app, "Train")
        sidebar = page.locator("[data-testid='stSidebar']")
        sidebar.locator(".st-key-train_bundled input").click()
        page.keyboard.press("Backspace")  # remove the bundled sheep: train on the download alone
        page.keyboard.press("Escape")
        wait_idle(page)
        sidebar.locator(".st-key-train_categories input").click()
        page.keyboard.type("zigzag")
        page.get_by_role("option", name="zigzag · to download").click()
        page.keyboard.press("Escape")
        # Leave the select box: while it has the focus it is a line taller, and the button
        # below it moves up when it loses the focus, between the press and the release.
        sidebar.get_by_role("heading", name="Data").click()
        wait_idle(page)
        expect(sidebar.get_by_text("Not here yet: zigzag")).to_be_visible()
        sidebar.get_by_role("button", name="Download the full zigzag").click()
        expect(sidebar.locator("[data-testid='stProgress']")).to_contain_text(
            re.compile(r"Downloading zigzag: [0-9.]+ MB of [0-9.]+ MB"), timeout=30_000)
        expect(sidebar.get_by_text("Downloaded zigzag.")).to_be_visible()
        wait_idle(page)
        # nothing stale: the category now reads as here in full, and there is nothing to download
        expect(sidebar.get_by_text("zigzag · full")).to_be_visible()
        expect(sidebar.get_by_role("button", name="Download the full zigzag")).to_have_count(0)
        expect(sidebar.get_by_text("Training set: 7,400 drawings, 300 for validation.")).to_be_visible()
        downloaded = cache / "npz" / "zigzag.npz"
        assert downloaded.read_bytes() == (root / "sketchrnn" / "zigzag.npz").read_bytes()
        page.screenshot(path=str(artifacts / "train_download.png"), full_page=True)
        start_training(page)
        _wait_for_training(page, app, f"({STEPS_SHOWN})() > 0")
        run = next(p for p in app["runs"].iterdir() if (p / "dataset.json").is_file())
        sources = json.loads((run / "dataset.json").read_text())["sources"]
        assert [Path(s).name for s in sources] == ["zigzag.npz"], sources
        page.locator(".st-key-train_stop").get_by_role("button", name="Stop").click()
        page.get_by_text("The model is saved in").wait_for(timeout=300_000)
