"""The studio's Gradio app: six pages over the runs under one folder.

:func:`build` makes the ``gr.Blocks``; :func:`launch` serves it alone (``genlab studio``);
:func:`mount` puts it on a FastAPI app at ``/studio`` (``genlab serve --studio``). Every handler
runs in Gradio's queue (one worker per event, so a long projection does not block the other
pages) and answers bad input with a one-line message in its page's status line, never a stack
trace: :func:`guarded` turns a GenlabError into that line.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the studio

import gradio as gr
import numpy as np

from genlab.core.errors import ConfigError, GenlabError, RunDirError
from genlab.eval.clustering import CLUSTERINGS, PROJECTIONS, cluster, cluster_scores, nearest, project
from genlab.runs import read_run_config
from genlab.runs.encoders import Encoder, load_encoder
from genlab.studio import catalog, projector, text, views, vision

N_LATENT_SLIDERS = 8
TEMPERATURES = [0.5, 1.0, 2.0]  # the panel's fixed columns, beside the slider's own
MINILM = "minilm"


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts (its default fetches fonts from the internet)."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def guarded(n_outputs: int):
    """Handler decorator: outputs (message, *results); a GenlabError becomes the message and leaves the
    other outputs as they were; any other exception a one-line 'unexpected error' message."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                out = fn(*args, **kwargs)
            except GenlabError as e:
                return ("**Cannot show this:** " + str(e), *[gr.update()] * n_outputs)
            except Exception as e:  # a bug, but the page stays usable and shows no trace
                return (f"**Unexpected error** ({type(e).__name__}): {e}", *[gr.update()] * n_outputs)
            return out

        return run

    return wrap


