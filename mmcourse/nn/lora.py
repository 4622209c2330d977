"""LoRA: adapt a frozen linear layer through a trainable low-rank update.

For a pretrained ``nn.Linear`` with weight W (out, in) and bias b, LoRA learns

    y = x W^T + b + (alpha / r) (x A^T) B^T,      A (r, in), B (out, r), r << min(in, out)

with W and b frozen. B starts at zero, so the adapted model starts as the pretrained one;
A starts random (Kaiming uniform, as ``nn.Linear`` initializes its weight). Training touches
r (in + out) numbers instead of in * out. After training, the update can be **merged**,
W <- W + (alpha / r) B A, and the layer costs exactly what the original did; **unmerge**
subtracts it again (up to rounding).

    names = apply_lora(model, r"encoder\\..*|head", r=4, alpha=8)   # wraps every matching Linear
    merge_lora(model); unmerge_lora(model)
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from mmcourse.nn.validate import positive_int

__all__ = ["LoRALinear", "apply_lora", "lora_layers", "merge_lora", "unmerge_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (kept as ``base``) plus the update (alpha / r) B A.

    ``lora_A`` (r, in_features) and ``lora_B`` (out_features, r) are the only trainable
    parameters; ``merged`` says whether the update currently sits inside ``base.weight``.
    A merged layer refuses to run in training mode with gradients on (A and B would silently
    stop learning): ``unmerge()`` before training, ``eval()`` or ``torch.no_grad()`` to infer.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"expected an nn.Linear to adapt, got {type(base).__name__}")
        positive_int("the rank r", r)
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
            raise ValueError(f"expected a positive alpha, got {alpha!r}")
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scale = r, float(alpha), alpha / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear's own weight
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """(out, in): the update (alpha / r) B A."""
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            if self.training and torch.is_grad_enabled() and self.lora_A.requires_grad:
                raise RuntimeError(
                    "this LoRA layer is merged, so A and B would get no gradient: "
                    "unmerge() before training, or call eval() for inference"
                )
            return y  # the update is inside base.weight
        return y + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)  # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> LoRALinear:
        """W <- W + (alpha / r) B A; the forward pass then needs only ``base``."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self) -> LoRALinear:
        """W <- W - (alpha / r) B A: back to the frozen weight and a separate update."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False
        return self

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """(name, layer) of every ``LoRALinear`` in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def apply_lora(
    model: nn.Module, pattern: str, r: int, alpha: float = 1.0, freeze: bool = True
) -> list[str]:
    """Wrap every ``nn.Linear`` whose qualified name fully matches ``pattern`` in a LoRALinear.

    The model is changed in place; returns the names of the wrapped layers. With ``freeze``
    (the default) every other parameter of the model is frozen too, so only the A and B
    matrices train; unfreeze a new head yourself (``model.head.requires_grad_(True)``).
    """
    positive_int("the rank r", r)
    if not isinstance(pattern, str):
        raise TypeError(f"expected a regular expression (str) for the pattern, got {pattern!r}")
    regex = re.compile(pattern)
    wrapped = {n for n, _ in lora_layers(model)}
    inside = {n for w in wrapped for n, _ in model.get_submodule(w).named_modules(prefix=w)}
    linears = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in inside
    ]
    again = sorted(n for n in wrapped if regex.fullmatch(n))
    if again:
        raise ValueError(f"{again} already carry LoRA; each layer gets one adapter")
    names = [n for n in linears if regex.fullmatch(n)]
    if "" in names:
        raise ValueError("the model itself is an nn.Linear: wrap it as LoRALinear(model, r, alpha)")
    if not names:
        raise ValueError(
            f"no nn.Linear of the model has a name fully matching {pattern!r}; "
            f"its linear layers are {linears}"
        )
    if freeze:
        model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA update of ``model`` into its weights (in place)."""
    for _, layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every merged LoRA update back out of its weights (in place)."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model
