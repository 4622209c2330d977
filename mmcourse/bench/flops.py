r"""Counting the work: floating-point operations of attention, and the peak a device can reach.

Attention on q (B, H, S_q, d), k and v (B, H, S_k, d) is two matrix products per head,
each 2 S_q S_k d FLOPs (a multiply and an add per term)::

    forward   S = q k^T           2 B H S_q S_k d
              O = P v             2 B H S_q S_k d          -> 4 B H S_q S_k d
    backward  dV = P^T dO,  dP = dO v^T,  dQ = dS k,  dK = dS^T q
                                  4 x 2 B H S_q S_k d      -> 8 B H S_q S_k d

so forward + backward = 12 B H S_q S_k d. With a causal mask only the S_q S_k / 2 entries on
and below the diagonal are needed (S_q = S_k), and the count is halved: that is the work a
kernel must do, whatever it does in fact (the scratch version computes the full square and
masks it; FlashAttention-style kernels skip the blocks above the diagonal and recompute S in
the backward pass, which is not credited). Softmax, scaling and masking (O(S_q S_k) each) are
not counted. A linear layer (N, n_in) -> (N, n_out) is 2 N n_in n_out forward, twice that
backward (the gradients of its input and of its weight).

Achieved TFLOP/s = FLOPs / seconds / 1e12; the fraction of the peak divides by the device's
dense tensor-core peak for 16-bit inputs (:data:`PEAK_TFLOPS`, from the vendors' data sheets;
unknown devices, CPUs included, have none).
"""

from __future__ import annotations

import re

import torch

# Dense (no sparsity) bf16/fp16 tensor-core TFLOP/s from NVIDIA's data sheets, by a pattern of
# the name torch.cuda.get_device_name() reports. The first match wins: order matters.
PEAK_TFLOPS: list[tuple[str, float]] = [
    (r"H200.*NVL", 835.0),
    (r"H200", 989.4),  # SXM
    (r"H100.*PCIe", 756.0),
    (r"H100.*NVL", 835.0),
    (r"H100", 989.4),  # SXM
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
    (r"\bT4\b", 65.0),  # fp16 only: a T4 has no bf16 tensor cores
]


def attention_flops(B: int, H: int, S_q: int, S_k: int, d: int, *, causal: bool = False,
                    backward: bool = True) -> float:
    """FLOPs of attention forward (4 B H S_q S_k d), or forward + backward (12 B H S_q S_k d);
    halved when ``causal``. See the module docstring for the derivation."""
    if min(B, H, S_q, S_k, d) < 1:
        raise ValueError(f"expected positive sizes, got B={B}, H={H}, S_q={S_q}, S_k={S_k}, d={d}")
    if causal and S_q != S_k:
        raise ValueError(f"a causal mask needs S_q == S_k, got {S_q} and {S_k}")
    flops = (12 if backward else 4) * B * H * S_q * S_k * d
    return flops / 2 if causal else float(flops)


def linear_flops(N: int, n_in: int, n_out: int, *, backward: bool = True) -> float:
    """FLOPs of a linear layer on N rows: 2 N n_in n_out forward, 3 times that with backward."""
    return float((6 if backward else 2) * N * n_in * n_out)


def peak_tflops(device: str | torch.device | None = None, name: str | None = None) -> float | None:
    """The dense 16-bit tensor-core peak of a CUDA device (by ``name``, or the name of
    ``device``), in TFLOP/s; None when the device is not a known GPU."""
    if name is None:
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type != "cuda":
            return None
        name = torch.cuda.get_device_name(device)
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops
    return None
