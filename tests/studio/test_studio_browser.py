"""genlab studio in a real browser: Playwright drives Debian's headless Chromium against a studio
started on loopback over tiny runs made here. One browser and one studio server for the module."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gr = pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

from studio_runs import make_runs  # noqa: E402

from genlab.studio.app import launch  # noqa: E402

# Gradio's queue calls pandas APIs that pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT = 60_000  # ms: a busy machine is slow, never a reason to fail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return make_runs(tmp_path_factory.mktemp("studio-runs"))


@pytest.fixture(scope="module")
def studio(runs_dir):
    demo = launch(runs_dir, port=free_port(), block=False)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A browser page on the studio that records console errors, uncaught exceptions and requests
    that leave loopback."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(TIMEOUT)
        self.errors, self.outside = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else
                     self.outside.append(r.url))  # fmt: skip
        self.page.goto(url)
        self.wait_text("#msg-runs", "runs under")

    def tab(self, name: str):
        self.page.get_by_role("tab", name=name).click()

    def wait_text(self, selector: str, text: str):
        self.page.locator(selector).filter(has_text=text).first.wait_for()

    def fill(self, selector: str, value: str, enter: bool = False):
        box = self.page.locator(selector).locator("textarea, input").first
        box.fill(value)
        if enter:
            box.press("Enter")
        else:
            box.blur()

    def choose(self, selector: str, option: str):
        self.page.locator(selector).locator("input").first.click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def number(self, selector: str, value):
        box = self.page.locator(selector).locator("input[type=number]").first
        box.fill(str(value))
        box.press("Enter")
        box.blur()


@pytest.fixture(scope="module")
def page(browser, studio):
    p = Page(browser, studio)
    yield p
    p.page.close()


def test_every_page_loads_without_console_errors(page):
    page.wait_text("#msg-runs", "5 runs under")  # gpt, cnn, vae, sweep/vae-no3, gan
    assert page.page.locator("#runs-table [role=grid]").get_attribute("aria-rowcount") == "6"  # + the header
    assert "sweep/vae-no3" in page.page.locator("#runs-table").inner_text()
    for name in ["Text", "Attention", "Projector", "Images", "CNN", "Runs"]:
        page.tab(name)
    page.page.locator("#runs-curves .js-plotly-plot").wait_for()  # the first run's curves
    assert "task: classify" in page.page.locator("#runs-config").inner_text()  # the first run: cnn
    assert page.errors == [] and page.outside == []


def test_text_tokens_coloured_and_temperature_moves_the_distribution(page):
    page.tab("Text")
    page.fill("#text-prompt", "ROMEO:")
    page.page.locator("#tokens .tok").nth(5).wait_for()
    spans = page.page.locator("#tokens .tok")
    assert spans.count() == len("ROMEO:")  # a char-level run: one token per character
    assert "hsl(" in spans.nth(3).get_attribute("style")
    before = page.page.locator("#temperatures").inner_html()
    assert 'data-t="1"' in before and "(your setting)" in before
    page.number("#text-temp", 2.5)
    page.page.locator('#temperatures .tp-panel[data-t="2.5"]').wait_for()
    after = page.page.locator("#temperatures").inner_html()
    assert after != before
    hot = page.page.locator('#temperatures .tp-panel[data-t="2.5"] .tp-row').first.get_attribute("data-p")
    cold = page.page.locator('#temperatures .tp-panel[data-t="0.5"] .tp-row').first.get_attribute("data-p")
    assert float(hot) < float(cold)  # a hotter distribution is flatter: its top token has less mass
    page.page.locator("#text-go").click()
    page.page.locator("#tokens .tok.gen").first.wait_for()
    assert page.page.locator("#alternatives").count() == 1


def test_bad_input_messages_on_the_text_page(page):
    page.tab("Text")
    page.fill("#text-prompt", "")
    page.wait_text("#msg-text", "the prompt is empty")
    page.choose("#text-run", "cnn")
    page.fill("#text-prompt", "KING")
    page.wait_text("#msg-text", "needs a gpt run; this is a cnn run")
    assert "Traceback" not in page.page.content()
    page.choose("#text-run", "gpt")


def test_attention_head_view(page):
    page.tab("Attention")
    page.fill("#att-text", "to be or not", enter=True)
    page.page.locator("#headview line").first.wait_for(state="attached")
    assert page.page.locator("#headview .hv-q").count() == len("to be or not")
    page.page.locator('#headview .hv-q[data-q="5"]').hover()  # only token 5's lines stay
    shown = page.page.locator("#headview line").evaluate_all(
        "ls => ls.filter(l => l.style.display !== 'none').map(l => l.getAttribute('data-q'))"
    )
    assert shown and set(shown) == {"5"}


def test_projector_points_neighbours_and_limit(page):
    page.tab("Projector")
    page.choose("#proj-run", "vae")
    page.number("#proj-n", 120)
    page.page.locator("#proj-go").click()
    page.wait_text("#proj-scores", "NMI")
    points = page.page.locator("#proj-plot .scatterlayer path.point")
    points.nth(119).wait_for(state="attached")  # plotly draws after the scores line arrives
    assert points.count() == 120
    page.fill("#proj-query", "7", enter=True)
    page.page.locator("#neighbours tr.nb").first.wait_for()
    assert page.page.locator("#neighbours tr.nb").count() == 10
    page.page.get_by_label("tsne").check()
    page.number("#proj-n", 20000)
    page.page.locator("#proj-go").click()
    page.wait_text("#msg-projector", "tsne takes at most 10,000 points")


def test_images_latent_slider_and_anomaly_histograms(page):
    page.tab("Images")
    page.choose("#img-run", "vae")
    image = page.page.locator("#img-decoded img")
    image.wait_for()
    before = image.get_attribute("src")
    page.number("#img-z0", 2.5)
    page.page.wait_for_function("s => document.querySelector('#img-decoded img').src !== s", arg=before)
    page.choose("#img-run", "sweep/vae-no3")
    page.wait_text("#msg-images", "vae run")
    page.page.locator("#img-anom-go").click()
    page.page.locator("#img-hist .js-plotly-plot").wait_for()
    page.choose("#img-run", "gan")
    page.wait_text("#msg-images", "gan run")
    page.page.locator("#img-lerp-go").click()
    page.wait_text("#msg-images", "needs a vae run; this is a gan run")


def test_cnn_maps_one_per_channel_and_a_file_that_is_not_an_image(page, tmp_path):
    page.tab("CNN")
    page.choose("#cnn-run", "cnn")
    page.choose("#cnn-stage", "stage1")
    page.page.locator('#maps[data-stage="stage1"]').wait_for()
    assert page.page.locator("#maps img.fmap").count() == 32  # cnn-digits: widths [16, 32]
    page.page.locator("#cnn-3d .js-plotly-plot").wait_for()
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image\n")
    page.page.locator("#cnn-file input[type=file]").set_input_files(str(bad))
    page.page.locator("#cnn-file").filter(has_text="notes.txt").wait_for()
    page.page.locator("#cnn-go").click()
    page.wait_text("#msg-cnn", "is not an image")
    assert page.errors == [] and page.outside == []


def test_a_folder_with_no_runs(browser, tmp_path):
    demo = launch(tmp_path, port=free_port(), block=False)
    try:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(demo.local_url)
        page.locator("#msg-runs").filter(has_text="no genlab runs under").wait_for()
        page.close()
    finally:
        demo.close()
