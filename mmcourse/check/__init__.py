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
from mmcourse.check.contrastive import (
    knn_leave_one_out,
    lora_from_delta,
    recall_at_k,
    supervised_info_nce,
)
from mmcourse.check.conv import depthwise_separable_conv2d, max_pool2d_padded, receptive_field
from mmcourse.check.diffusion import composed_guidance, ddim_step_eta, q_sample_from
from mmcourse.check.fastpath import atomic_save, calibration_tally, scaled_sgd_step
from mmcourse.check.fusion import fit_late_weights, lowrank_factors, renormalized_gating
from mmcourse.check.generation import gnmt_score, min_p_filter, window_attention_step
from mmcourse.check.learning import (
    accumulation_step,
    batchnorm_backward,
    clip_grad_norm,
    debiased_ema,
)
from mmcourse.check.rnn import lstm_proj_step, mean_valid_steps, reverse_padded
from mmcourse.check.scaling import max_parameters, scaled_lr, shard_indices
from mmcourse.check.sound import a_law_compand, causal_conv_step, causal_footprint
from mmcourse.check.text import bigram_counts, char_ngrams, embedding_backward

# Every checker imported above: the functions of the topic modules (not the comparison machinery).
EXERCISES: tuple[str, ...] = tuple(
    sorted(
        name
        for name, obj in list(globals().items())
        if callable(obj)
        and getattr(obj, "__module__", "").startswith(f"{__name__}.")
        and obj.__module__ != f"{__name__}.comparison"
    )
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
