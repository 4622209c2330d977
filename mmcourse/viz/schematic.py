"""Schematic figures: the structure of a computation, drawn where a picture beats a paragraph.

One function per figure, each returning a matplotlib ``Figure``; the drawing helpers at the top
(boxes, arrows, grids of cells) are shared. Everything is drawn from code, so the figures are
reproducible and travel with the package: a notebook cell calls the function, and the PNG it
stores renders in JupyterLab, in Colab (no repository checkout needed) and in a static book.

    lstm_cell_figure()       the LSTM cell: gates, cell state, hidden state
    split_heads_figure()     multi-head attention: splitting (B, T, E) into (B, H, T, d_k)
    im2col_figure()          convolution as unfold (im2col) plus one matrix product
    mfcc_pipeline_figure()   waveform -> frames -> window -> |DFT|^2 -> mel -> log -> DCT -> MFCC
    fusion_map_figure()      the fusion methods of the course, by where the modalities meet
    ring_allreduce_figure()  ring all-reduce: reduce-scatter, then all-gather
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

# one palette for every schematic: light fills, dark text
PALE = {"blue": "#d6e6f5", "orange": "#fbe1c6", "green": "#d9efd5", "red": "#f6d5d3",
        "purple": "#e4dcf0", "grey": "#ececec", "yellow": "#fbf3c4"}
HEADS = ["#7fb3e0", "#f5b06b", "#8ccf84", "#e58f8a", "#b7a3dc", "#e8d36b"]  # one per head/part
INK = "#222222"


# --- drawing helpers ---------------------------------------------------------------------


def _canvas(width: float, height: float, scale: float = 0.62,
            bottom: float = 0.0) -> tuple[Figure, plt.Axes]:
    """A figure whose data coordinates run over [0, width] x [bottom, height], axes hidden."""
    fig = plt.figure(figsize=(width * scale, (height - bottom) * scale), dpi=80)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(bottom, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _box(ax: plt.Axes, cx: float, cy: float, w: float, h: float, text: str = "",
         color: str = "white", fontsize: float = 10, edge: str = INK, lw: float = 1.0,
         rounding: float = 0.12, **text_kw) -> FancyBboxPatch:
    """A rounded box centred at (cx, cy) with ``text`` in it."""
    patch = FancyBboxPatch((cx - w / 2, cy - h / 2), w, h, boxstyle=f"round,pad=0,rounding_size={rounding}",
                           facecolor=color, edgecolor=edge, lw=lw, zorder=2)
    ax.add_patch(patch)
    if text:
        ax.text(cx, cy, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=3,
                **text_kw)
    return patch


def _op(ax: plt.Axes, cx: float, cy: float, symbol: str, r: float = 0.28,
        color: str = "white") -> Circle:
    """A small circle holding an element-wise operation (⊙, +)."""
    circle = Circle((cx, cy), r, facecolor=color, edgecolor=INK, lw=1.0, zorder=4)
    ax.add_patch(circle)
    ax.text(cx, cy, symbol, ha="center", va="center", fontsize=12, zorder=5, color=INK)
    return circle


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float],
           color: str = INK, lw: float = 1.2, style: str = "-|>", rad: float = 0.0,
           shrink: float = 0.0) -> FancyArrowPatch:
    """An arrow from ``start`` to ``end`` (curved when ``rad`` is not 0)."""
    arrow = FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, lw=lw,
                            connectionstyle=f"arc3,rad={rad}", shrinkA=shrink, shrinkB=shrink,
                            zorder=1)
    ax.add_patch(arrow)
    return arrow


def _line(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], color: str = INK,
          lw: float = 1.2) -> None:
    ax.plot(xs, ys, color=color, lw=lw, zorder=1, solid_capstyle="round")


def _cells(ax: plt.Axes, x0: float, y_top: float, colors: Sequence[Sequence[str]],
           labels: Sequence[Sequence[str]] | None = None, size: float = 0.5,
           fontsize: float = 7, edge: str = "white") -> None:
    """A grid of square cells; row 0 at the top (y_top), column 0 at the left (x0)."""
    for r, row in enumerate(colors):
        for c, color in enumerate(row):
            x, y = x0 + c * size, y_top - (r + 1) * size
            ax.add_patch(Rectangle((x, y), size, size, facecolor=color, edgecolor=edge, lw=1.0,
                                   zorder=2))
            if labels is not None and labels[r][c] != "":
                ax.text(x + size / 2, y + size / 2, labels[r][c], ha="center", va="center",
                        fontsize=fontsize, color=_ink_on(color), zorder=3)


def _ink_on(color) -> str:
    """Dark text on light cells, white text on dark ones."""
    r, g, b = to_rgb(color)
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else INK


def _outline(ax: plt.Axes, x0: float, y0: float, w: float, h: float, color: str,
             lw: float = 2.2, ls: str = "-") -> None:
    ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=color, lw=lw, ls=ls, zorder=4))


def _text(ax: plt.Axes, x: float, y: float, text: str, fontsize: float = 9, **kw) -> None:
    kw.setdefault("ha", "center")
    kw.setdefault("va", "center")
    ax.text(x, y, text, fontsize=fontsize, color=kw.pop("color", INK), **kw)


# --- the LSTM cell -------------------------------------------------------------------------


def lstm_cell_figure() -> Figure:
    """One LSTM step: the four gates read [h_{t-1}; x_t]; the cell state runs along the top."""
    fig, ax = _canvas(13.5, 7.6)
    ax.add_patch(FancyBboxPatch((1.3, 0.75), 9.6, 5.95, boxstyle="round,pad=0,rounding_size=0.3",
                                facecolor="#f7f7f7", edgecolor="#bbbbbb", lw=1.0, zorder=0))
    y_c, y_gate, y_bus, y_h = 5.9, 2.9, 1.55, 1.0
    x_f, x_i, x_g, x_o, x_out = 3.2, 4.7, 6.2, 7.7, 9.4

    # the cell state: c_{t-1} -> (x f_t) -> (+ i_t g_t) -> c_t
    _arrow(ax, (0.3, y_c), (12.2, y_c), lw=2.2)
    _text(ax, 0.55, y_c + 0.38, "$c_{t-1}$", fontsize=12)
    _text(ax, 12.0, y_c + 0.38, "$c_t$", fontsize=12)
    _op(ax, x_f, y_c, "×")
    _op(ax, 5.45, y_c, "+")

    # the inputs: h_{t-1} from the left, x_t from below, joined on one bus
    _line(ax, [0.3, 2.2, 2.2], [y_h, y_h, y_bus])
    _text(ax, 0.6, y_h - 0.35, "$h_{t-1}$", fontsize=12)
    _line(ax, [2.6, 2.6], [0.0, y_bus])
    _text(ax, 2.2, 0.25, "$x_t$", fontsize=12)
    _line(ax, [2.2, x_o], [y_bus, y_bus], lw=1.6)
    _text(ax, 3.05, y_bus - 0.33, "$[h_{t-1}; x_t]$", fontsize=9, ha="left")

    gates = [(x_f, "σ", "$f_t$", "forget", PALE["blue"]), (x_i, "σ", "$i_t$", "input", PALE["blue"]),
             (x_g, "tanh", "$g_t=\\tilde c_t$", "candidate", PALE["orange"]),
             (x_o, "σ", "$o_t$", "output", PALE["blue"])]
    for x, fn, _name, role, color in gates:
        _arrow(ax, (x, y_bus), (x, y_gate - 0.42))
        _box(ax, x, y_gate, 1.15, 0.84, color=color)
        _text(ax, x, y_gate + 0.13, fn, fontsize=11)
        _text(ax, x, y_gate - 0.22, role, fontsize=7, color="#555555")
    # f_t scales the old cell
    _arrow(ax, (x_f, y_gate + 0.42), (x_f, y_c - 0.28))
    _text(ax, x_f - 0.32, 4.3, "$f_t$", fontsize=11)
    # i_t ⊙ g_t is written into the cell
    _op(ax, 5.45, 4.45, "×")
    _arrow(ax, (x_i, y_gate + 0.42), (5.25, 4.25))
    _arrow(ax, (x_g, y_gate + 0.42), (5.65, 4.25))
    _text(ax, x_i - 0.2, 3.75, "$i_t$", fontsize=11)
    _text(ax, x_g + 0.55, 3.75, "$g_t$", fontsize=11)
    _arrow(ax, (5.45, 4.73), (5.45, y_c - 0.28))
    # h_t = o_t ⊙ tanh(c_t)
    _line(ax, [x_out, x_out], [y_c, 4.95])
    _box(ax, x_out, 4.6, 1.05, 0.62, "tanh", color=PALE["orange"], fontsize=10)
    _op(ax, x_out, y_gate, "×")
    _arrow(ax, (x_out, 4.29), (x_out, y_gate + 0.28))
    _arrow(ax, (x_o + 0.58, y_gate), (x_out - 0.28, y_gate))
    _text(ax, 8.55, y_gate + 0.3, "$o_t$", fontsize=11)
    _line(ax, [x_out, x_out, 12.2], [y_gate - 0.28, y_h, y_h])
    _arrow(ax, (11.6, y_h), (12.2, y_h))
    _text(ax, 13.4, y_h - 0.38, "$h_t$ (output, next state)", fontsize=10, ha="right")

    _text(ax, 6.1, 7.25, "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t \\qquad h_t = o_t \\odot \\tanh(c_t)$",
          fontsize=11)
    _text(ax, 7.3, 0.3, "weights stacked in PyTorch's order i, f, g, o: (4H, F) and (4H, H)",
          fontsize=8, color="#555555")
    return fig


# --- splitting into heads ------------------------------------------------------------------


def split_heads_figure(T: int = 3, H: int = 4, d_k: int = 2) -> Figure:
    """(B, T, E) -> view (B, T, H, d_k) -> transpose (B, H, T, d_k), and the wrong single view."""
    E, s = H * d_k, 0.5
    head_of = [[HEADS[c // d_k] for c in range(E)] for _ in range(T)]
    pos = [[str(t) for _ in range(E)] for t in range(T)]
    fig, ax = _canvas(15.2, 7.0)

    # the projected queries, one row per position, the heads side by side in the columns
    x0, top = 0.6, 5.9
    _cells(ax, x0, top, head_of, pos, size=s)
    _text(ax, x0 + E * s / 2, top + 0.55, "$q = x\\,W^Q$:  (B, T, E)", fontsize=10)
    for h in range(H):
        _text(ax, x0 + (h + 0.5) * d_k * s, top - T * s - 0.3, f"head {h}", fontsize=7,
              color="#555555")
    _text(ax, x0 + E * s / 2, top - T * s - 0.8, "numbers = position t", fontsize=7, color="#555555")

    # right: view(B, T, H, d_k).transpose(1, 2)
    gx = x0 + E * s + 3.0
    _arrow(ax, (x0 + E * s + 0.3, top - T * s / 2), (gx - 0.3, top - T * s / 2))
    _text(ax, x0 + E * s + 1.5, top - T * s / 2 + 0.5, ".view(B, T, H, $d_k$)\n.transpose(1, 2)",
          fontsize=8.5)
    for h in range(H):
        block_c = [[HEADS[h]] * d_k for _ in range(T)]
        block_l = [[str(t)] * d_k for t in range(T)]
        bx = gx + h * (d_k * s + 0.55)
        _cells(ax, bx, top, block_c, block_l, size=s)
        _text(ax, bx + d_k * s / 2, top + 0.3, f"head {h}", fontsize=8)
    _text(ax, gx + H * (d_k * s + 0.55) / 2 - 0.25, top - T * s - 0.35,
          "(B, H, T, $d_k$): each head sees every position", fontsize=9)
    _text(ax, gx + H * (d_k * s + 0.55) / 2 - 0.25, top - T * s - 0.85,
          "attention per head, then transpose back, reshape to (B, T, E) and apply $W^O$",
          fontsize=8, color="#555555")

    # bottom: the tempting single view reads the memory position by position
    flat_c = [c for row in head_of for c in row]  # memory order of (B, T, E)
    flat_l = [lab for row in pos for lab in row]
    by = 2.1
    _text(ax, x0 + 2.2, by + 0.45, "wrong: .view(B, H, T, $d_k$)", fontsize=10, color="#b03a2e")
    for h in range(H):
        chunk = slice(h * T * d_k, (h + 1) * T * d_k)
        cc, ll = flat_c[chunk], flat_l[chunk]
        block_c = [cc[t * d_k:(t + 1) * d_k] for t in range(T)]
        block_l = [ll[t * d_k:(t + 1) * d_k] for t in range(T)]
        bx = gx + h * (d_k * s + 0.55)
        _cells(ax, bx, by + 0.3, block_c, block_l, size=s)
        _text(ax, bx + d_k * s / 2, by + 0.6, f"'head {h}'", fontsize=8, color="#b03a2e")
    _text(ax, x0 + 2.2, by - 0.35, "same shape, wrong numbers:\n'head 0' gets the first $T\\,d_k$\n"
          "values in memory, which belong to\nposition 0 (colours = true head)", fontsize=8,
          color="#b03a2e")
    return fig


# --- im2col ----------------------------------------------------------------------------------


def im2col_figure(n: int = 4, k: int = 3) -> Figure:
    """A 1-channel n x n image, a k x k kernel: the patches become the columns of one matrix."""
    m = n - k + 1  # output positions per axis (stride 1, no padding)
    L, s = m * m, 0.5
    colors = [HEADS[i % len(HEADS)] for i in range(L)]
    fig, ax = _canvas(15.8, 7.4, bottom=0.7)

    # the input, pixels numbered in memory order, two patches outlined
    top, cs = 5.9, 0.65
    _cells(ax, 0.5, top, [[PALE["grey"]] * n for _ in range(n)],
           [[str(r * n + c) for c in range(n)] for r in range(n)], size=cs, fontsize=9)
    for l in (0, L - 1):
        i, j = divmod(l, m)
        pad = 0.04 * (1 if l == 0 else -1)
        _outline(ax, 0.5 + j * cs + pad, top - (i + k) * cs + pad, k * cs, k * cs, colors[l])
    _text(ax, 0.5 + n * cs / 2, top + 0.4, f"input ({n}×{n}), kernel {k}×{k}", fontsize=10)
    _text(ax, 0.5 + n * cs / 2, top - n * cs - 0.45, "outlined: the patches of\noutput 0 and "
          f"output {L - 1}", fontsize=8, color="#555555")

    # the columns: column l = the patch that output position l reads, flattened
    cx0, c_top = 5.6, 6.5
    col_c = [[colors[l] for l in range(L)] for _ in range(k * k)]
    col_l = [[str((l // m + u) * n + (l % m + v)) for l in range(L)]
             for u in range(k) for v in range(k)]
    _arrow(ax, (0.5 + n * cs + 0.3, top - n * cs / 2), (cx0 - 0.3, top - n * cs / 2))
    _text(ax, (0.5 + n * cs + cx0) / 2, top - n * cs / 2 + 0.45, "im2col\n(F.unfold)", fontsize=9)
    _cells(ax, cx0, c_top, col_c, col_l, size=s, fontsize=8)
    for l in range(L):
        _text(ax, cx0 + (l + 0.5) * s, c_top + 0.25, str(l), fontsize=8)
    _text(ax, cx0 + L * s / 2, c_top + 0.62, "output position $l$", fontsize=8, color="#555555")
    _text(ax, cx0 + L * s / 2, c_top - k * k * s - 0.35,
          f"cols: ($C k^2$, L) = ({k * k}, {L})", fontsize=9)

    # the product with the flattened filters, then the reshape
    mid, ws = c_top - k * k * s / 2, 0.36
    _text(ax, cx0 + L * s + 0.5, mid, "→", fontsize=16)
    w_left = cx0 + L * s + 1.0
    _cells(ax, w_left, mid + ws, [[PALE["purple"]] * (k * k) for _ in range(2)],
           [[f"$w_{{{o}{q}}}$" if q in (0, k * k - 1) else "" for q in range(k * k)]
            for o in range(2)], size=ws, fontsize=6.5)
    w_right = w_left + k * k * ws
    _text(ax, (w_left + w_right) / 2, mid + ws + 0.35, "$W_{flat}$: (O, $C k^2$), O = 2",
          fontsize=8.5)
    _text(ax, w_right + 0.6, mid, "· cols =", fontsize=10)
    yx = w_right + 1.25
    _cells(ax, yx, mid + s, [[colors[l] for l in range(L)] for _ in range(2)],
           [[f"$y_{{{o}{l}}}$" for l in range(L)] for o in range(2)], size=s, fontsize=7)
    _text(ax, yx + L * s / 2, mid + s + 0.35, "Y: (O, L)", fontsize=8.5)
    _text(ax, yx + L * s / 2, mid - s - 0.5, f"reshape to\n(O, {m}, {m})", fontsize=8.5)
    _text(ax, 7.9, 1.1, "one large matrix product instead of a loop over positions; "
          "each pixel is copied into up to $k^2$ columns", fontsize=8.5, color="#555555")
    return fig


# --- the log-mel / MFCC pipeline -----------------------------------------------------------


def _glyph(ax: plt.Axes, cx: float, cy: float, kind: str) -> None:
    """A tiny picture inside a pipeline box."""
    xs = np.linspace(-0.75, 0.75, 200)
    if kind == "wave":
        ys = 0.24 * np.sin(31 * xs) * np.exp(-4 * xs**2) * (1 + 0.3 * np.sin(97 * xs))
        ax.plot(cx + xs, cy + ys, color="#3b6ea5", lw=0.9, zorder=3)
    elif kind == "frames":
        for j, x in enumerate((-0.55, -0.2, 0.15)):
            ax.add_patch(Rectangle((cx + x, cy - 0.2 + 0.05 * j), 0.55, 0.3, fill=False,
                                   edgecolor=HEADS[j], lw=1.2, zorder=3))
    elif kind == "window":
        ys = 0.5 - 0.5 * np.cos(2 * np.pi * (xs + 0.75) / 1.5)
        ax.plot(cx + xs, cy - 0.22 + 0.45 * ys, color="#3b6ea5", lw=1.2, zorder=3)
    elif kind == "spectrum":
        f = np.linspace(0, 1, 40)
        ax.bar(cx - 0.7 + 1.4 * f, 0.45 * np.abs(np.sin(9 * f)) * np.exp(-2 * f) + 0.03,
               width=0.03, bottom=cy - 0.22, color="#3b6ea5", zorder=3)
    elif kind == "mel":
        pts = np.array([0.0, 0.08, 0.18, 0.32, 0.52, 0.8, 1.0]) * 1.5 - 0.75
        for j in range(1, len(pts) - 1):
            ax.plot(cx + pts[j - 1:j + 2], cy - 0.22 + np.array([0, 0.42, 0]),
                    color=HEADS[j % len(HEADS)], lw=1.1, zorder=3)
    elif kind == "log":
        v = np.linspace(0.02, 1, 100)
        ax.plot(cx - 0.7 + 1.4 * v, cy - 0.22 + 0.45 * (np.log(v) - np.log(0.02)) / -np.log(0.02),
                color="#3b6ea5", lw=1.2, zorder=3)
    elif kind == "dct":
        for q, color in zip(range(3), HEADS, strict=False):
            ax.plot(cx + xs, cy + 0.17 * np.cos(np.pi * q * (xs + 0.75) / 1.5), color=color,
                    lw=1.0, zorder=3)


def mfcc_pipeline_figure() -> Figure:
    """waveform -> frames -> window -> |DFT|^2 -> mel filter bank -> log -> DCT-II -> MFCC."""
    steps = [
        ("waveform", "(B, L)", "wave"),
        ("frames", "(B, T, N)\nhop H", "frames"),
        ("× window", "Hann (N,)", "window"),
        ("|DFT|²", "power (B, K, T)\nK = N/2 + 1", "spectrum"),
        ("mel filters", "$H^\\top P$: (B, M, T)", "mel"),
        ("log (dB)", "log-mel (B, M, T)", "log"),
        ("DCT-II", "first Q rows", "dct"),
        ("MFCC", "(B, Q, T)", None),
    ]
    fig, ax = _canvas(17.6, 4.0)
    w, h, gap, y = 1.75, 1.9, 0.42, 2.55
    xs = [0.25 + w / 2 + i * (w + gap) for i in range(len(steps))]
    for i, (x, (name, shape, glyph)) in enumerate(zip(xs, steps, strict=True)):
        final = i == len(steps) - 1
        color = PALE["green"] if final else (PALE["yellow"] if i == 5 else PALE["blue"])
        _box(ax, x, y, w, h, color=color)
        _text(ax, x, y + 0.62, name, fontsize=10, fontweight="bold")
        _text(ax, x, y - 0.55, shape, fontsize=8)
        if glyph:
            _glyph(ax, x, y + 0.05, glyph)
        else:
            _text(ax, x, y + 0.05, "$C_{:Q}\\,\\mathrm{logmel}$", fontsize=9)
        if i:
            _arrow(ax, (xs[i - 1] + w / 2, y), (x - w / 2, y))

    def bracket(i0: int, i1: int, label: str, yb: float, color: str) -> None:
        x_a, x_b = xs[i0] - w / 2, xs[i1] + w / 2
        _line(ax, [x_a, x_a, x_b, x_b], [yb + 0.15, yb, yb, yb + 0.15], color=color)
        _text(ax, (x_a + x_b) / 2, yb - 0.27, label, fontsize=8.5, color=color)

    bracket(1, 3, "torch.stft (centre padding, frames, window, DFT)", 1.25, "#3b6ea5")
    bracket(4, 5, "MelSpectrogram + AmplitudeToDB", 1.25, "#8a6d00")
    bracket(0, 7, "torchaudio.transforms.MFCC: the whole chain", 0.55, "#2e7d32")
    _text(ax, xs[5], y + h / 2 + 0.3, "log-mel energies: not yet MFCC", fontsize=8.5,
          color="#b03a2e")
    return fig


# --- the fusion methods ----------------------------------------------------------------------


def fusion_map_figure() -> Figure:
    """The fusion methods of the course, grouped by how (and where) the modalities meet."""
    families = [
        ("one long vector", PALE["grey"], [
            ('"concat"', "$[f_1; f_2; f_3]$"),
        ]),
        ("weighted sums: each $f_m$ first projected to one width D", PALE["blue"], [
            ('"linear"', "$\\Sigma_m\\, w_m W_m f_m$,   $w = \\mathrm{softmax}(a)$"),
            ('"nonlinear"', "$\\mathrm{ReLU}(\\Sigma_m\\, w_m W_m f_m)$"),
            ('"gated"', "$\\Sigma_m\\, g_m(f) \\odot \\tanh(W_m f_m)$,   $g$ = softmax over m"),
        ]),
        ("products: multiplicative interactions between the features", PALE["orange"], [
            ('"tensor"', "$W\\,\\mathrm{vec}([f_1;1] \\otimes [f_2;1] \\otimes [f_3;1])$"),
            ('"lowrank"', "$\\Sigma_r\\, \\lambda_r\\, \\Pi_m\\, W_m^{(r)} [f_m; 1]$"),
        ]),
        ("attention: one modality queries the others", PALE["purple"], [
            ('"attention"', "$\\mathrm{softmax}(q_m K_{-m}^\\top/\\sqrt{d})\\, V_{-m}$"),
        ]),
        ("decisions: each modality classifies, then the logits $y_m$ are combined", PALE["green"], [
            ('"late" (logits)', "$\\mathrm{softmax}(\\Sigma_m\\, w_m y_m)$"),
            ('"late" (probs)', "$\\Sigma_m\\, w_m\\, \\mathrm{softmax}(y_m)$"),
        ]),
    ]
    row_h, head_h, gap = 0.55, 0.5, 0.14
    heights = [row_h * len(methods) + head_h for _, _, methods in families]
    total = sum(heights) + gap * (len(families) - 1)
    bottom, top = 0.8, 0.8 + total
    fig, ax = _canvas(16.4, top + 0.25)

    # the encoders on the left, one feature vector each
    names = ["image", "audio", "text"]
    centre = bottom + total / 2
    ys = [centre + 1.6, centre, centre - 1.6]
    for i, (name, yy) in enumerate(zip(names, ys, strict=True)):
        _box(ax, 0.95, yy, 1.5, 0.7, name, color=HEADS[i], fontsize=9)
        _arrow(ax, (1.7, yy), (2.55, yy))
        _text(ax, 2.95, yy, f"$f_{{{i + 1}}}$", fontsize=11)
    _text(ax, 0.95, ys[0] + 0.7, "encoders", fontsize=9, color="#555555")
    _line(ax, [3.35, 3.6, 3.6, 3.35], [ys[0] + 0.3, ys[0] + 0.3, ys[-1] - 0.3, ys[-1] - 0.3])
    _arrow(ax, (3.6, centre), (4.2, centre))

    # the families, top to bottom, each method with its name in mmcourse.nn.fusion
    fx, fw = 4.35, 11.9
    y = top
    for (family, color, methods), height in zip(families, heights, strict=True):
        ax.add_patch(FancyBboxPatch((fx, y - height), fw, height,
                                    boxstyle="round,pad=0,rounding_size=0.15", facecolor=color,
                                    edgecolor="#999999", lw=0.8, zorder=0))
        _text(ax, fx + 0.15, y - 0.23, family, fontsize=9, ha="left", fontweight="bold")
        for j, (method, formula) in enumerate(methods):
            yy = y - head_h - (j + 0.4) * row_h
            _text(ax, fx + 0.35, yy, method, fontsize=8.5, ha="left", family="monospace")
            _text(ax, fx + 3.2, yy, formula, fontsize=10, ha="left")
        y -= height + gap
    _text(ax, fx + fw / 2, 0.35, 'names as in mmcourse.nn.fusion.METHODS; "late" fuses decisions, '
          "the others fuse features", fontsize=8.5, color="#555555")
    return fig


# --- ring all-reduce -------------------------------------------------------------------------


def ring_allreduce_steps(n: int) -> list[list[list[frozenset[int]]]]:
    """Simulate ring all-reduce on ``n`` workers, each gradient cut into ``n`` chunks.

    Returns the state before the first step and after each of the 2(n - 1) steps: state[k][j]
    is the set of workers whose chunk j worker k has summed so far.
    """
    if n < 2:
        raise ValueError(f"expected at least 2 workers, got {n}")
    state = [[frozenset({k}) for _ in range(n)] for k in range(n)]
    states = [[row[:] for row in state]]
    for s in range(n - 1):  # reduce-scatter: send chunk (k - s), the receiver adds it
        sent = [(k, (k - s) % n, state[k][(k - s) % n]) for k in range(n)]
        for k, j, part in sent:
            state[(k + 1) % n][j] = state[(k + 1) % n][j] | part
        states.append([row[:] for row in state])
    for s in range(n - 1):  # all-gather: pass the finished chunks on, the receiver copies
        sent = [(k, (k + 1 - s) % n, state[k][(k + 1 - s) % n]) for k in range(n)]
        for k, j, part in sent:
            state[(k + 1) % n][j] = part
        states.append([row[:] for row in state])
    return states


def ring_allreduce_figure(n: int = 4) -> Figure:
    """The ring, and every worker's chunks after each step of reduce-scatter and all-gather."""
    states = ring_allreduce_steps(n)
    shade = plt.get_cmap("Blues")
    s, block = 0.55, n * 0.55 + 0.35
    x0 = 6.3
    width = x0 + n * block + 0.3
    top = len(states) * s + 1.7
    fig, ax = _canvas(width, top + 0.2)

    # the ring
    cx, cy, r = 2.1, top / 2 + 0.5, 1.35
    angles = [np.pi / 2 - 2 * np.pi * k / n for k in range(n)]
    pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]
    for k in range(n):
        _arrow(ax, pts[k], pts[(k + 1) % n], rad=-0.35, shrink=15)
    for k, (x, y) in enumerate(pts):
        _op(ax, x, y, str(k), r=0.33, color=PALE["yellow"])
    _text(ax, cx, cy, "ring\n$k \\to k{+}1$", fontsize=8.5)
    _text(ax, cx, cy - r - 1.0, f"{n} workers; at each step every\nworker sends 1/{n} of its "
          "gradient\n(one chunk) to its neighbour", fontsize=8, color="#555555")

    # the chunks of each worker over time
    y0 = top - 0.9
    for k in range(n):
        bx = x0 + k * block
        _text(ax, bx + n * s / 2, y0 + 0.6, f"worker {k}", fontsize=9)
        for j in range(n):
            _text(ax, bx + (j + 0.5) * s, y0 + 0.22, f"c{j}", fontsize=6.5, color="#777777")
    for t, state in enumerate(states):
        y_row = y0 - t * s
        for k in range(n):
            colors = [shade(0.15 + 0.7 * len(part) / n) for part in state[k]]
            labels = ["Σ" if len(part) == n else "".join(str(w) for w in sorted(part))
                      for part in state[k]]
            _cells(ax, x0 + k * block, y_row, [colors], [labels], size=s, fontsize=7)
        if t == 0:
            phase = "start"
        elif t <= n - 1:
            phase = f"reduce-scatter {t}"
        else:
            phase = f"all-gather {t - n + 1}"
        _text(ax, x0 - 0.15, y_row - s / 2, phase, fontsize=7.5, ha="right")
    _text(ax, x0 + n * block / 2, y0 - len(states) * s - 0.35,
          "a cell lists the workers summed into that chunk (Σ: all of them); reduce-scatter adds "
          "what arrives,\nall-gather copies it. "
          f"2(N−1) = {2 * (n - 1)} steps, each moving 1/N of the gradient per worker", fontsize=8,
          color="#555555")
    return fig


FIGURES = {
    "lstm_cell": lstm_cell_figure,
    "split_heads": split_heads_figure,
    "im2col": im2col_figure,
    "mfcc_pipeline": mfcc_pipeline_figure,
    "fusion_map": fusion_map_figure,
    "ring_allreduce": ring_allreduce_figure,
}
