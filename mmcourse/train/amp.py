"""Mixed precision: which reduced dtype to autocast to, and the gradient scaler fp16 needs.

bf16 keeps float32's exponent range, so gradients neither underflow nor overflow and no
scaling is needed. fp16 (GPUs without bf16, such as Colab's T4) has only 5 exponent bits:
small gradients flush to zero unless the loss is multiplied by a large factor S before
``backward`` and the gradients divided by S before the step; ``GradScaler`` picks S and skips
steps whose gradients overflowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mmcourse.runtime import amp_dtypes

_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


def resolve_amp(amp: str | bool | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for full precision.

    ``"auto"`` (or True): bf16 on a CUDA GPU that supports it, fp16 on an older one, off on the
    CPU and MPS (CPU autocast is slower than float32 on most CPUs). ``"bf16"``/``"fp16"``:
    that dtype, or a clear error where the device cannot autocast to it. None/False: off.
    """
    device = torch.device(device)
    if amp is None or amp is False or (isinstance(amp, str) and amp.lower() in ("off", "none")):
        return None
    if amp is True or (isinstance(amp, str) and amp.lower() == "auto"):
        return amp_dtypes(device)[0] if device.type == "cuda" else None
    dtype = amp if isinstance(amp, torch.dtype) else _NAMES.get(str(amp).lower())
    if dtype is None:
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or None, got {amp!r}")
    supported = amp_dtypes(device)
    if dtype not in supported:
        names = ", ".join(str(d).replace("torch.", "") for d in supported) or "none"
        raise ValueError(
            f"amp={amp!r}: autocast to {dtype} is not supported on device {device} "
            f"(supported there: {names}); pass amp=None for full precision"
        )
    return dtype


@dataclass
class Precision:
    """The mixed-precision policy of a run: autocast dtype and, for fp16, a grad scaler."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def create(cls, amp: str | bool | torch.dtype | None, device: torch.device) -> Precision:
        dtype = resolve_amp(amp, device)
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        return cls(device.type, dtype, scaler)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
        else:
            with torch.autocast(self.device_type, dtype=self.dtype):
                yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        grad_clip: float | None = None,
    ) -> None:
        """Unscale (fp16), clip the global gradient norm to ``grad_clip``, step, update S."""
        if self.scaler is not None:
            if grad_clip is not None:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()

    def __repr__(self) -> str:
        name = "off" if self.dtype is None else str(self.dtype).replace("torch.", "")
        return f"Precision({name}{', grad scaler' if self.scaler is not None else ''})"
