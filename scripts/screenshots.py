"""Screenshots of every genlab studio page, taken in headless Chromium: docs/studio_<page>.png.

    python scripts/screenshots.py                 # trains small runs into runs/studio-demo first (~2-5 min)
    python scripts/screenshots.py --runs runs     # or shows the runs you have

The runs it trains (when --runs holds none): gpt/shakespeare-char-fast cut to 300 steps (real
text: tinyshakespeare), and on scikit-learn's 8x8 digits (real images) cnn/digits, vae/digits,
vae/digits without class 3 (for the anomaly histograms) and gan/digits, each at its recipe's
length. Prints one JSON object: the files written and the runs shown.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUIET = {"progress": False, "tensorboard": False}


def train_demo_runs(root: Path) -> None:
    from genlab.recipes import load_recipe, run_task

    plan = {
        "gpt": ("gpt/shakespeare-char-fast", {"max_steps": 300}, {}),
        "cnn": ("cnn/digits", {}, {}),
        "vae": ("vae/digits", {}, {}),
        "vae-no3": ("vae/digits", {}, {"exclude_class": 3}),
        "gan": ("gan/digits", {}, {}),
    }
    for name, (recipe, train, data) in plan.items():
        if (root / name / "config.yaml").exists():
            continue
        r = load_recipe(recipe)
        r["train"].update({**QUIET, **train})
        r["data"].update(data)
        run_task(r, run_dir=root / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(url: str, out: Path, runs: list[str]) -> list[str]:
    from playwright.sync_api import sync_playwright

    def has(name):
        return next((r for r in runs if Path(r).name == name), None)

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.locator("#msg-runs").filter(has_text="runs under").wait_for()

        def tab(name):
            page.get_by_role("tab", name=name).click()

        def choose(sel, option):
            page.locator(sel).locator("input").first.click()
            page.get_by_role("option", name=option, exact=True).click()

        def fill(sel, value, enter=False):
            box = page.locator(sel).locator("textarea, input").first
            box.fill(value)
            box.press("Enter") if enter else box.blur()

        def number(sel, value):
            box = page.locator(sel).locator("input[type=number]").first
            box.fill(str(value))
            box.press("Enter")

        def snap(name):
            page.wait_for_timeout(1500)  # let plotly finish drawing
            path = out / f"studio_{name}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(str(path))

        two = [r for r in (has("vae"), has("vae-no3")) if r]
        if len(two) == 2:  # overlay the two VAEs: drop the first run the page picked, add both
            page.locator("#runs-curves .js-plotly-plot").wait_for()
            box = page.locator("#runs-pick").locator("input").first
            box.click()
            box.press("Backspace")
            for r in two:
                choose("#runs-pick", r)
        page.locator("#runs-curves .js-plotly-plot").wait_for()
        snap("runs")

        gpt = has("gpt")
        if gpt:
            tab("Text")
            choose("#text-run", gpt)
            fill("#text-prompt", "ROMEO:\nWhat")
            page.locator("#tokens .tok").first.wait_for()
            number("#text-temp", 0.8)
            page.locator("#text-go").click()
            page.locator("#tokens .tok.gen").first.wait_for()
            snap("text")
            tab("Attention")
            choose("#att-run", gpt)
            fill("#att-text", "To be, or not to be", enter=True)
            page.locator("#headview line").first.wait_for(state="attached")
            page.locator('#headview .hv-q[data-q="7"]').hover()
            snap("attention")

        for source in (has("cnn"), has("vae")):
            if source:
                tab("Projector")
                choose("#proj-run", source)
                number("#proj-n", 359)
                page.get_by_label("tsne").check()
                page.locator("#proj-go").click()
                page.locator("#proj-scores").filter(has_text="NMI").wait_for()
                fill("#proj-query", "0", enter=True)
                page.locator("#neighbours tr.nb").first.wait_for()
                snap("projector")
                break

        vae = has("vae-no3") or has("vae")
        if vae:
            tab("Images")
            choose("#img-run", vae)
            page.locator("#img-decoded img").wait_for()
            number("#img-z0", 1.5)
            number("#img-z1", -1.0)
            page.locator("#img-lerp-go").click()
            page.locator("#img-strip img").wait_for()
            if Path(vae).name == "vae-no3":
                page.locator("#img-anom-go").click()
                page.locator("#img-hist .js-plotly-plot").wait_for()
            snap("images")

        cnn = has("cnn")
        if cnn:
            tab("CNN")
            choose("#cnn-run", cnn)
            choose("#cnn-stage", "stage0")
            page.locator("#maps img.fmap").first.wait_for()
            page.locator("#cnn-3d .js-plotly-plot").wait_for()
            snap("cnn")
        browser.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/studio-demo"), help="folder of runs (trained if empty)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    from genlab.core.errors import GenlabError
    from genlab.studio.app import launch
    from genlab.studio.catalog import find_runs

    args.runs.mkdir(parents=True, exist_ok=True)
    try:
        runs = find_runs(args.runs)
    except GenlabError:
        train_demo_runs(args.runs)
        runs = find_runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    demo = launch(args.runs, port=free_port(), block=False)
    try:
        written = shoot(demo.local_url, args.out, runs)
    finally:
        demo.close()
    print(json.dumps({"screenshots": written, "runs": runs, "runs_dir": str(args.runs)}))


if __name__ == "__main__":
    main()