class Studio:
    """The runs folder and the handlers of each page."""

    def __init__(self, runs_dir: str | os.PathLike):
        self.root = Path(runs_dir).expanduser().resolve()
        self.projections: OrderedDict[tuple, np.ndarray] = OrderedDict()  # (source, mtime, n, method, dim)

    def path(self, rel: str | None) -> str:
        if not rel:
            raise ConfigError("pick a run first (the list shows the runs under the studio's folder)")
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            raise RunDirError(f"{rel} is outside {self.root}")
        return str(p)

    def run(self, rel: str | None, families: tuple[str, ...], page: str):
        path = self.path(rel)
        fam = catalog.family(path)
        vision.check_family(fam, families, page)
        return (*catalog.loaded(path), fam)

    # --- Runs -------------------------------------------------------------------------------

    def scan(self):
        """(message, runs table, then one dropdown update per page)."""
        try:
            runs = catalog.find_runs(self.root)
        except GenlabError as e:
            msg = "**No runs to show:** " + str(e)
            empty = gr.update(choices=[], value=None)
            return (msg, [], gr.update(choices=[], value=[]), *[empty] * 5)
        rows = []
        for r in runs:
            path = self.path(r)
            try:
                cfg = read_run_config(path)
                res = catalog.read_results(path)
            except GenlabError:
                cfg, res = {}, {}
            best = res.get("best_val_loss", res.get("test_accuracy", ""))
            rows.append(
                [
                    r,
                    (cfg.get("model") or {}).get("family", "?"),
                    cfg.get("task", "?"),
                    res.get("steps", ""),
                    round(best, 4) if isinstance(best, float) else best,
                ]
            )
        fams = {r[0]: r[1] for r in rows}

        def pick(allowed):
            choices = [r for r in runs if fams[r] in allowed] or runs
            return gr.update(choices=runs, value=choices[0])

        msg = f"{len(runs)} runs under `{self.root}`"
        projector_choices = gr.update(choices=[*runs, MINILM], value=pick(projector.PROJECTOR_FAMILIES)["value"])
        return (
            msg,
            rows,
            gr.update(choices=runs, value=runs[:1]),
            pick(text.TEXT_FAMILIES),
            pick(text.ATTENTION_FAMILIES),
            projector_choices,
            pick(vision.IMAGE_FAMILIES),
            pick(("cnn",)),
        )

    @guarded(3)
    def show_runs(self, picked: list[str] | None):
        if not picked:
            raise ConfigError("pick one run (or two to overlay their curves)")
        series = {r: catalog.curves(self.path(r)) for r in picked}
        configs = "\n".join(f"# {r}\n{views.config_yaml(read_run_config(self.path(r)))}" for r in picked)
        results = {r: catalog.read_results(self.path(r)) for r in picked}
        empty = [r for r, c in series.items() if not c]
        msg = f"{', '.join(empty)}: no metrics yet" if empty else ""
        return msg, views.curves_figure(series), configs, views.json_text(results)

    # --- Text -------------------------------------------------------------------------------

    @staticmethod
    def sampling(temp, top_k, top_p, min_p, rep, freq, pres, seed, new):
        return text.sampling(
            temperature=float(temp), top_k=int(top_k), top_p=float(top_p), min_p=float(min_p),
            repetition_penalty=float(rep), frequency_penalty=float(freq), presence_penalty=float(pres),
            seed=int(seed), max_new_tokens=int(new),
        )  # fmt: skip

    def _tokens_out(self, tok, model, ids, n_prompt):
        infos = text.token_probabilities(model, tok, ids, n_prompt)
        choices = [
            (f"{i}: {t.text!r}" + ("" if t.prob is None else f" (p={t.prob:.3f})"), i) for i, t in enumerate(infos)
        ]
        last = len(infos) - 1
        return (
            infos,
            views.tokens_html(infos),
            gr.update(choices=choices, value=last),
            views.alternatives_html(infos[last]),
        )

    @guarded(5)
    def generate(self, rel, prompt, *controls):
        model, tok, _, _ = self.run(rel, text.TEXT_FAMILIES, "text")
        s = self.sampling(*controls)
        ids, n_prompt = text.complete(model, tok, prompt, s)
        infos, html, choices, alt = self._tokens_out(tok, model, ids, n_prompt)
        panels = text.next_token_distributions(model, tok, prompt, self.temps(s.temperature), s)
        return "", html, choices, alt, views.distributions_html(panels, s.temperature), infos

    @guarded(5)
    def score_prompt(self, rel, prompt, *controls):
        """Typing: the prompt's own tokens coloured, and the next-token panel (no generation)."""
        model, tok, _, _ = self.run(rel, text.TEXT_FAMILIES, "text")
        s = self.sampling(*controls)
        ids = text.encode_prompt(model, tok, prompt)
        infos, html, choices, alt = self._tokens_out(tok, model, ids, len(ids))
        panels = text.next_token_distributions(model, tok, prompt, self.temps(s.temperature), s)
        return "", html, choices, alt, views.distributions_html(panels, s.temperature), infos

    @staticmethod
    def temps(t: float) -> list[float]:
        return sorted({*TEMPERATURES, round(float(t), 4)})

    @guarded(1)
    def distributions(self, rel, prompt, *controls):
        model, tok, _, _ = self.run(rel, text.TEXT_FAMILIES, "text")
        s = self.sampling(*controls)
        panels = text.next_token_distributions(model, tok, prompt, self.temps(s.temperature), s)
        return "", views.distributions_html(panels, s.temperature)

    @guarded(1)
    def alternatives(self, infos, i):
        if not infos or i is None:
            raise ConfigError("generate (or type a prompt) first, then pick a token")
        return "", views.alternatives_html(infos[int(i)])

    # --- Attention --------------------------------------------------------------------------

    @guarded(5)
    def attention(self, rel, sentence):
        model, tok, _, fam = self.run(rel, text.ATTENTION_FAMILIES, "attention")
        tokens, w = text.attention_maps(model, tok, fam, sentence)
        w = w.numpy()
        L, H = w.shape[:2]
        head = gr.update(choices=[("mean of heads", -1)] + [(f"head {h}", h) for h in range(H)], value=-1)
        layer = gr.update(maximum=L - 1, value=0)
        state = {"tokens": tokens, "w": w}
        return "", views.head_view_html(tokens, w, 0, None), layer, head, views.attention_grid(tokens, w), state

    @guarded(1)
    def head_view(self, state, layer, head):
        if not state:
            raise ConfigError("show a text's attention first")
        L = state["w"].shape[0]
        layer = min(int(layer), L - 1)
        return "", views.head_view_html(state["tokens"], state["w"], layer, None if head in (None, -1) else int(head))

    # --- Projector --------------------------------------------------------------------------

    def points(self, rel, upload, n) -> projector.Points:
        n = int(n)
        if n < 2:
            raise ConfigError(f"the projector needs at least 2 points, got {n}")
        if upload is not None:
            data = Path(upload).read_bytes()
            if data[:2] == b"PK":
                return projector.npz_points(data, n)
            if rel == MINILM:
                encoder = load_encoder(MINILM)
            else:
                path = self.path(rel)
                fam = catalog.family(path)
                if fam != "bert":
                    raise ConfigError(f"a text file is embedded by a bert run or minilm; this is a {fam} run")
                model, tok, _ = catalog.loaded(path)
                encoder = Encoder(model, tok, model.config.block_size, rel)
            return projector.text_points(encoder, data, n)
        if rel == MINILM:
            raise ConfigError("minilm embeds a text file: upload one (one text per line, or label<TAB>text)")
        return projector.run_points(self.path(rel), n)

    @guarded(4)
    def project(self, rel, upload, n, method, dim, colour, algo, k, progress=gr.Progress()):  # noqa: B008
        projector.check_count(int(n), method)
        pts = self.points(rel, upload, n)
        coords = self.projected(pts, (rel, upload), method, int(dim), progress)
        clusters = cluster(pts.x, algo, min(int(k), len(pts.x)), 0)
        lines = [f"{pts.what}: {len(pts.x):,} points of {pts.x.shape[1]} dimensions, {method} to {dim}-D"]
        if pts.labels is not None:
            sc = cluster_scores(clusters, pts.labels)
            lines.append(f"{algo} with k={k} against the labels: NMI {sc['nmi']:.3f}, ARI {sc['ari']:.3f}")
        else:
            lines.append(f"{algo} with k={k} (these points have no labels to score against)")
        by_label = colour == "labels" and pts.labels is not None
        shade = pts.labels if by_label else clusters
        fig = views.scatter_figure(coords, pts.names, shade, "label" if by_label else "cluster")
        state = {
            "x": pts.x,
            "names": pts.names,
            "coords": coords,
            "shade": shade,
            "by": "label" if by_label else "cluster",
        }
        return "", fig, "\n\n".join(lines), state, ""

    def projected(self, pts: projector.Points, source: tuple, method: str, dim: int, progress) -> np.ndarray:
        """:func:`genlab.eval.clustering.project`, cached per source (run and checkpoint, or upload),
        number of points, method and dimension: the last 8 projections are kept."""
        rel, upload = source
        stamp = catalog.stamp(self.path(rel)) if upload is None and rel != MINILM else os.path.getmtime(upload)
        key = (rel, upload, stamp, len(pts.x), method, dim)
        if key not in self.projections:
            self.projections[key] = project(pts.x, method, dim, 0, progress)
            while len(self.projections) > 8:
                self.projections.popitem(last=False)
        self.projections.move_to_end(key)
        return self.projections[key]

    @guarded(2)
    def search(self, state, query, k):
        if not state:
            raise ConfigError("project some points first, then search one")
        names = state["names"]
        q = (query or "").strip()
        if not q:
            raise ConfigError("type a point's number or part of its name")
        if q.isdigit():
            i = int(q)
            if i >= len(names):
                raise ConfigError(f"there are {len(names)} points: give a number from 0 to {len(names) - 1}")
        else:
            found = [j for j, s in enumerate(names) if q.lower() in s.lower()]
            if not found:
                raise ConfigError(f"no point's name contains '{q}'")
            i = found[0]
        idx, sims = nearest(state["x"], i, int(k))
        fig = views.scatter_figure(state["coords"], names, state["shade"], state["by"], selected=i)
        return "", views.neighbours_html(names, i, idx, sims), fig

    # --- Images -----------------------------------------------------------------------------

    @guarded(3 + N_LATENT_SLIDERS)
    def load_images_run(self, rel):
        model, _, config, fam = self.run(rel, vision.IMAGE_FAMILIES, "images")
        latent = model.config.latent_dim if fam == "vae" else 0
        sliders = [gr.update(visible=i < latent, value=0.0) for i in range(N_LATENT_SLIDERS)]
        k = model.config.n_classes or 0
        label = gr.update(choices=list(range(k)), value=0 if k else None, visible=bool(k))
        decoded = vision.upscale(vision.decode_latent(model, [0.0] * latent, 0)) if fam == "vae" else None
        grid = vision.upscale(vision.sample_grid(model, 0), 384)
        note = (
            f"{fam} run: latent dimension {model.config.latent_dim}"
            + (f"; the sliders move the first {min(latent, N_LATENT_SLIDERS)}" if latent else "")
            + (f"; conditional on {k} classes" if k else "")
        )
        return note, decoded, grid, label, *sliders

    @guarded(1)
    def decode(self, rel, label, *z):
        model, _, _, fam = self.run(rel, ("vae",), "latent")
        return "", vision.upscale(vision.decode_latent(model, [float(v) for v in z], int(label or 0)))

    @guarded(1)
    def interpolate(self, rel, a, b):
        model, _, config, _ = self.run(rel, ("vae",), "interpolation")
        return "", vision.upscale(vision.interpolation(model, vision.run_source(config), int(a), int(b)), 640)

    @guarded(1)
    def grid(self, rel, seed):
        model, _, _, _ = self.run(rel, vision.IMAGE_FAMILIES, "sample grid")
        return "", vision.upscale(vision.sample_grid(model, int(seed)), 384)

    @guarded(1)
    def reconstruct(self, rel, start):
        model, _, config, _ = self.run(rel, ("vae",), "reconstruction")
        return "", vision.upscale(vision.reconstructions(model, vision.run_source(config), 8, int(start)), 640)

    @guarded(1)
    def anomaly(self, rel):
        model, _, config, _ = self.run(rel, ("vae",), "anomaly")
        held, scores = vision.anomaly_scores(model, config, vision.run_source(config))
        return "", views.histograms(held, scores)

    # --- CNN --------------------------------------------------------------------------------

    @guarded(1)
    def cnn_run(self, rel):
        model, _, _, _ = self.run(rel, ("cnn",), "CNN")
        stages = [f"stage{i}" for i in range(len(model.stages))]
        if "stem" in vision.feature_maps(model, np.zeros((model.config.image_size,) * 2, np.uint8)):
            stages = ["stem", *stages]
        return "", gr.update(choices=stages, value=stages[0])

    @guarded(4)
    def cnn(self, rel, index, upload, stage):
        model, _, config, _ = self.run(rel, ("cnn",), "CNN")
        size = model.config.image_size
        if model.config.in_channels != 1:
            raise ConfigError("the CNN view draws grey-scale runs (in_channels = 1)")
        if upload is not None:
            image = vision.read_upload(Path(upload).read_bytes(), size)
            where = "the uploaded image"
        else:
            images, labels = vision.test_images(vision.run_source(config))
            i = int(index)
            if not 0 <= i < len(images):
                raise ConfigError(f"test image {i} does not exist: pick 0 to {len(images) - 1}")
            image, where = images[i], f"test image {i} (class {labels[i]})"
        maps = vision.feature_maps(model, image)
        if stage not in maps:
            raise ConfigError(f"this CNN has no stage '{stage}': pick one of {[k for k in maps if k != 'probs']}")
        probs = {str(c): float(p) for c, p in enumerate(maps["probs"])}
        return where, vision.upscale(image), probs, views.maps_html(stage, maps[stage]), views.layers_3d(maps, image)


