"""Every fusion method of the course behind one interface.

A fusion takes a dict ``{modality: features}`` with features of shape (B, d_m) and returns
fused features (B, out_dim). A modality may be missing (key absent or ``None``): each method
says what it does then. ``LateFusion`` is the exception that fuses decisions, not features:
it returns log-probabilities (B, C), and ``produces_logits`` says so. The methods::

    concat      [f_1; ...; f_M]                                        (B, sum d_m)
    linear      sum_m w_m z_m,          z_m = W_m f_m + b_m, w = softmax(a)   (B, D)
    nonlinear   ReLU(sum_m w_m z_m)                                     (B, D)
    gated       sum_m g_m(f) * tanh(z_m), g = softmax over m of W_g [f_1; ...; f_M]   (B, D)
                (renormalize=True: g = softmax over m of G_m f_m, exact renormalization)
    tensor      W vec([f_1; 1] (x) ... (x) [f_M; 1]) + b                (B, D)
    low-rank    sum_r lambda_r prod_m (W_m^(r) [f_m; 1]) + b            (B, D)
    late        log softmax(sum_m w_m y_m)  or  log sum_m w_m softmax(y_m)   (B, C)
    attention   queries from one modality, keys/values from the others  (B, D)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.attention import MultiHeadAttention

Features = Mapping[str, torch.Tensor | None]


class Fusion(nn.Module):
    """Base class: validates the features dict and knows the modalities and their widths."""

    produces_logits = False

    def __init__(self, dims: Mapping[str, int]) -> None:
        super().__init__()
        if not dims or any(not isinstance(d, int) or d <= 0 for d in dims.values()):
            raise ValueError(f"expected dims as {{modality: positive width}}, got {dict(dims)!r}")
        self.dims = dict(dims)
        self.modalities = tuple(dims)
        self.out_dim = 0

    def present(self, feats: Features) -> dict[str, torch.Tensor]:
        """The modalities given (not None), checked against ``dims``; at least one."""
        unknown = set(feats) - set(self.dims)
        if unknown:
            raise KeyError(f"unknown modalities {sorted(unknown)}; this fusion knows {self.modalities}")
        given = {m: f for m, f in feats.items() if f is not None}
        if not given:
            raise ValueError(f"expected features for at least one of {self.modalities}, got none")
        B = next(iter(given.values())).shape[0]
        for m, f in given.items():
            if f.dim() != 2 or f.shape != (B, self.dims[m]):
                raise ValueError(
                    f"expected {m} features of shape (B, {self.dims[m]}) with B = {B}, "
                    f"got {tuple(f.shape)}"
                )
        return given

    def filled(self, feats: Features) -> dict[str, torch.Tensor]:
        """Every modality, a missing one replaced by zeros (B, d_m)."""
        given = self.present(feats)
        ref = next(iter(given.values()))
        return {
            m: given.get(m, ref.new_zeros(ref.shape[0], self.dims[m])) for m in self.modalities
        }


class ConcatFusion(Fusion):
    """Early fusion: concatenate the features. A missing modality contributes zeros."""

    def __init__(self, dims: Mapping[str, int]) -> None:
        super().__init__(dims)
        self.out_dim = sum(self.dims.values())

    def forward(self, feats: Features) -> torch.Tensor:
        return torch.cat(list(self.filled(feats).values()), dim=-1)  # (B, sum d_m)


class LinearFusion(Fusion):
    """Project every modality to a common width D, then a weighted sum with w = softmax(a).

    The weights are renormalized over the modalities present, so a missing modality simply
    drops out of the sum. ``weights()`` returns them for inspection.
    """

    def __init__(self, dims: Mapping[str, int], width: int) -> None:
        super().__init__(dims)
        self.out_dim = width
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.dims.items()})
        self.logits = nn.Parameter(torch.zeros(len(self.dims)))  # a, one per modality

    def weights(self, present: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        present = present or self.modalities
        idx = [self.modalities.index(m) for m in present]
        # integer selects, not a list index: a list would be copied host -> device every step
        w = F.softmax(torch.stack([self.logits[i] for i in idx]), dim=0)  # (M_present,)
        return dict(zip(present, w, strict=True))

    def combine(self, feats: Features) -> torch.Tensor:
        given = self.present(feats)
        w = self.weights(tuple(m for m in self.modalities if m in given))
        return sum(w[m] * self.proj[m](f) for m, f in given.items())  # (B, D)

    def forward(self, feats: Features) -> torch.Tensor:
        return self.combine(feats)


class NonlinearFusion(LinearFusion):
    """ReLU of the weighted sum: ReLU(sum_m w_m z_m)."""

    def forward(self, feats: Features) -> torch.Tensor:
        return F.relu(self.combine(feats))


class GatedFusion(Fusion):
    """Gates computed from the features decide, per sample and per dimension, how much each
    modality counts (the gated multimodal unit of Arevalo et al., 2017, for M modalities).

    fused = sum_m g_m * tanh(W_m f_m + b_m), g = softmax over the modalities present of the
    gate scores s, reshaped to (B, M, D); a missing modality gets no weight.

    renormalize=False: s = W_g [f_1; ...; f_M], every gate sees every modality (the GMU). A
        missing modality enters the gate network as zeros, an input it never met in training.
    renormalize=True: s_m = G_m f_m + c_m, each modality's score from its own features only.
        A missing modality then leaves the other scores unchanged, so the gates of the
        modalities present are exactly the full gates renormalized: g_m / sum_present g_n.
    """

    def __init__(self, dims: Mapping[str, int], width: int, renormalize: bool = False) -> None:
        super().__init__(dims)
        self.out_dim, self.renormalize = width, renormalize
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.dims.items()})
        if renormalize:  # G_m, c_m: one score per dimension from f_m alone
            self.gate = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.dims.items()})
        else:  # W_g: (M * D, sum d_m)
            self.gate = nn.Linear(sum(self.dims.values()), len(self.dims) * width)
        self.last_gates: torch.Tensor | None = None  # (B, M, D) after each forward, for plots

    def scores(self, filled: dict[str, torch.Tensor]) -> torch.Tensor:
        """The gate scores s before the softmax: (B, M, D)."""
        if self.renormalize:
            return torch.stack([self.gate[m](f) for m, f in filled.items()], dim=1)  # (B, M, D)
        s = self.gate(torch.cat(list(filled.values()), dim=-1))  # (B, M * D)
        return s.view(s.shape[0], len(self.modalities), self.out_dim)  # (B, M, D)

    def forward(self, feats: Features) -> torch.Tensor:
        filled = self.filled(feats)
        scores = self.scores(filled)  # (B, M, D)
        if any(feats.get(m) is None for m in self.modalities):  # a missing view gets no weight
            scores = torch.stack([
                s if feats.get(m) is not None else torch.full_like(s, float("-inf"))
                for m, s in zip(self.modalities, scores.unbind(1), strict=True)
            ], dim=1)  # (B, M, D)
        g = F.softmax(scores, dim=1)  # (B, M, D), sums to one over the modalities present
        self.last_gates = g.detach()
        z = torch.stack([torch.tanh(self.proj[m](f)) for m, f in filled.items()], dim=1)  # (B, M, D)
        return (g * z).sum(dim=1)  # (B, D)


def _with_one(f: torch.Tensor) -> torch.Tensor:
    return torch.cat([f, f.new_ones(f.shape[0], 1)], dim=-1)  # [f; 1], (B, d + 1)


class TensorFusion(Fusion):
    """Tensor fusion (Zadeh et al., 2017): a linear map of the outer product of the [f_m; 1].

    Appending 1 keeps every lower-order term: the product holds each f_m alone, every pair
    and the full three-way interaction. Its size is prod_m (d_m + 1), which is why the widths
    must stay small. A missing modality is zeros, so only the terms without it remain.
    """

    def __init__(self, dims: Mapping[str, int], width: int) -> None:
        super().__init__(dims)
        self.out_dim = width
        self.product_dim = math.prod(d + 1 for d in self.dims.values())
        self.linear = nn.Linear(self.product_dim, width)

    def outer(self, feats: Features) -> torch.Tensor:
        """vec([f_1; 1] (x) ... (x) [f_M; 1]), modality 1 varying slowest: (B, prod(d_m + 1))."""
        t: torch.Tensor | None = None
        for f in self.filled(feats).values():
            z = _with_one(f)  # (B, d_m + 1)
            t = z if t is None else (t.unsqueeze(-1) * z.unsqueeze(1)).flatten(1)
        return t

    def forward(self, feats: Features) -> torch.Tensor:
        return self.linear(self.outer(feats))  # (B, D)


class LowRankFusion(Fusion):
    """Low-rank multimodal fusion (Liu et al., 2018): tensor fusion with a rank-R weight.

    The weight of tensor fusion, a tensor of shape (d_1+1, ..., d_M+1, D), is written as
    sum_r lambda_r w_1^(r) (x) ... (x) w_M^(r). Then W vec(Z) never needs the outer product:
    h = sum_r lambda_r prod_m (W_m^(r) [f_m; 1]) + b, with W_m^(r) of shape (D, d_m + 1).
    ``to_tensor_fusion()`` builds the equal ``TensorFusion``.
    """

    def __init__(self, dims: Mapping[str, int], width: int, rank: int = 4) -> None:
        super().__init__(dims)
        if rank <= 0:
            raise ValueError(f"expected a positive rank, got {rank}")
        self.out_dim, self.rank = width, rank
        self.factors = nn.ParameterDict(
            {
                m: nn.Parameter(torch.randn(rank, d + 1, width) / math.sqrt(d + 1))
                for m, d in self.dims.items()
            }
        )  # W_m: (R, d_m + 1, D)
        self.lam = nn.Parameter(torch.ones(rank) / rank)  # lambda: (R,)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, feats: Features) -> torch.Tensor:
        h: torch.Tensor | None = None
        for m, f in self.filled(feats).items():
            hm = torch.einsum("bi,rid->brd", _with_one(f), self.factors[m])  # (B, R, D)
            h = hm if h is None else h * hm
        return torch.einsum("r,brd->bd", self.lam, h) + self.bias  # (B, D)

    @torch.no_grad()
    def to_tensor_fusion(self) -> TensorFusion:
        """The TensorFusion with the weight sum_r lambda_r (x)_m W_m^(r): equal outputs."""
        tf = TensorFusion(self.dims, self.out_dim).to(self.bias)
        w: torch.Tensor | None = None  # (R, prod so far, D)
        for m in self.modalities:
            fm = self.factors[m]  # (R, d_m + 1, D)
            w = fm if w is None else (w.unsqueeze(2) * fm.unsqueeze(1)).flatten(1, 2)
        tf.linear.weight.copy_(torch.einsum("r,rpd->dp", self.lam, w))  # (D, prod(d_m + 1))
        tf.linear.bias.copy_(self.bias)
        return tf


class LateFusion(Fusion):
    """Decision fusion: one classifier per modality, then combine their decisions.

    mode="logits": log softmax(sum_m w_m y_m)   (weighted logits, then one softmax)
    mode="probs":  log(sum_m w_m softmax(y_m))  (average of the per-modality probabilities)
    w = softmax(a) over the modalities present. Returns log-probabilities (B, C).
    """

    produces_logits = True

    def __init__(self, dims: Mapping[str, int], num_classes: int, mode: str = "logits") -> None:
        super().__init__(dims)
        if mode not in ("logits", "probs"):
            raise ValueError(f"expected mode 'logits' or 'probs', got {mode!r}")
        self.mode, self.out_dim = mode, num_classes
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in self.dims.items()})
        self.logits = nn.Parameter(torch.zeros(len(self.dims)))

    def forward(self, feats: Features) -> torch.Tensor:
        given = self.present(feats)
        names = [m for m in self.modalities if m in given]
        w = F.softmax(torch.stack([self.logits[self.modalities.index(m)] for m in names]), dim=0)
        y = torch.stack([self.heads[m](given[m]) for m in names], dim=0)  # (M, B, C)
        if self.mode == "logits":
            return F.log_softmax((w[:, None, None] * y).sum(0), dim=-1)  # (B, C)
        log_p = F.log_softmax(y, dim=-1) + w.log()[:, None, None]  # log(w_m p_m)
        return torch.logsumexp(log_p, dim=0)  # log sum_m w_m p_m, (B, C)


class CrossModalAttentionFusion(Fusion):
    """Each modality queries the others: softmax(q_m K_{-m}^T / sqrt(d)) V_{-m}.

    Every modality is projected to D and becomes one token. The token of modality m asks
    (query) the tokens of the other modalities present (keys and values); a residual and a
    LayerNorm follow, and the fused vector is the mean over the modalities present. With one
    modality present it attends to itself.
    """

    def __init__(self, dims: Mapping[str, int], width: int, num_heads: int = 4) -> None:
        super().__init__(dims)
        self.out_dim = width
        self.proj = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.dims.items()})
        self.attn = MultiHeadAttention(width, num_heads)
        self.norm = nn.LayerNorm(width)
        self.last_weights: dict[str, torch.Tensor] = {}  # m -> (B, H, 1, M-1), for plots

    def forward(self, feats: Features) -> torch.Tensor:
        given = self.present(feats)
        tokens = {m: self.proj[m](f).unsqueeze(1) for m, f in given.items()}  # (B, 1, D)
        fused, weights = [], {}
        for m, q in tokens.items():
            others = [t for n, t in tokens.items() if n != m] or [q]
            kv = torch.cat(others, dim=1)  # (B, M-1, D)
            out, w = self.attn(q, kv, kv, need_weights=True)  # (B, 1, D)
            weights[m] = w.detach()
            fused.append(self.norm(q + out).squeeze(1))  # (B, D)
        self.last_weights = weights  # a new dict: no in-place update of module state
        return torch.stack(fused, dim=0).mean(dim=0)  # (B, D)


METHODS: dict[str, type[Fusion]] = {
    "concat": ConcatFusion,
    "linear": LinearFusion,
    "nonlinear": NonlinearFusion,
    "gated": GatedFusion,
    "tensor": TensorFusion,
    "lowrank": LowRankFusion,
    "late": LateFusion,
    "attention": CrossModalAttentionFusion,
}


def make_fusion(
    method: str, dims: Mapping[str, int], width: int = 64, num_classes: int = 10, **kwargs
) -> Fusion:
    """Build a fusion by name: one of ``METHODS``."""
    if method not in METHODS:
        raise ValueError(f"unknown fusion {method!r}; expected one of {sorted(METHODS)}")
    if method == "concat":
        return ConcatFusion(dims)
    if method == "late":
        return LateFusion(dims, num_classes, **kwargs)
    return METHODS[method](dims, width, **kwargs)
