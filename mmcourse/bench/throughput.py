"""Attention throughput: achieved TFLOP/s of scratch, ``mmcourse`` and raw SDPA, and the share
of the device's peak.

::

    from mmcourse.bench.throughput import attention_throughput, format_throughput
    rows = attention_throughput("cuda", seq_lens=(1024, 4096))   # causal, forward + backward
    print(format_throughput(rows))

Three implementations of causal self-attention, each timed forward + backward (warm-up runs,
device synchronisation, the median of repeats, as :func:`mmcourse.bench.timing.measure`):

- ``scratch``: :func:`mmcourse.bench.reference.attention` on q, k, v (B, H, S, d): the full
  (S, S) score matrix, masked, softmaxed, multiplied;
- ``mmcourse``: :class:`mmcourse.nn.attention.MultiHeadAttention` on x (B, S, H d), the
  module the course's models use: its four projections, then SDPA;
- ``sdpa``: ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``.

FLOPs follow :mod:`mmcourse.bench.flops` (attention fwd+bwd 12 B H S^2 d, halved for the
causal mask; ``mmcourse`` is also credited its projections), so the TFLOP/s of the three are
comparable although ``mmcourse`` does more work. Inputs are bf16 on a GPU that supports it
(else fp16), float32 on a CPU. A size that does not fit in memory gives a row saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mmcourse.bench import reference
from mmcourse.bench.flops import attention_flops, linear_flops, peak_tflops
from mmcourse.bench.timing import measure
from mmcourse.runtime import pick_device

IMPLEMENTATIONS = ("scratch", "mmcourse", "sdpa")
# (B, H, d) per problem size: "small" takes seconds on a laptop CPU, "large" is worth a GPU
SHAPES = {"small": (2, 4, 32), "large": (4, 16, 64)}


def bench_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it, fp16 on other GPUs, float32 on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _problem(impl: str, B: int, H: int, S: int, d: int, device: torch.device,
             dtype: torch.dtype, gen: torch.Generator) -> tuple[Callable[[], None], float]:
    """A forward + backward callable for ``impl`` and the FLOPs it is credited."""
    flops = attention_flops(B, H, S, S, d, causal=True)
    if impl == "mmcourse":
        from mmcourse.nn.attention import MultiHeadAttention

        E = H * d
        mha = MultiHeadAttention(E, H).to(device, dtype)
        x = torch.randn(B, S, E, generator=gen).to(device, dtype).requires_grad_()
        flops += 4 * linear_flops(B * S, E, E)  # W^Q, W^K, W^V, W^O

        def step() -> None:
            x.grad = None
            mha.zero_grad(set_to_none=True)
            mha(x, is_causal=True)[0].sum().backward()

        return step, flops
    q, k, v = (torch.randn(B, H, S, d, generator=gen).to(device, dtype).requires_grad_()
               for _ in range(3))
    attend = {
        "scratch": lambda: reference.attention(q, k, v, causal=True),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    }[impl]

    def step() -> None:
        for t in (q, k, v):
            t.grad = None
        attend().sum().backward()

    return step, flops


def attention_throughput(
    device: str | torch.device | None = None,
    *,
    seq_lens: Sequence[int] = (1024, 4096),
    size: str = "large",
    implementations: Sequence[str] = IMPLEMENTATIONS,
    repeats: int = 10,
    warmup: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (sequence length, implementation): median and IQR in ms, TFLOP/s, and the
    fraction of the device's peak (None when the peak is unknown, e.g. on a CPU)."""
    device = pick_device(device)
    if size not in SHAPES:
        raise ValueError(f"expected size in {list(SHAPES)}, got {size!r}")
    unknown = [i for i in implementations if i not in IMPLEMENTATIONS]
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; expected some of {IMPLEMENTATIONS}")
    if not seq_lens or any(not isinstance(s, int) or s < 1 for s in seq_lens):
        raise ValueError(f"expected positive sequence lengths, got {list(seq_lens)}")
    B, H, d = SHAPES[size]
    dtype = bench_dtype(device)
    peak = peak_tflops(device)
    rows = []
    for S in seq_lens:
        for impl in implementations:
            row: dict[str, Any] = {
                "op": "attention", "impl": impl, "seq_len": S, "pass": "forward+backward",
                "shape": f"B={B}, H={H}, d={d}, causal", "dtype": str(dtype).replace("torch.", ""),
                "device": str(device), "peak_tflops": peak,
            }
            try:
                step, flops = _problem(impl, B, H, S, d, device, dtype,
                                       torch.Generator().manual_seed(seed))
                t = measure(step, device=device, warmup=warmup, repeats=repeats)
            except torch.OutOfMemoryError:
                row.update(ms=None, iqr_ms=None, flops=None, tflops=None, peak_fraction=None,
                           note="out of memory")
            else:
                tflops = flops / t.median / 1e12
                row.update(ms=t.median * 1e3, iqr_ms=t.iqr * 1e3, flops=flops, tflops=tflops,
                           peak_fraction=None if peak is None else tflops / peak, note="")
            finally:
                step = None  # free the problem's tensors before the next one
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
    return rows


def format_throughput(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`attention_throughput`'s rows."""
    head = ("S", "impl", "ms (IQR)", "TFLOP/s", "of peak")
    body = []
    for r in rows:
        if r["ms"] is None:
            body.append((str(r["seq_len"]), r["impl"], r["note"], "-", "-"))
            continue
        share = "unknown" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%"
        body.append((str(r["seq_len"]), r["impl"], f"{r['ms']:.3f} ({r['iqr_ms']:.3f})",
                     f"{r['tflops']:.3g}", share))
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
             for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0] if rows else {}
    peak = first.get("peak_tflops")
    title = (f"attention forward+backward, {first.get('shape', '?')}, "
             f"{first.get('dtype', '?')} on {first.get('device', '?')} (peak "
             f"{'unknown' if peak is None else f'{peak:g} TFLOP/s'}), torch {torch.__version__}")
    return title + "\n" + "\n".join(lines)