def build(runs_dir: str | os.PathLike) -> gr.Blocks:
    """The studio's Blocks over the runs under ``runs_dir`` (pages: Runs, Text, Attention, Projector,
    Images, CNN)."""
    s = Studio(runs_dir)
    with gr.Blocks(title="genlab studio", analytics_enabled=False) as demo:
        gr.Markdown("## genlab studio")
        with gr.Row():
            status = gr.Markdown(elem_id="msg-runs")
            rescan = gr.Button("Rescan runs", size="sm", elem_id="rescan", scale=0)
        with gr.Tabs():
            with gr.Tab("Runs", id="runs"):
                table = gr.Dataframe(
                    headers=["run", "family", "task", "steps", "best"], interactive=False, elem_id="runs-table"
                )
                picked = gr.Dropdown(
                    label="runs (two overlay their curves)", multiselect=True, max_choices=2, elem_id="runs-pick"
                )
                runs_msg = gr.Markdown(elem_id="msg-curves")
                curves = gr.Plot(label="training (solid) and validation (dashed) loss", elem_id="runs-curves")
                with gr.Row():
                    config = gr.Code(label="resolved config", language="yaml", max_lines=30, elem_id="runs-config")
                    results = gr.Code(label="results.json", language="json", max_lines=30, elem_id="runs-results")

            with gr.Tab("Text", id="text"):
                text_msg = gr.Markdown(elem_id="msg-text")
                with gr.Row():
                    text_run = gr.Dropdown(label="run (gpt)", elem_id="text-run")
                    prompt = gr.Textbox(label="prompt", lines=2, elem_id="text-prompt", scale=3)
                with gr.Row():
                    temp = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label="temperature", elem_id="text-temp")
                    top_k = gr.Slider(0, 200, value=0, step=1, label="top-k (0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p")
                    min_p = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="min-p")
                with gr.Row():
                    rep = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="repetition penalty")
                    freq = gr.Slider(-2.0, 2.0, value=0.0, step=0.1, label="frequency penalty")
                    pres = gr.Slider(-2.0, 2.0, value=0.0, step=0.1, label="presence penalty")
                    seed = gr.Number(0, precision=0, label="seed")
                    new = gr.Slider(1, text.MAX_NEW_TOKENS, value=40, step=1, label="new tokens")
                go = gr.Button("Generate", variant="primary", elem_id="text-go")
                tokens = gr.HTML(elem_id="text-tokens")
                with gr.Row():
                    which = gr.Dropdown(label="token: its alternatives and entropy", elem_id="text-token")
                    alts = gr.HTML(elem_id="text-alts")
                gr.Markdown("**Next token after the prompt at several temperatures** (same filters)")
                temps = gr.HTML(elem_id="text-temps")
                infos = gr.State()

            with gr.Tab("Attention", id="attention"):
                att_msg = gr.Markdown(elem_id="msg-attention")
                with gr.Row():
                    att_run = gr.Dropdown(label="run (gpt or bert)", elem_id="att-run")
                    sentence = gr.Textbox(label="text", elem_id="att-text", scale=3)
                    att_go = gr.Button("Show attention", elem_id="att-go", scale=0)
                with gr.Row():
                    layer = gr.Slider(0, 1, value=0, step=1, label="layer", elem_id="att-layer")
                    head = gr.Dropdown(label="head", choices=[("mean of heads", -1)], value=-1, elem_id="att-head")
                headview = gr.HTML(elem_id="att-view", js_on_load=views.HEAD_VIEW_JS)
                grid_plot = gr.Plot(label="every layer (rows) and head (columns)", elem_id="att-grid")
                att_state = gr.State()

            with gr.Tab("Projector", id="projector"):
                proj_msg = gr.Markdown(elem_id="msg-projector")
                with gr.Row():
                    proj_run = gr.Dropdown(
                        label="run (vae, cnn, gpt; bert or minilm with a text file)", elem_id="proj-run"
                    )
                    upload = gr.File(
                        label="or a text file / .npz",
                        file_types=[".txt", ".tsv", ".npz"],
                        type="filepath",
                        elem_id="proj-file",
                    )
                with gr.Row():
                    n_points = gr.Number(300, precision=0, label="points", elem_id="proj-n")
                    method = gr.Radio(list(PROJECTIONS), value="pca", label="projection", elem_id="proj-method")
                    dim = gr.Radio([2, 3], value=2, label="dimensions", elem_id="proj-dim")
                    colour = gr.Radio(["labels", "clusters"], value="labels", label="colour by", elem_id="proj-colour")
                with gr.Row():
                    algo = gr.Radio(list(CLUSTERINGS), value="kmeans", label="clustering", elem_id="proj-algo")
                    k = gr.Slider(1, 30, value=10, step=1, label="clusters k", elem_id="proj-k")
                    proj_go = gr.Button("Project", variant="primary", elem_id="proj-go")
                scatter = gr.Plot(elem_id="proj-plot")
                scores = gr.Markdown(elem_id="proj-scores")
                with gr.Row():
                    query = gr.Textbox(label="search a point (number or part of its name)", elem_id="proj-query")
                    n_near = gr.Slider(1, 50, value=10, step=1, label="neighbours")
                    find = gr.Button("Nearest neighbours", elem_id="proj-find", scale=0)
                near = gr.HTML(elem_id="proj-neighbours")
                proj_state = gr.State()

            with gr.Tab("Images", id="images"):
                img_msg = gr.Markdown(elem_id="msg-images")
                img_run = gr.Dropdown(label="run (vae or gan)", elem_id="img-run")
                with gr.Row():
                    with gr.Column():
                        label = gr.Dropdown(label="class", visible=False, elem_id="img-class")
                        zs = [
                            gr.Slider(-3.0, 3.0, value=0.0, step=0.1, label=f"z[{i}]", elem_id=f"img-z{i}")
                            for i in range(N_LATENT_SLIDERS)
                        ]
                    decoded = gr.Image(
                        label="decoded from z (VAE)", type="numpy", elem_id="img-decoded", image_mode="L", format="png"
                    )
                    samples = gr.Image(label="samples by seed", type="numpy", elem_id="img-grid", format="png")
                with gr.Row():
                    gseed = gr.Number(0, precision=0, label="seed")
                    grid_go = gr.Button("Grid", elem_id="img-grid-go")
                    a = gr.Number(0, precision=0, label="test image A")
                    b = gr.Number(1, precision=0, label="test image B")
                    lerp_go = gr.Button("Interpolate A to B", elem_id="img-lerp-go")
                    start = gr.Number(0, precision=0, label="first test image")
                    rec_go = gr.Button("Reconstructions", elem_id="img-rec-go")
                    anom_go = gr.Button("Anomaly scores", elem_id="img-anom-go")
                strip = gr.Image(
                    label="interpolation / reconstructions", type="numpy", elem_id="img-strip", format="png"
                )
                hist = gr.Plot(label="-ELBO per class (a run trained without one class)", elem_id="img-hist")

            with gr.Tab("CNN", id="cnn"):
                cnn_msg = gr.Markdown(elem_id="msg-cnn")
                with gr.Row():
                    cnn_run = gr.Dropdown(label="run (cnn)", elem_id="cnn-run")
                    index = gr.Number(0, precision=0, label="test image", elem_id="cnn-index")
                    cnn_file = gr.File(label="or upload an image", type="filepath", elem_id="cnn-file")
                    stage = gr.Dropdown(label="stage", elem_id="cnn-stage")
                    cnn_go = gr.Button("Show", variant="primary", elem_id="cnn-go", scale=0)
                with gr.Row():
                    shown = gr.Image(label="input", type="numpy", elem_id="cnn-input", format="png", scale=1)
                    probs = gr.Label(label="class probabilities", num_top_classes=5, scale=1)
                maps = gr.HTML(elem_id="cnn-maps")
                layers = gr.Plot(label="activations in 3-D", elem_id="cnn-3d")

        # --- wiring -----------------------------------------------------------------------------
        scan_out = [status, table, picked, text_run, att_run, proj_run, img_run, cnn_run]
        demo.load(s.scan, None, scan_out)
        rescan.click(s.scan, None, scan_out)
        picked.change(s.show_runs, picked, [runs_msg, curves, config, results])

        controls = [temp, top_k, top_p, min_p, rep, freq, pres, seed, new]
        text_out = [text_msg, tokens, which, alts, temps, infos]
        go.click(s.generate, [text_run, prompt, *controls], text_out)
        prompt.submit(s.generate, [text_run, prompt, *controls], text_out)
        prompt.change(
            s.score_prompt, [text_run, prompt, *controls], text_out, trigger_mode="always_last", show_progress="hidden"
        )
        for c in [temp, top_k, top_p, min_p]:
            c.change(
                s.distributions,
                [text_run, prompt, *controls],
                [text_msg, temps],
                trigger_mode="always_last",
                show_progress="hidden",
            )
        which.change(s.alternatives, [infos, which], [text_msg, alts])

        att_out = [att_msg, headview, layer, head, grid_plot, att_state]
        att_go.click(s.attention, [att_run, sentence], att_out)
        sentence.submit(s.attention, [att_run, sentence], att_out)
        layer.change(s.head_view, [att_state, layer, head], [att_msg, headview])
        head.change(s.head_view, [att_state, layer, head], [att_msg, headview])

        proj_go.click(
            s.project,
            [proj_run, upload, n_points, method, dim, colour, algo, k],
            [proj_msg, scatter, scores, proj_state, near],
        )
        find.click(s.search, [proj_state, query, n_near], [proj_msg, near, scatter])
        query.submit(s.search, [proj_state, query, n_near], [proj_msg, near, scatter])

        img_run.change(s.load_images_run, img_run, [img_msg, decoded, samples, label, *zs])
        for z in zs:
            z.change(
                s.decode, [img_run, label, *zs], [img_msg, decoded], trigger_mode="always_last", show_progress="hidden"
            )
        label.change(s.decode, [img_run, label, *zs], [img_msg, decoded])
        grid_go.click(s.grid, [img_run, gseed], [img_msg, samples])
        lerp_go.click(s.interpolate, [img_run, a, b], [img_msg, strip])
        rec_go.click(s.reconstruct, [img_run, start], [img_msg, strip])
        anom_go.click(s.anomaly, img_run, [img_msg, hist])

        cnn_run.change(s.cnn_run, cnn_run, [cnn_msg, stage])
        cnn_go.click(s.cnn, [cnn_run, index, cnn_file, stage], [cnn_msg, shown, probs, maps, layers])
        stage.change(s.cnn, [cnn_run, index, cnn_file, stage], [cnn_msg, shown, probs, maps, layers])
    demo.queue(default_concurrency_limit=1)
    return demo


def launch(runs_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> gr.Blocks:
    """Serve the studio alone at http://HOST:PORT/ (no share link, no analytics). With ``block`` false
    it returns at once, serving from a thread (``demo.local_url``; ``demo.close()`` stops it)."""
    demo = build(runs_dir)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        quiet=True,
        theme=theme(),
        css=views.CSS,
        footer_links=[],
        show_error=False,
    )
    return demo


def mount(app, runs_dir: str | os.PathLike, path: str = "/studio"):
    """Mount the studio on a FastAPI ``app`` at ``path`` (``genlab serve --studio``). The browser asks
    the server's root for /favicon.ico: the app answers 204 there unless it has a route of its own."""
    from starlette.responses import Response

    if not any(getattr(r, "path", None) == "/favicon.ico" for r in app.routes):
        app.add_api_route("/favicon.ico", lambda: Response(status_code=204), include_in_schema=False)
    return gr.mount_gradio_app(
        app, build(runs_dir), path=path, theme=theme(), css=views.CSS, footer_links=[], show_error=False
    )


__all__ = ["Studio", "build", "launch", "mount", "theme"]
