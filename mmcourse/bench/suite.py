"""The benchmark table: each scratch kernel against its optimized counterpart.

A case builds inputs on the device and two callables computing the same thing: the
reference from :mod:`mmcourse.bench.reference` and the library's (``F.scaled_dot_product_
attention``, ``nn.Conv2d``, ``nn.LSTM``, ``torchaudio.transforms.MFCC``). Each is timed for the
forward pass (under ``no_grad``) and for forward + backward.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.bench import reference
from mmcourse.bench.timing import measure
from mmcourse.data import SAMPLE_RATE
from mmcourse.runtime import pick_device

PASSES = ("forward", "forward+backward")


@dataclass
class Pair:
    """Inputs (those that need gradients) and the two implementations to compare."""

    shape: str
    inputs: list[torch.Tensor]
    scratch: Callable[[], Any]
    optimized: Callable[[], Any]


def _leaf(*shape: int, device: torch.device, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype).to(device).requires_grad_()


SIZES = ("small", "large")  # small: seconds on a laptop CPU; large: worth a GPU


def attention_case(device: torch.device, dtype: torch.dtype, gen: torch.Generator,
                   size: str = "small") -> Pair:
    b, h, t, d = (4, 4, 64, 32) if size == "small" else (32, 8, 512, 64)
    q, k, v = (_leaf(b, h, t, d, device=device, dtype=dtype, gen=gen) for _ in range(3))
    return Pair(
        f"q,k,v ({b}, {h}, {t}, {d}), causal",
        [q, k, v],
        lambda: reference.attention(q, k, v, causal=True),
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    )


def conv_case(device: torch.device, dtype: torch.dtype, gen: torch.Generator,
              size: str = "small") -> Pair:
    b, c_in, c_out, hw = (8, 8, 16, 16) if size == "small" else (64, 64, 128, 56)
    conv = nn.Conv2d(c_in, c_out, 3, padding=1).to(device, dtype)
    x = _leaf(b, c_in, hw, hw, device=device, dtype=dtype, gen=gen)
    return Pair(
        f"x ({b}, {c_in}, {hw}, {hw}), 3x3 -> {c_out}",
        [x, conv.weight, conv.bias],
        lambda: reference.conv2d(x, conv.weight, conv.bias, stride=1, padding=1),
        lambda: conv(x),
    )


def lstm_case(device: torch.device, dtype: torch.dtype, gen: torch.Generator,
              size: str = "small") -> Pair:
    b, t, d, hidden = (16, 32, 40, 64) if size == "small" else (128, 200, 80, 512)
    lstm = nn.LSTM(d, hidden, batch_first=True).to(device, dtype)
    x = _leaf(b, t, d, device=device, dtype=dtype, gen=gen)
    weights = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    return Pair(
        f"x ({b}, {t}, {d}), hidden {hidden}",
        [x, *weights],
        lambda: reference.lstm(x, *weights)[0],
        lambda: lstm(x)[0],
    )


def mfcc_case(device: torch.device, dtype: torch.dtype, gen: torch.Generator,
              size: str = "small") -> Pair:
    import torchaudio

    b, n = (8, SAMPLE_RATE) if size == "small" else (256, 4 * SAMPLE_RATE)
    transform = torchaudio.transforms.MFCC(
        sample_rate=SAMPLE_RATE, n_mfcc=13, log_mels=True,
        melkwargs={"n_fft": 256, "hop_length": 128, "n_mels": 40},
    ).to(device, dtype)
    x = _leaf(b, n, device=device, dtype=dtype, gen=gen)
    return Pair(
        f"audio ({b}, {n}) at {SAMPLE_RATE} Hz, 13 MFCC",
        [x],
        lambda: reference.mfcc(x, SAMPLE_RATE, n_mfcc=13, n_fft=256, hop=128, n_mels=40),
        lambda: transform(x),
    )


CASES: dict[str, Callable[..., Pair]] = {
    "attention": attention_case,
    "conv2d": conv_case,
    "lstm": lstm_case,
    "mfcc": mfcc_case,
}


def _runner(fn: Callable[[], Any], inputs: list[torch.Tensor], pass_: str) -> Callable[[], None]:
    if pass_ == "forward":

        def forward() -> None:
            with torch.no_grad():
                fn()

        return forward

    def forward_backward() -> None:
        for t in inputs:
            t.grad = None
        fn().sum().backward()

    return forward_backward


def run_suite(
    device: str | torch.device | None = None,
    *,
    ops: Sequence[str] | None = None,
    passes: Sequence[str] = PASSES,
    repeats: int = 10,
    warmup: int = 2,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    size: str = "small",
) -> list[dict[str, Any]]:
    """One row per (op, pass): medians and IQRs in milliseconds, and the speed-up."""
    device = pick_device(device)
    ops = list(CASES) if ops is None else list(ops)
    unknown = [op for op in ops if op not in CASES] + [p for p in passes if p not in PASSES]
    if size not in SIZES:
        unknown.append(size)
    if unknown:
        raise ValueError(f"unknown op or pass {unknown}; expected ops from {list(CASES)} "
                         f"passes from {list(PASSES)} and sizes from {list(SIZES)}")
    rows = []
    for op in ops:
        pair = CASES[op](device, dtype, torch.Generator().manual_seed(seed), size)
        for pass_ in passes:
            t_s = measure(_runner(pair.scratch, pair.inputs, pass_), device=device,
                          warmup=warmup, repeats=repeats)
            t_o = measure(_runner(pair.optimized, pair.inputs, pass_), device=device,
                          warmup=warmup, repeats=repeats)
            rows.append({
                "op": op,
                "pass": pass_,
                "shape": pair.shape,
                "device": str(device),
                "scratch_ms": t_s.median * 1e3,
                "scratch_iqr_ms": t_s.iqr * 1e3,
                "optimized_ms": t_o.median * 1e3,
                "optimized_iqr_ms": t_o.iqr * 1e3,
                "speedup": t_s.median / max(t_o.median, 1e-12),
                "repeats": repeats,
            })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`run_suite`'s rows."""
    head = ("op", "pass", "scratch ms (IQR)", "optimized ms (IQR)", "speed-up")
    body = [
        (r["op"], r["pass"], f"{r['scratch_ms']:.3f} ({r['scratch_iqr_ms']:.3f})",
         f"{r['optimized_ms']:.3f} ({r['optimized_iqr_ms']:.3f})", f"{r['speedup']:.1f}x")
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    device = rows[0]["device"] if rows else "?"
    return f"device: {device}, torch {torch.__version__}\n" + "\n".join(lines)


def main(device: str | None = None, repeats: int = 10, warmup: int = 2,
         ops: Sequence[str] | None = None, as_json: bool = False, size: str = "small",
         seq_lens: Sequence[int] | None = None) -> int:
    """What ``mmcourse bench`` runs: the suite, or with ``seq_lens`` the attention throughput
    table at those sequence lengths (:mod:`mmcourse.bench.throughput`)."""
    if seq_lens:
        from mmcourse.bench.throughput import attention_throughput, format_throughput

        rows = attention_throughput(device, seq_lens=seq_lens, size=size, repeats=repeats,
                                    warmup=warmup)
        text = format_throughput(rows)
    else:
        rows = run_suite(device, ops=ops, repeats=repeats, warmup=warmup, size=size)
        text = format_table(rows)
    if as_json:
        print(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    else:
        print(text)
    return 0
