"""Sequence encoders: an LSTM or GRU over padded sequences, pooled to one vector each.

A batch of variable-length sequences arrives padded to a common length ``T`` together with
the true lengths. The result for each sequence is the same as running it alone, whatever the
padding holds:

- a bidirectional encoder packs the batch (``pack_padded_sequence``), so padded steps are never
  fed to the cell (the backward direction must start at each sequence's own last step);
- a one-directional encoder runs over the padded batch and reads each sequence's outputs only
  up to its length. The output at step t depends on steps 1..t alone, so padding after the end
  cannot change it. On a CPU this is a few times faster than packing, whose many small
  per-step batches cost more than the wasted padded steps. ``pack=True`` forces packing.

Packing needs the lengths on the host (a sync when they live on a GPU, and a graph break
under ``torch.compile``); the one-directional path keeps them on their device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmcourse.nn.validate import positive_int, value_checks_enabled

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}
POOLS = ("last", "mean")


def check_lengths(
    lengths: torch.Tensor | Sequence[int] | None,
    B: int,
    T: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``lengths`` as an int64 tensor of shape (B,), each in [1, T]; else a clear error.

    ``None`` means every sequence fills all ``T`` steps. The result lives on ``device``
    (default: where ``lengths`` is, the CPU for a list or None). The values are checked where
    that reads nothing on the host (see :mod:`mmcourse.nn.validate`).
    """
    if lengths is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(list(lengths))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"expected lengths as a tensor or a list of ints, got {lengths!r}"
            ) from err
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"expected integer lengths, got dtype {lengths.dtype}")
    if lengths.shape != (B,):
        raise ValueError(
            f"expected lengths of shape ({B},), one per sequence, got {tuple(lengths.shape)}"
        )
    lengths = lengths.detach().to(device=device or lengths.device, dtype=torch.int64)
    if B and value_checks_enabled():
        lo, hi = torch.stack([lengths.min(), lengths.max()]).tolist()  # one read of two values
        if lo < 1 or hi > T:
            raise ValueError(
                f"expected every length in [1, {T}] (T = x.shape[1]), got min {lo}, max {hi}"
            )
    return lengths


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) boolean mask, True at the valid steps t < lengths[b]."""
    steps = torch.arange(T, device=lengths.device)  # (T,)
    return steps[None, :] < lengths[:, None]  # (B, T)


class SequenceEncoder(nn.Module):
    """An LSTM or GRU over padded (B, T, F) with lengths (B,), pooled to one vector (B, out_dim).

    Args:
        in_dim: features per step ``F``.
        hidden_dim: hidden units per direction ``H``.
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked recurrent layers.
        bidirectional: also read each sequence backwards; ``out_dim = 2 H``.
        pool: ``"last"``: the last valid hidden state of each direction (for the backward
            direction that is its state at t = 0, after reading the whole sequence);
            ``"mean"``: the mean of the top layer's outputs over the valid steps.
        dropout: dropout between stacked layers (as in ``nn.LSTM``).
        pack: pack the batch; ``None`` (default) packs only when bidirectional.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        *,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        pool: str = "last",
        dropout: float = 0.0,
        pack: bool | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"expected cell in {sorted(CELLS)}, got {cell!r}")
        if pool not in POOLS:
            raise ValueError(f"expected pool in {POOLS}, got {pool!r}")
        for name, v in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("num_layers", num_layers)):
            positive_int(name, v)
        self.in_dim, self.hidden_dim, self.num_layers = in_dim, hidden_dim, num_layers
        self.cell, self.pool, self.bidirectional = cell, pool, bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.pack = bidirectional if pack is None else bool(pack)
        if bidirectional and not self.pack:
            raise ValueError("a bidirectional encoder must pack (pack=True or None)")
        self.out_dim = hidden_dim * self.num_directions
        self.rnn = CELLS[cell](
            in_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def _check_x(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected x as a tensor (B, T, F), got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"expected x of shape (B, T, {self.in_dim}) (batch, steps, features), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(
                f"expected at least one sequence and one step, got x of shape {tuple(x.shape)}"
            )

    def check_input(
        self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """Validate ``x`` (B, T, F) and ``lengths`` (B,); return the lengths as int64 on x's device."""
        self._check_x(x)
        return check_lengths(lengths, x.shape[0], x.shape[1], device=x.device)

    def _run(
        self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs (B, T, D*H), zero past each length; last valid states (B, D*H); lengths."""
        lengths = self.check_input(x, lengths)  # (B,) int64 on x's device
        B, T, _ = x.shape
        if not self.pack:  # one direction: outputs up to each length ignore what follows
            y, _ = self.rnn(x)  # (B, T, H)
            y = y.masked_fill(~length_mask(lengths, T)[..., None], 0.0)  # (B, T, H)
            last = y[torch.arange(B, device=y.device), lengths - 1]  # (B, H)
            return y, last, lengths
        # packing wants the lengths on the host
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H); LSTM gives (h, c)
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D*H)
        top = h_n[-self.num_directions :]  # (D, B, H): forward (and backward) of the top layer
        return y, top.transpose(0, 1).reshape(B, self.out_dim), lengths

    def steps(
        self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """The top layer's output at every step, (B, T, out_dim), zero at padded steps."""
        y, _, _ = self._run(x, lengths)
        return y

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """Encode padded ``x`` (B, T, F) with ``lengths`` (B,) into (B, out_dim)."""
        y, last, lengths = self._run(x, lengths)
        if self.pool == "last":
            return last  # (B, D*H)
        n = lengths.to(device=y.device, dtype=y.dtype)[:, None]  # (B, 1)
        return y.sum(dim=1) / n  # padded steps are zero, so the sum covers valid steps only

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}, pack={self.pack}, out_dim={self.out_dim}"
