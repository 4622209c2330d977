"""The trainer: ``fit`` a model on a split, ``evaluate`` it, read its ``History``.

::

    from mmcourse.train import fit, evaluate
    history = fit(model, train, val, epochs=10, inputs="image", patience=3)
    result = evaluate(model, test, inputs="image")   # .accuracy, .macro_f1, .confusion, .loss

On a GPU the same call uses mixed precision; ``compile=True``, ``schedule="cosine"``,
``grad_clip=1.0``, ``accumulate=4`` (micro-batches per step) and ``checkpoint="run.pt",
resume=True`` are one argument each, and a script launched with ``torchrun
--nproc_per_node=N`` trains data-parallel without changes (``strategy="fsdp"``: sharded).
A ``MultimodalClassifier`` gets the whole batch dict; a loss with parameters (InfoNCE's
temperature) is trained and checkpointed with the model. The trainer reads no tensor on the
host during a step (no GPU sync of its own), and the package's encoders have their input
values checked once per split, before the first step, instead of at every step.
"""

from mmcourse.train.checkpoint import load_checkpoint, save_checkpoint
from mmcourse.train.history import History
from mmcourse.train.loop import EvalResult, evaluate, fit
from mmcourse.train.metrics import accuracy, confusion_matrix, macro_f1
from mmcourse.train.sharded import load_sharded, save_sharded

__all__ = [
    "EvalResult",
    "History",
    "accuracy",
    "confusion_matrix",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_sharded",
    "macro_f1",
    "save_checkpoint",
    "save_sharded",
]
