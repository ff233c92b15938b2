"""HTML and plotly figures the studio pages show (pure functions of the computed numbers).

Every piece of text from a model or a file is escaped before it enters HTML.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

from genlab.studio.text import TokenInfo
from genlab.studio.vision import normalise, png_bytes, upscale

# Mouse-over for the attention head view: hovering a query token shows only its lines. It runs
# through gr.HTML(js_on_load=...) and delegates from the component, so it survives new values.
HEAD_VIEW_JS = """
element.addEventListener('mouseover', (e) => {
  const t = e.target.closest('[data-q]');
  if (!t || t.tagName === 'line') return;
  const q = t.getAttribute('data-q');
  element.querySelectorAll('line[data-q]').forEach((l) => {
    l.style.display = l.getAttribute('data-q') === q ? '' : 'none';
  });
  element.querySelectorAll('.hv-q').forEach((s) => s.classList.toggle('hv-on', s.getAttribute('data-q') === q));
});
element.addEventListener('mouseleave', () => {
  element.querySelectorAll('line[data-q]').forEach((l) => { l.style.display = ''; });
  element.querySelectorAll('.hv-q').forEach((s) => s.classList.remove('hv-on'));
});
"""

CSS = """
.tok { padding: 1px 0; border-radius: 3px; white-space: pre-wrap; font-family: monospace; }
.tok.prompt { opacity: 0.55; }
.tokens { line-height: 1.9; font-size: 15px; }
.tp-panels { display: flex; gap: 18px; flex-wrap: wrap; }
.tp-panel { min-width: 190px; flex: 1; }
.tp-row { display: flex; align-items: center; gap: 6px; font-family: monospace; font-size: 13px; }
.tp-tok { width: 56px; overflow: hidden; white-space: pre; }
.tp-bar { height: 12px; background: #4f7fd9; border-radius: 2px; }
.tp-val { width: 48px; text-align: right; }
.hv-q.hv-on { background: #ffe08a; }
.maps { display: flex; flex-wrap: wrap; gap: 4px; }
.maps figure { margin: 0; text-align: center; font-size: 11px; }
.maps img { image-rendering: pixelated; width: 72px; height: 72px; border: 1px solid #ccc; }
.neigh td, .neigh th { padding: 2px 8px; font-family: monospace; }
"""


def esc(s: str) -> str:
    return html.escape(s, quote=True)


def visible(token: str) -> str:
    """A token as it should read inline: newlines and tabs shown as symbols."""
    return token.replace("\n", "\u21b5\n").replace("\t", "\u2192")


def label(token: str) -> str:
    """A token standing alone (a column of the head view): a bare space drawn as an open box."""
    return visible(token).replace(" ", "\u2423") if not token.strip() else visible(token)


def prob_colour(p: float) -> str:
    """Red (unlikely) through yellow to green (likely): hue 0..120."""
    return f"hsl({120 * max(0.0, min(1.0, p)):.0f}, 75%, 78%)"


def tokens_html(tokens: list[TokenInfo]) -> str:
    """The prompt and the generated text, each token a span coloured by p(token | past)."""
    spans = []
    for i, t in enumerate(tokens):
        p = 1.0 if t.prob is None else t.prob
        title = "first token" if t.prob is None else f"p = {t.prob:.3f}, entropy = {t.entropy:.2f} nats"
        cls = "tok gen" if t.generated else "tok prompt"
        spans.append(
            f'<span class="{cls}" data-i="{i}" data-p="{p:.4f}" title="{esc(title)}" '
            f'style="background:{prob_colour(p)}">{esc(visible(t.text))}</span>'
        )
    legend = (
        '<div style="font-size:12px;margin-top:6px">colour: p(token | the text before it) at temperature 1: '
        f'<span class="tok" style="background:{prob_colour(0.0)}">&nbsp;0&nbsp;</span> '
        f'<span class="tok" style="background:{prob_colour(0.5)}">&nbsp;0.5&nbsp;</span> '
        f'<span class="tok" style="background:{prob_colour(1.0)}">&nbsp;1&nbsp;</span>; '
        "faded: the prompt</div>"
    )
    return f'<div class="tokens" id="tokens">{"".join(spans)}</div>{legend}'


def alternatives_html(t: TokenInfo) -> str:
    if t.prob is None:
        return "<p>The first token has nothing before it: no distribution to show.</p>"
    rows = "".join(
        f'<tr><td>{esc(repr(text))}</td><td>{p:.4f}</td><td><div class="tp-bar" style="width:{160 * p:.0f}px"></div>'
        f"</td></tr>"
        for text, p in t.alternatives
    )
    return (
        f'<div id="alternatives"><p><b>{esc(repr(t.text))}</b>: p = {t.prob:.4f}, entropy of its position '
        f"{t.entropy:.3f} nats ({np.exp(t.entropy):.1f} equally likely choices)</p>"
        f'<table class="neigh"><tr><th>alternative</th><th>p</th><th></th></tr>{rows}</table></div>'
    )


def distributions_html(panels: list[dict], highlight: float | None = None) -> str:
    """Side-by-side bars: the next token's top probabilities at each temperature."""
    cols = []
    for panel in panels:
        t = panel["temperature"]
        mark = " (your setting)" if highlight is not None and abs(t - highlight) < 1e-9 else ""
        rows = "".join(
            f'<div class="tp-row" data-tok="{esc(tok)}" data-p="{p:.6f}"><span class="tp-tok">{esc(repr(tok))}</span>'
            f'<div class="tp-bar" style="width:{120 * p:.1f}px"></div><span class="tp-val">{p:.3f}</span></div>'
            for tok, p in panel["top"]
        )
        cols.append(
            f'<div class="tp-panel" data-t="{t:g}"><b>T = {t:g}{mark}</b><br>'
            f"<small>entropy {panel['entropy']:.2f} nats</small>{rows}</div>"
        )
    return f'<div class="tp-panels" id="temperatures">{"".join(cols)}</div>'


def head_view_html(tokens: list[str], weights: np.ndarray, layer: int, head: int | None) -> str:
    """BertViz-style head view: queries left, keys right, a line per pair with opacity = weight.
    ``weights`` (L, H, T, T); ``head`` None averages the heads."""
    w = weights[layer].mean(0) if head is None else weights[layer, head]  # (T, T)
    T = len(tokens)
    row, width, left, right = 22, 460, 120, 340
    height = row * T + 10
    lines = []
    for q in range(T):
        for k in range(T):
            a = float(w[q, k])
            if a < 0.02:
                continue
            y1, y2 = 14 + q * row, 14 + k * row
            lines.append(
                f'<line data-q="{q}" x1="{left + 4}" y1="{y1}" x2="{right - 4}" y2="{y2}" '
                f'stroke="#3b6fd4" stroke-width="{1 + 3 * a:.2f}" stroke-opacity="{a:.3f}"/>'
            )
    qs = "".join(
        f'<text class="hv-q" data-q="{i}" x="{left}" y="{18 + i * row}" text-anchor="end">{esc(label(t))}</text>'
        for i, t in enumerate(tokens)
    )
    ks = "".join(f'<text x="{right}" y="{18 + i * row}">{esc(label(t))}</text>' for i, t in enumerate(tokens))
    what = "mean over heads" if head is None else f"head {head}"
    return (
        f'<div class="headview" id="headview"><p>layer {layer}, {what}: hover a token on the left to see '
        f'where it attends (line width and opacity = weight)</p><svg width="{width}" height="{height}" '
        f'font-family="monospace" font-size="13">{"".join(lines)}{qs}{ks}</svg></div>'
    )


def attention_grid(tokens: list[str], weights: np.ndarray):
    """Every layer (rows) x head (columns) as small heatmaps: the model view."""
    from plotly.subplots import make_subplots

    L, H = weights.shape[:2]
    fig = make_subplots(
        rows=L,
        cols=H,
        subplot_titles=[f"L{i} H{j}" for i in range(L) for j in range(H)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    import plotly.graph_objects as go

    for i in range(L):
        for j in range(H):
            fig.add_trace(
                go.Heatmap(
                    z=weights[i, j],
                    zmin=0,
                    zmax=1,
                    colorscale="Blues",
                    showscale=False,
                    x=list(range(len(tokens))),
                    y=list(range(len(tokens))),
                    hovertemplate="query %{y} -> key %{x}: %{z:.3f}<extra></extra>",
                ),
                row=i + 1,
                col=j + 1,
            )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=max(220, 150 * L), margin=dict(l=10, r=10, t=30, b=10))
    return fig


def curves_figure(series: dict[str, dict[str, tuple[list[int], list[float]]]]):
    """Training and validation curves of one or two runs on one plot (one colour per run, dashed = val)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for n, (run, curves) in enumerate(series.items()):
        colour = palette[n % len(palette)]
        for key in ("train_loss", "val_loss"):
            if key in curves:
                steps, values = curves[key]
                fig.add_trace(
                    go.Scatter(
                        x=steps,
                        y=values,
                        name=f"{run}: {key}",
                        mode="lines+markers",
                        line=dict(color=colour, dash="dash" if key == "val_loss" else "solid"),
                    )
                )
    fig.update_layout(
        xaxis_title="step",
        yaxis_title="loss",
        height=380,
        margin=dict(l=40, r=10, t=30, b=40),
        legend=dict(orientation="h"),
    )
    return fig


def scatter_figure(
    coords: np.ndarray, names: list[str], colour: np.ndarray | None, colour_name: str, selected: int | None = None
):
    """Projected points, 2-D or 3-D, coloured by label or cluster, the searched point marked."""
    import plotly.graph_objects as go

    n, dim = coords.shape
    marker = dict(size=5 if dim == 2 else 3, opacity=0.85)
    if colour is not None:
        marker.update(color=colour.astype(float), colorscale="Turbo", colorbar=dict(title=colour_name))
    xyz = {"x": coords[:, 0], "y": coords[:, 1]}
    if dim == 3:
        xyz["z"] = coords[:, 2]
    kind = go.Scatter3d if dim == 3 else go.Scatter
    text = [f"{i}: {s}" for i, s in enumerate(names)]
    fig = go.Figure(kind(mode="markers", marker=marker, text=text, hoverinfo="text", name="points", **xyz))
    if selected is not None:
        sel = {k: [v[selected]] for k, v in xyz.items()}
        fig.add_trace(
            kind(
                mode="markers",
                marker=dict(size=14 if dim == 2 else 8, color="black", symbol="x"),
                text=[text[selected]],
                hoverinfo="text",
                name="searched",
                **sel,
            )
        )
    fig.update_layout(
        height=520,
        margin=dict(l=10, r=10, t=30, b=10),
        showlegend=False,
        meta={"points": int(n)},
        title=f"{n:,} points",
    )
    return fig


def neighbours_html(names: list[str], query: int, idx: np.ndarray, sims: np.ndarray) -> str:
    rows = "".join(
        f'<tr class="nb"><td>{int(i)}</td><td>{esc(names[int(i)])}</td><td>{float(s):.3f}</td></tr>'
        for i, s in zip(idx, sims)
    )
    return (
        f'<div id="neighbours"><p>nearest to <b>{query}: {esc(names[query])}</b> (cosine, in the full space)</p>'
        f'<table class="neigh"><tr><th>#</th><th>point</th><th>cosine</th></tr>{rows}</table></div>'
    )


def maps_html(stage: str, maps: np.ndarray) -> str:
    """One small image per channel of a stage's activations (C, H, W), each on its own scale."""
    imgs = normalise(maps)
    figs = []
    for c, m in enumerate(imgs):
        data = base64.b64encode(png_bytes(upscale(m, 48))).decode()
        figs.append(
            f'<figure><img class="fmap" alt="channel {c}" src="data:image/png;base64,{data}">'
            f"<figcaption>{c}</figcaption></figure>"
        )
    C, H, W = maps.shape
    return (
        f'<div id="maps" data-stage="{esc(stage)}" data-channels="{C}"><p>{esc(stage)}: {C} channels of '
        f'{H}x{W}</p><div class="maps">{"".join(figs)}</div></div>'
    )


def layers_3d(maps: dict[str, np.ndarray], image: np.ndarray, max_channels: int = 8):
    """A layered 3-D view in the manner of Harley's: the input, then each stage's first channels as
    planes of cells stacked along the depth axis, colour = activation (scaled per stage)."""
    import plotly.graph_objects as go

    xs, ys, zs, vs, texts = [], [], [], [], []
    layers = [("input", image[None].astype(np.float32) / 255.0)] + [(k, v) for k, v in maps.items() if k != "probs"]
    for depth, (name, a) in enumerate(layers):
        a = a[:max_channels]
        a = (a - a.min()) / (a.max() - a.min() + 1e-9)
        C, H, W = a.shape
        span = max(H, W)
        for c in range(C):
            i, j = np.mgrid[0:H, 0:W]
            # each channel a plane side by side, scaled to the input's width so the stack lines up
            xs.append((j.ravel() / span + c * 1.15) - C * 0.575)
            ys.append(1 - i.ravel() / span)
            zs.append(np.full(H * W, depth * 2.0))
            vs.append(a[c].ravel())
            texts.extend([f"{name} ch {c}"] * (H * W))
    fig = go.Figure(
        go.Scatter3d(
            x=np.concatenate(xs),
            y=np.concatenate(zs),
            z=np.concatenate(ys),
            mode="markers",
            marker=dict(size=2.5, color=np.concatenate(vs), colorscale="Viridis", opacity=0.9),
            text=texts,
            hoverinfo="text",
        )
    )
    fig.update_layout(
        height=520,
        margin=dict(l=0, r=0, t=30, b=0),
        title="input -> stages (first channels of each)",
        scene=dict(
            xaxis_title="channel",
            yaxis_title="stage",
            zaxis_title="",
            aspectmode="manual",
            aspectratio=dict(x=2.4, y=2.0, z=0.7),
            camera=dict(eye=dict(x=1.5, y=-1.9, z=1.0)),
        ),
    )
    return fig


def histograms(held: int, scores: dict[int, np.ndarray]):
    """-ELBO per test image, one histogram per class; the held-out class drawn dark over the others."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for c, s in scores.items():
        style = dict(marker_color="#111111", opacity=0.85) if c == held else dict(opacity=0.35)
        fig.add_trace(go.Histogram(x=s, name=f"class {c}{' (held out)' if c == held else ''}", nbinsx=40, **style))
    fig.update_layout(
        barmode="overlay",
        xaxis_title="-ELBO (nats)",
        yaxis_title="test images",
        height=400,
        margin=dict(l=40, r=10, t=30, b=40),
    )
    return fig


def config_yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)


def json_text(value) -> str:
    return json.dumps(value, indent=1, default=str)
