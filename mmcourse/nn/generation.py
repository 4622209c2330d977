"""Autoregressive generation: feed the model its own output, one token at a time.

    x_{t+1} ~ p(. | x_1..x_t [, memory])    append x_{t+1}, repeat until EOS or max_new_tokens

:func:`generate` chooses each token greedily or by sampling (temperature, top-k, top-p; see
:mod:`mmcourse.nn.sampling`), or runs :func:`beam_search`. With ``use_cache=True`` (default)
the model keeps the keys and values of the past (a :class:`~mmcourse.nn.decoder.KVCache`) and
sees only the new token at each step; ``use_cache=False`` recomputes the whole prefix every
step (the reference: both give the same tokens).

The model is a :class:`~mmcourse.nn.decoder.TextDecoder` or anything with its interface:
``model(tokens, memory, key_padding_mask=..., memory_key_padding_mask=..., cache=...)`` -> logits
(B, T, V), ``model.new_cache()`` and ``model.max_len``. Prompts arrive right-padded with their
lengths, as the course's collate makes them; inside they are left-padded so that every row's
next token sits in the last column, and each row is generated as if it were alone.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmcourse.nn.sampling import (
    check_temperature,
    check_top_k,
    check_top_p,
    greedy,
    sample,
)
from mmcourse.nn.validate import positive_int

__all__ = ["beam_search", "generate", "left_pad"]

STRATEGIES = ("greedy", "sample", "beam")


def left_pad(
    prompt: torch.Tensor, lengths: torch.Tensor | None, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded prompts (B, T) with lengths (B,) -> left-padded (B, T) and its padding mask."""
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.is_floating_point():
        got = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ValueError(f"expected integer prompts of shape (B, T), got {got}")
    B, T = prompt.shape
    if T == 0:
        raise ValueError("expected prompts of at least one token (e.g. a start token), got T = 0")
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=prompt.device)
    if not isinstance(lengths, torch.Tensor) or lengths.shape != (B,) or lengths.is_floating_point():
        raise ValueError(f"expected integer prompt_lengths of shape ({B},), got {lengths!r}")
    lengths = lengths.to(prompt.device)
    if int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"expected prompt_lengths in [1, {T}], got {lengths.tolist()}")
    shift = (T - lengths)[:, None]  # (B, 1)
    src = torch.arange(T, device=prompt.device)[None, :] - shift  # (B, T) source column
    padding = src < 0
    left = prompt.gather(1, src.clamp_min(0)).masked_fill(padding, pad_id)
    return left, padding


def _check_context(model: nn.Module, longest: int, max_new_tokens: int) -> None:
    positive_int("max_new_tokens", max_new_tokens)
    context = getattr(model, "max_len", None)
    if context is None:
        return
    if longest > context:
        raise ValueError(
            f"expected prompts of at most the model's context, max_len = {context} tokens; "
            f"the longest has {longest}"
        )
    if longest + max_new_tokens > context:
        raise ValueError(
            f"a prompt of {longest} tokens plus max_new_tokens = {max_new_tokens} exceeds the "
            f"model's context, max_len = {context}; ask for at most {context - longest} new tokens"
        )


