"""Where code runs: seeding, device choice, mixed-precision support, quiet output under CI."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def in_ci() -> bool:
    """True under continuous integration or when progress bars are switched off explicitly."""
    flag = os.environ.get("MMCOURSE_QUIET", os.environ.get("CI", ""))
    return flag.strip().lower() not in ("", "0", "false", "no")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeds the legacy global generator on purpose)
    torch.manual_seed(seed)


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to use: ``preferred`` when given, else CUDA, then Apple MPS, then the CPU.

    ``MMCOURSE_DEVICE`` in the environment overrides the automatic choice.
    """
    preferred = preferred or os.environ.get("MMCOURSE_DEVICE") or None
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        if device.type == "mps" and not mps_available():
            raise RuntimeError("device 'mps' was asked for, but torch sees no Apple MPS device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def amp_dtypes(device: torch.device | str) -> list[torch.dtype]:
    """The reduced-precision dtypes that autocast supports on ``device``, best first."""
    device = torch.device(device)
    if device.type == "cuda":
        dtypes = [torch.bfloat16] if torch.cuda.is_bf16_supported() else []
        return dtypes + [torch.float16]
    if device.type == "mps":
        return [torch.float16]
    return [torch.bfloat16]  # CPU autocast: bf16 only, and slower than fp32 on most CPUs


def setup(
    seed: int = 0, device: str | None = None, verbose: bool = True, threads: int | None = None
) -> torch.device:
    """What every notebook calls first: seed, pick the device, quiet progress bars, and say so.

    ``threads``: CPU threads for torch when the chosen device is the CPU (None keeps torch's
    choice). The course's models are tiny, and one thread is often the fastest for them: each
    small operation costs more to split than it saves, and far more on a busy machine.
    """
    seed_everything(seed)
    chosen = pick_device(device)
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        if chosen.type == "cpu":
            torch.set_num_threads(threads)
    if in_ci():
        os.environ.setdefault("TQDM_DISABLE", "1")
    if verbose:
        print(f"mmcourse: torch {torch.__version__}, device {chosen}, seed {seed}")
    return chosen
