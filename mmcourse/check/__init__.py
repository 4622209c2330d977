"""Exercise checkers: run a learner's function on many random cases against a reference.

Every exercise in the notebooks has a checker here, called by the exercise's name::

    from mmcourse import check
    check.minmax_scale(minmax_scale)   # raises CheckFailure naming the first thing that is wrong

Each topic's checkers live in a module of their own (``check.attention``, ``check.conv``, ...)
and are imported here by name, so ``dir(check)`` and tab completion list them all;
:func:`compare` (in :mod:`mmcourse.check.comparison`) does the work: shapes, dtypes, values
(which entries differ, and by how much) and, when asked, gradients.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from mmcourse.check.attention import alibi_attention, cross_attention, multi_query_attention
from mmcourse.check.audio import fir_response_db, hz_to_mel_slaney, istft
from mmcourse.check.basics import minmax_scale, trim_silence
from mmcourse.check.comparison import CheckFailure, Passed, compare, random_cases
from mmcourse.check.contrastive import class_prototypes, info_nce_loss, recall_at_k
from mmcourse.check.conv import depthwise_separable_conv2d, max_pool2d_padded, receptive_field
from mmcourse.check.fastpath import amp_policy, atomic_save, count_parameters
from mmcourse.check.fusion import average_probabilities, outer_with_ones, softmax_weighted_sum
from mmcourse.check.rnn import lstm_proj_step, mean_valid_steps, reverse_padded
from mmcourse.check.scaling import combine_shard_gradients, scaled_lr, shard_indices
from mmcourse.check.text import bigram_counts, char_ngrams, embedding_backward

EXERCISES: tuple[str, ...] = (
    "minmax_scale",
    "trim_silence",
    "cross_attention",
    "alibi_attention",
    "multi_query_attention",
    "receptive_field",
    "max_pool2d_padded",
    "depthwise_separable_conv2d",
    "lstm_proj_step",
    "reverse_padded",
    "mean_valid_steps",
    "istft",
    "hz_to_mel_slaney",
    "fir_response_db",
    "char_ngrams",
    "bigram_counts",
    "embedding_backward",
    "outer_with_ones",
    "softmax_weighted_sum",
    "average_probabilities",
    "info_nce_loss",
    "recall_at_k",
    "class_prototypes",
    "atomic_save",
    "amp_policy",
    "count_parameters",
    "combine_shard_gradients",
    "scaled_lr",
    "shard_indices",
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