class _Stepper:
    """Feeds a model one step at a time, with a KV cache or by recomputing the prefix."""

    def __init__(self, model: nn.Module, tokens: torch.Tensor, padding: torch.Tensor,
                 memory: torch.Tensor | None, memory_padding: torch.Tensor | None,
                 use_cache: bool) -> None:
        self.model, self.memory, self.memory_padding = model, memory, memory_padding
        self.tokens, self.padding = tokens, padding  # everything so far (B, T)
        self.cache = model.new_cache() if use_cache else None
        self.new, self.new_padding = tokens, padding  # not yet seen by the model

    def logits(self) -> torch.Tensor:
        """The next-token logits (B, V) after everything fed so far."""
        if self.cache is not None:
            tokens, padding = self.new, self.new_padding
        else:
            tokens, padding = self.tokens, self.padding
        out = self.model(
            tokens, self.memory, key_padding_mask=padding if bool(padding.any()) else None,
            memory_key_padding_mask=self.memory_padding, cache=self.cache,
        )
        return out[:, -1]

    def append(self, token: torch.Tensor, padding: torch.Tensor) -> None:
        """Add one token per row (B,); ``padding`` (B,) marks rows that are already done."""
        self.new, self.new_padding = token[:, None], padding[:, None]
        self.tokens = torch.cat([self.tokens, self.new], dim=1)
        self.padding = torch.cat([self.padding, self.new_padding], dim=1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (beam search)."""
        self.tokens, self.padding = self.tokens[index], self.padding[index]
        if self.cache is not None:
            self.cache.reorder(index)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    prompt_lengths: torch.Tensor | None = None,
    memory: torch.Tensor | None = None,
    memory_key_padding_mask: torch.Tensor | None = None,
    strategy: Literal["greedy", "sample", "beam"] = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue each prompt (B, T) by up to ``max_new_tokens``: the new tokens (B, N).

    A row ends with ``eos_id`` (kept) and is padded with ``pad_id`` after it; N is shorter than
    ``max_new_tokens`` when every row ended early. ``strategy="sample"`` draws from the
    filtered softmax (``temperature``, ``top_k``, ``top_p``; ``generator`` for reproducible
    draws), ``"beam"`` runs :func:`beam_search` with ``num_beams`` and ``length_penalty``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"expected strategy in {STRATEGIES}, got {strategy!r}")
    check_temperature(temperature)
    if top_k is not None:
        check_top_k(top_k)
    if top_p is not None:
        check_top_p(top_p)
    if strategy == "beam":
        tokens, _ = beam_search(
            model, prompt, max_new_tokens, num_beams=num_beams, prompt_lengths=prompt_lengths,
            memory=memory, memory_key_padding_mask=memory_key_padding_mask,
            length_penalty=length_penalty, eos_id=eos_id, pad_id=pad_id, use_cache=use_cache,
        )
        return tokens
    left, padding = left_pad(prompt, prompt_lengths, pad_id)
    _check_context(model, int((~padding).sum(1).max()), max_new_tokens)
    B = left.shape[0]
    step = _Stepper(model, left, padding, memory, memory_key_padding_mask, use_cache)
    done = torch.zeros(B, dtype=torch.bool, device=left.device)
    out = []
    for _ in range(max_new_tokens):
        logits = step.logits()  # (B, V)
        if strategy == "greedy":
            token = greedy(logits)
        else:
            token = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                           generator=generator)
        token = token.masked_fill(done, pad_id)  # (B,)
        out.append(token)
        was_done = done
        if eos_id is not None:
            done = done | (token == eos_id)
        if bool(done.all()):
            break
        step.append(token, was_done)
    return torch.stack(out, dim=1)  # (B, N)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    num_beams: int = 4,
    prompt_lengths: torch.Tensor | None = None,
    memory: torch.Tensor | None = None,
    memory_key_padding_mask: torch.Tensor | None = None,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    use_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search: the best continuation per prompt (B, N) and its score (B,).

    Keeps the ``num_beams`` partial sequences with the highest sum of log-probabilities. A
    beam that emits ``eos_id`` is finished: it keeps its score and its slot. At the end the
    beams are ranked by the length-normalized score  sum log p / n^length_penalty, where n
    counts the new tokens up to and including EOS (``length_penalty=0``: the plain sum, which
    favours short sentences).
    """
    positive_int("num_beams", num_beams)
    if not isinstance(length_penalty, int | float) or length_penalty < 0:
        raise ValueError(f"expected length_penalty >= 0, got {length_penalty!r}")
    left, padding = left_pad(prompt, prompt_lengths, pad_id)
    _check_context(model, int((~padding).sum(1).max()), max_new_tokens)
    B, K = left.shape[0], num_beams
    rows = torch.arange(B, device=left.device).repeat_interleave(K)  # (B K,): beam -> prompt
    if memory is not None:
        memory = memory[rows]
        if memory_key_padding_mask is not None:
            memory_key_padding_mask = memory_key_padding_mask[rows]
    step = _Stepper(model, left[rows], padding[rows], memory, memory_key_padding_mask, use_cache)
    scores = torch.full((B, K), float("-inf"), device=left.device)
    scores[:, 0] = 0.0  # all beams start equal: let only the first one expand
    done = torch.zeros(B * K, dtype=torch.bool, device=left.device)
    n_new = torch.zeros(B * K, device=left.device)
    seqs = left.new_zeros(B * K, 0)
    for _ in range(max_new_tokens):
        logp = step.logits().float().log_softmax(dim=-1)  # (B K, V)
        V = logp.shape[-1]
        finished_row = torch.full_like(logp[0], float("-inf"))
        finished_row[pad_id] = 0.0  # a finished beam continues with padding, for free
        logp = torch.where(done[:, None], finished_row, logp)
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K V)
        scores, best = cand.topk(K, dim=1)  # (B, K)
        src = (torch.arange(B, device=left.device)[:, None] * K + best // V).flatten()  # (B K,)
        token = (best % V).flatten()  # (B K,)
        seqs = torch.cat([seqs[src], token[:, None]], dim=1)
        was_done = done[src]
        n_new = n_new[src] + (~was_done).float()
        done = was_done | (token == eos_id) if eos_id is not None else was_done
        if bool(done.all()):
            break
        step.reorder(src)
        step.append(token, was_done)
    normalized = scores / n_new.view(B, K).clamp_min(1.0) ** length_penalty  # (B, K)
    pick = normalized.argmax(dim=1)  # (B,)
    chosen = torch.arange(B, device=left.device) * K + pick
    return seqs[chosen], normalized.gather(1, pick[:, None])[:, 0]
