"""Exercise checkers: run a learner's function on many random cases against a reference.

Every exercise in the notebooks has a checker here, called by the exercise's name::

    from mmcourse import check
    check.causal_mask(causal_mask)   # raises CheckFailure naming the first thing that is wrong

Each topic's checkers live in a module of their own (``check.attention``, ``check.conv``, ...)
and are imported here by name, so ``dir(check)`` and tab completion list them all;
:func:`compare` (in :mod:`mmcourse.check.comparison`) does the work: shapes, dtypes, values
(which entries differ, and by how much) and, when asked, gradients.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mmcourse.check.attention import attention_head, causal_mask, stable_softmax
from mmcourse.check.audio import add_noise, hann_window, hz_to_mel_slaney
from mmcourse.check.basics import minmax_scale
from mmcourse.check.comparison import CheckFailure, Passed, compare, random_cases
from mmcourse.check.contrastive import class_prototypes, info_nce_loss, recall_at_k
from mmcourse.check.conv import conv1d_unfold, max_pool2d_padded, receptive_field
from mmcourse.check.fastpath import amp_policy, atomic_save, count_parameters
from mmcourse.check.fusion import fit_late_weights, lowrank_factors, renormalized_gating
from mmcourse.check.generation import gnmt_score, min_p_filter, window_attention_step
from mmcourse.check.learning import (
    accumulation_step,
    batchnorm_backward,
    clip_grad_norm,
    debiased_ema,
)
from mmcourse.check.rnn import lstm_proj_step, mean_valid_steps, reverse_padded
from mmcourse.check.scaling import combine_shard_gradients, scaled_lr, shard_indices
from mmcourse.check.text import (
    bag_of_embeddings,
    embedding_backward,
    last_valid_step,
    naive_bayes_posterior,
)

EXERCISES: tuple[str, ...] = (
    "minmax_scale",
    "debiased_ema",
    "clip_grad_norm",
    "accumulation_step",
    "batchnorm_backward",
    "causal_mask",
    "stable_softmax",
    "attention_head",
    "receptive_field",
    "max_pool2d_padded",
    "conv1d_unfold",
    "lstm_proj_step",
    "reverse_padded",
    "mean_valid_steps",
    "naive_bayes_posterior",
    "embedding_backward",
    "bag_of_embeddings",
    "last_valid_step",
    "hann_window",
    "hz_to_mel_slaney",
    "add_noise",
    "renormalized_gating",
    "lowrank_factors",
    "fit_late_weights",
    "info_nce_loss",
    "recall_at_k",
    "class_prototypes",
    "atomic_save",
    "amp_policy",
    "count_parameters",
    "combine_shard_gradients",
    "scaled_lr",
    "shard_indices",
    "min_p_filter",
    "window_attention_step",
    "gnmt_score",
)


def checker_for(name: str) -> Callable[..., Passed]:
    """The checker of exercise ``name``; a clear error lists the known ones."""
    if name not in EXERCISES:
        known = ", ".join(sorted(EXERCISES))
        raise AttributeError(f"no exercise named {name!r}; known exercises: {known}")
    return getattr(sys.modules[__name__], name)


def __getattr__(name: str) -> Callable[..., Passed]:
    """Only reached for names this module lacks: say which exercises exist."""
    if name.startswith("__"):
        raise AttributeError(name)
    return checker_for(name)
