"""A multimodal classifier: one encoder per modality, a fusion, a head; and its multi-task loss.

    f_m = encoder_m(inputs_m)            (B, d_m)     for every modality present
    h   = fusion({m: f_m})               (B, D)
    y   = head(h)                        (B, C)       (no head when the fusion decides itself)

With ``aux_heads=True`` each modality also gets its own classifier, whose logits
(``model.aux_logits``, set by every forward) feed the multi-task loss
L = L_fused + sum_m lambda_m L_m.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.nn.fusion import Fusion

# Which batch keys feed each modality's encoder (see mmcourse.data.collate).
INPUTS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "audio": ("audio", "audio_len"),
    "text": ("tokens", "tokens_len"),
}


class MultimodalClassifier(nn.Module):
    """Encoders + fusion + head, taking the batch dict of ``mmcourse.data.collate``.

    ``missing`` (modality names) drops modalities at inference, to measure robustness;
    ``modality_dropout`` drops each modality of a training batch with that probability (never
    all of them), which teaches the fusion to cope.

    Under ``torch.compile`` the forward is one graph. With modality dropout in training, the
    draw of the modalities to drop runs in Python between two graphs, and each subset of
    modalities kept compiles once (at most 2^M - 1 graphs).
    """

    takes_batch = True  # the trainer gives the model the whole batch dict, whatever ``inputs``

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: Fusion,
        num_classes: int = 10,
        *,
        inputs: Mapping[str, tuple[str, ...]] | None = None,
        aux_heads: bool = False,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if set(encoders) != set(fusion.modalities):
            raise ValueError(
                f"encoders {sorted(encoders)} and fusion modalities {sorted(fusion.modalities)} differ"
            )
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"expected modality_dropout in [0, 1), got {modality_dropout}")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.inputs = {m: tuple((inputs or INPUTS)[m]) for m in encoders}
        self.head = nn.Identity() if fusion.produces_logits else nn.Linear(fusion.out_dim, num_classes)
        self.aux = (
            nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in fusion.dims.items()})
            if aux_heads
            else None
        )
        self.modality_dropout = modality_dropout
        self.missing = frozenset()
        self.aux_logits: dict[str, torch.Tensor] = {}

    @property
    def missing(self) -> frozenset[str]:
        """The modalities left out at every forward (a frozen set; assign any set of names)."""
        return self._missing

    @missing.setter
    def missing(self, names: Iterable[str] | str) -> None:
        names = frozenset([names] if isinstance(names, str) else names)
        unknown = sorted(names - set(self.encoders))
        if unknown:
            raise ValueError(
                f"unknown modalities {unknown}; this model has {sorted(self.encoders)}"
            )
        self._missing = names

    @property
    def may_skip_parameters(self) -> bool:
        """Whether a training step may leave parameters without a gradient (DDP must know).

        True with modality dropout or missing modalities (their encoders sit out a step), and
        with per-modality heads (a loss that ignores ``aux_logits`` never reaches them).
        """
        return self.modality_dropout > 0 or bool(self._missing) or self.aux is not None

    def _dropped(self, drop: Iterable[str]) -> tuple[str, ...]:
        """The modalities this forward leaves out: ``drop``, ``missing``, and drawn ones."""
        dropped = tuple(m for m in self.encoders if m in self._missing or m in drop)
        if self.training and self.modality_dropout > 0:
            keep = tuple(m for m in self.encoders if m not in dropped)
            dropped += _draw_dropped(keep, self.modality_dropout)
        return dropped

    def check_input(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Check the inputs of every encoder not missing, values included (once per split)."""
        for m, encoder in self.encoders.items():
            if m in self._missing:
                continue
            args = self._inputs_of(m, batch)
            check = getattr(encoder, "check_input", None)
            if check is not None:
                check(*args)

    def _inputs_of(self, m: str, batch: Mapping[str, torch.Tensor]) -> tuple:
        absent = [k for k in self.inputs[m] if k not in batch]
        if absent:
            raise KeyError(f"the {m} encoder needs batch keys {self.inputs[m]}; missing {absent}")
        return tuple(batch[k] for k in self.inputs[m])

    def features(self, batch: Mapping[str, torch.Tensor], drop: Iterable[str] = ()) -> dict:
        """{modality: (B, d_m)} for the modalities not dropped."""
        dropped = self._dropped(drop)
        feats = {
            m: encoder(*self._inputs_of(m, batch))
            for m, encoder in self.encoders.items()
            if m not in dropped
        }
        if not feats:
            raise ValueError(f"every modality was dropped ({sorted(dropped)}); keep at least one")
        return feats

    def forward(self, batch: Mapping[str, torch.Tensor], drop: Iterable[str] = ()) -> torch.Tensor:
        feats = self.features(batch, drop)
        self.aux_logits = {m: head(feats[m]) for m, head in self.aux.items() if m in feats} if self.aux else {}
        return self.head(self.fusion(feats))  # (B, C)


@torch.compiler.disable
def _draw_dropped(keep: tuple[str, ...], p: float) -> tuple[str, ...]:
    """Each modality of ``keep`` with probability ``p``, never all of them.

    One uniform draw per modality from torch's CPU generator: a host value by design (no
    device is involved), run in Python outside any compiled graph.
    """
    hit = (torch.rand(len(keep)) < p).tolist()
    drop = [m for m, h in zip(keep, hit, strict=True) if h]
    if drop and len(drop) == len(keep):  # never drop every modality
        drop = drop[:-1]
    return tuple(drop)


class MultiTaskLoss(nn.Module):
    """L = L_fused + sum_m lambda_m L_m, reading the per-modality logits the model kept.

    Used as ``loss_fn(logits, y)`` in ``mmcourse.train.fit``.
    """

    def __init__(self, model: MultimodalClassifier, lambdas: Mapping[str, float] | float = 0.3):
        super().__init__()
        if model.aux is None:
            raise ValueError("the model has no per-modality heads: build it with aux_heads=True")
        self.model = [model]  # a list, so the model is not registered twice as a submodule
        names = list(model.aux)
        self.lambdas = dict(lambdas) if isinstance(lambdas, Mapping) else dict.fromkeys(names, lambdas)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, y)
        for m, aux in self.model[0].aux_logits.items():
            loss = loss + self.lambdas.get(m, 0.0) * F.cross_entropy(aux, y)
        return loss
