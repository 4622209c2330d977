"""Batching items of different lengths: pad to the longest, and keep the true lengths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

PAD_ID = 0  # the padding token id of every Vocab


def pad(seqs: Sequence[torch.Tensor], value: float | int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D tensors (L_i,) into (B, L_max), filled with ``value``; also the lengths (B,)."""
    if len(seqs) == 0:
        raise ValueError("expected at least one sequence to pad, got none")
    for i, s in enumerate(seqs):
        if not isinstance(s, torch.Tensor) or s.dim() != 1:
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"expected 1-D tensors (L,), got {shape} at position {i}")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)  # (B,)
    out = seqs[0].new_full((len(seqs), int(lengths.max())), value)  # (B, L_max)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Items of the course data (dicts) -> one batch dict.

    "image" (B, 1, 8, 8); "audio" (B, L_max) zero-padded with "audio_len" (B,); "tokens"
    (B, T_max) padded with id 0 with "tokens_len" (B,); "label" (B,) int64; "text" and
    "speaker" lists of str. Keys an item lacks (AV-MNIST has no text) are left out.
    """
    if len(items) == 0:
        raise ValueError("expected a non-empty list of items, got an empty one")
    keys = items[0].keys()
    for i, item in enumerate(items):
        if item.keys() != keys:
            raise ValueError(f"item {i} has keys {sorted(item.keys())}, item 0 has {sorted(keys)}")
    batch: dict[str, Any] = {}
    if "image" in keys:
        batch["image"] = torch.stack([it["image"] for it in items])  # (B, C, H, W)
    if "audio" in keys:
        batch["audio"], batch["audio_len"] = pad([it["audio"] for it in items], 0.0)
    if "tokens" in keys:
        batch["tokens"], batch["tokens_len"] = pad([it["tokens"] for it in items], PAD_ID)
    if "label" in keys:
        batch["label"] = torch.as_tensor([int(it["label"]) for it in items], dtype=torch.int64)
    for key in keys:  # strings and anything else: as lists
        if key not in batch and key not in ("audio_len", "tokens_len"):
            batch[key] = [it[key] for it in items]
    return batch
