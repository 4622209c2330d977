"""The training loop: ``fit`` a classifier epoch by epoch, ``evaluate`` it on a split.

One loop for a laptop and for a GPU server: automatic device, mixed precision, optional
``torch.compile``, fused AdamW, gradient clipping, per-step learning-rate schedules, early
stopping, atomic checkpoints with exact resume, and data parallelism when the script was
launched by ``torchrun`` (each process trains on its shard of every global batch).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.runtime import in_ci, pick_device, seed_everything
from mmcourse.train import distributed
from mmcourse.train.amp import Precision
from mmcourse.train.checkpoint import load_checkpoint, save_checkpoint
from mmcourse.train.data import LABEL, PAIR_INPUT, PairBatch, Split
from mmcourse.train.history import History
from mmcourse.train.metrics import f1_per_class
from mmcourse.train.schedule import make_schedule

Inputs = str | Sequence[str] | None


def model_inputs(batch: dict, inputs: Inputs, channels_last: bool = False) -> tuple:
    """The positional arguments for the model: ``batch[inputs]``, several keys, or the batch."""
    if isinstance(batch, PairBatch):
        x = batch[PAIR_INPUT]
        args = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    elif inputs is None:
        return (batch,)
    else:
        keys = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(
                f"inputs={inputs!r}: expected key(s) {missing} in the batch, which has keys "
                f"{sorted(batch)}; pass inputs=<key>, a tuple of keys, or None for the whole batch"
            )
        args = tuple(batch[k] for k in keys)
    if channels_last:  # (B, C, H, W) stored as (B, H, W, C) in memory: faster convolutions
        args = tuple(
            a.contiguous(memory_format=torch.channels_last)
            if isinstance(a, torch.Tensor) and a.ndim == 4 and a.is_floating_point()
            else a
            for a in args
        )
    return args


def logits_of(out: Any) -> torch.Tensor | None:
    """The class scores in a model's output: the tensor, ``out["logits"]``, or ``out[0]``."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out.get("logits")
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _progress_enabled(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    quiet = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return not (in_ci() or quiet)


@dataclass
class EvalResult:
    """Scores of a model on one split; ``confusion[i, j]`` counts true i predicted as j."""

    loss: float
    accuracy: float
    macro_f1: float
    confusion: torch.Tensor  # (C, C) int64
    n: int

    def plot(self, classes: Sequence[str] | None = None, **kwargs: Any) -> Any:
        from mmcourse.viz.training import plot_confusion

        return plot_confusion(self.confusion, classes, **kwargs)

    def __repr__(self) -> str:
        return (
            f"EvalResult(n={self.n}, loss={self.loss:.4f}, accuracy={self.accuracy:.4f}, "
            f"macro_f1={self.macro_f1:.4f})"
        )


class _Tally:
    """Running sums of loss and a confusion matrix, kept on the device (no sync per step)."""

    def __init__(self, device: torch.device, reduce: bool = True) -> None:
        self.device, self.reduce = device, reduce
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.n = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, out: Any, y: torch.Tensor) -> None:
        b = len(y)
        self.loss += loss.detach().double() * b
        self.n += b
        logits = logits_of(out)
        if logits is None or logits.ndim != 2 or y.ndim != 1 or y.is_floating_point():
            return
        c = logits.shape[1]
        pred = logits.detach().argmax(dim=1)
        counts = torch.bincount(y.long() * c + pred, minlength=c * c).reshape(c, c)  # (C, C)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def result(self) -> EvalResult:
        """The totals; with ``reduce`` over every process (under DDP: call on all ranks)."""
        sum_ = distributed.all_reduce_sum if self.reduce else (lambda t: t)
        max_ = distributed.all_reduce_max if self.reduce else (lambda t: t)
        sum_(self.loss)
        sum_(self.n)
        c = self.confusion.shape[0] if self.confusion is not None else 0
        width = int(max_(torch.tensor([c], device=self.device)).item())
        n = int(self.n.item())
        loss = self.loss.item() / max(n, 1)
        if width == 0:
            return EvalResult(loss, math.nan, math.nan, torch.zeros(0, 0, dtype=torch.long), n)
        cm = torch.zeros(width, width, dtype=torch.long, device=self.device)
        if self.confusion is not None:
            cm[:c, :c] += self.confusion
        cm = sum_(cm).cpu()
        acc = (cm.diag().sum() / cm.sum().clamp_min(1)).item()
        present = (cm.sum(0) + cm.sum(1)) > 0
        f1 = f1_per_class(cm)[present].mean().item() if present.any() else math.nan
        return EvalResult(loss, acc, f1, cm, n)


def _run_eval(
    forward: Callable,
    model: nn.Module,
    split: Split,
    inputs: Inputs,
    loss_fn: Callable,
    precision: Precision,
    channels_last: bool = False,
    reduce: bool = True,
) -> EvalResult:
    was_training = model.training
    model.eval()
    tally = _Tally(split.device, reduce)
    with torch.inference_mode(), precision.autocast():
        for batch in split.epoch(0, shuffle=False, pad=False):
            y = batch[LABEL]
            out = forward(*model_inputs(batch, inputs, channels_last))
            tally.add(loss_fn(out, y), out, y)
    model.train(was_training)
    return tally.result()


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    inputs: Inputs = "image",
    loss_fn: Callable = F.cross_entropy,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: str | bool | torch.dtype | None = None,
) -> EvalResult:
    """Loss, accuracy, macro F1 and confusion matrix of ``model`` on ``data``.

    ``data`` takes the same forms as in :func:`fit`; the model stays on its own device
    unless ``device`` is given. Under DDP each process scores the whole of ``data`` on its
    own (no collective calls, so rank 0 alone may call it).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module, got {type(model).__name__}")
    if device is not None:
        device = pick_device(device)
    else:
        device = next((p.device for p in model.parameters()), None) or pick_device(None)
    model.to(device)
    split = Split(data, batch_size=batch_size, device=device, name="data")
    return _run_eval(model, model, split, inputs, loss_fn, Precision.create(amp, device),
                     reduce=False)


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, device: torch.device, fused: bool | None
) -> torch.optim.Optimizer:
    """AdamW; its fused kernel (one launch for all parameters) on CUDA unless ``fused=False``."""
    if fused is None:
        fused = device.type == "cuda"
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, **kwargs)


@dataclass
class _Step:
    """One optimizer step: forward under autocast, (scaled) backward, clip, step, schedule."""

    forward: Callable
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    precision: Precision
    scheduler: Any
    params: list[nn.Parameter]
    grad_clip: float | None

    def __call__(self, args: tuple, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        with self.precision.autocast():
            out = self.forward(*args)
            loss = self.loss_fn(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.precision.step(self.optimizer, self.params, self.grad_clip)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss, out


def _check_args(model: Any, epochs: Any, lr: Any, patience: Any, val: Any, grad_clip: Any,
                warmup: Any, checkpoint: Any, resume: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module, got {type(model).__name__}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if patience is not None:
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        if val is None:
            raise ValueError("patience (early stopping) needs validation data: pass val=...")
    if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
        raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
    if not (isinstance(warmup, (int, float)) and 0 <= warmup <= max(epochs, 0)):
        raise ValueError(f"warmup must be a number of epochs in [0, epochs], got {warmup!r}")
    if resume is True and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to resume from)")


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    patience: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    loss_fn: Callable = F.cross_entropy,
    inputs: Inputs = "image",
    progress: bool | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    amp: str | bool | torch.dtype | None = "auto",
    compile: bool = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    schedule: str | Callable[[int], float] | None = None,
    warmup: float = 0.0,
    fused: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
) -> History:
    """Train ``model`` with AdamW on ``train``; score it on ``val`` after every epoch.

    Data: ``train``/``val`` are a dict of tensors (a whole split; moved to the device once and
    batched by a shuffled index), a Dataset of dict items (batched with
    ``mmcourse.data.collate``), a DataLoader yielding dicts, or a pair ``(x, y)``. Targets
    are ``batch["label"]``; ``inputs`` names the batch key(s) given to the model, or None for
    the whole batch dict. ``batch_size`` is the global batch (split across DDP processes; a
    DataLoader is used as given, so under DDP give it a ``DistributedSampler``).

    Speed: ``amp`` "auto" (bf16, or fp16 with a grad scaler, on CUDA; off on the CPU), "bf16",
    "fp16" or None; ``compile`` wraps the model in ``torch.compile``; ``channels_last`` stores
    4-D inputs and conv weights as NHWC; ``fused`` AdamW (default: on CUDA).

    Optimization: ``grad_clip`` (max global gradient norm), ``schedule`` ("cosine",
    "onecycle", "constant" or a function step -> factor) stepped per batch after ``warmup``
    epochs of linear warm-up, ``patience`` (early stopping on the validation loss; the best
    weights are restored).

    Checkpoints: ``checkpoint=PATH`` is written atomically after each epoch (by rank 0);
    ``resume=True`` continues from it when it exists (exactly: optimizer, scaler, scheduler,
    RNG states, epoch); ``resume=PATH`` continues from another file.
    """
    _check_args(model, epochs, lr, patience, val, grad_clip, warmup, checkpoint, resume)
    env = distributed.dist_env()
    seed_everything(seed)
    device = distributed.process_device(env, pick_device(device))
    distributed.init(env, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    rank, world = env.rank, env.world_size
    train_split = Split(train, batch_size=batch_size, device=device, name="train",
                        rank=rank, world_size=world, seed=seed)
    val_split = None
    if val is not None:
        val_split = Split(val, batch_size=max(batch_size, 256), device=device, name="val",
                          rank=rank, world_size=world)
    if optimizer is None:
        optimizer = make_optimizer(model, lr, weight_decay, device, fused)
    precision = Precision.create(amp, device)
    steps_per_epoch = train_split.num_batches()  # the same on every rank
    scheduler = make_schedule(schedule, optimizer, total_steps=max(epochs * steps_per_epoch, 1),
                              warmup_steps=round(warmup * steps_per_epoch))
    wrapped = distributed.wrap(model, device)
    train_forward = torch.compile(wrapped) if compile else wrapped
    eval_forward = train_forward if wrapped is model else (
        torch.compile(model) if compile else model)

    history, start = History(), 0
    best = {"loss": math.inf, "waited": 0, "state": None}
    source = checkpoint if resume is True else (resume or None)
    if source is not None and (resume is not True or Path(source).is_file()):
        state = load_checkpoint(source, model, optimizer, scaler=precision.scaler,
                                scheduler=scheduler, restore_rng=True, map_location=device)
        start, history = state["epoch"], History.from_dict(state["history"])
        best.update(state["best"])

    from tqdm.auto import tqdm

    show = _progress_enabled(progress) and env.is_main
    bar = tqdm(range(start, epochs), desc="fit", unit="epoch", disable=not show,
               initial=start, total=epochs)
    params = [p for p in model.parameters() if p.requires_grad]
    step = _Step(train_forward, loss_fn, optimizer, precision, scheduler, params, grad_clip)
    for epoch in bar:
        if history.stopped_early:
            break
        t0 = time.perf_counter()
        model.train()
        history.lr.append(optimizer.param_groups[0]["lr"])
        tally = _Tally(device)
        for batch in train_split.epoch(epoch, shuffle=True):
            y = batch[LABEL]
            loss, out = step(model_inputs(batch, inputs, channels_last), y)
            tally.add(loss, out, y)
        scores = tally.result()
        history.train_loss.append(scores.loss)
        history.train_accuracy.append(scores.accuracy)
        postfix = {"loss": f"{scores.loss:.4f}"}
        if val_split is not None:
            v = _run_eval(eval_forward, model, val_split, inputs, loss_fn, precision,
                          channels_last)
            history.val_loss.append(v.loss)
            history.val_accuracy.append(v.accuracy)
            postfix.update(val_loss=f"{v.loss:.4f}", val_acc=f"{v.accuracy:.3f}")
            if v.loss < best["loss"]:
                best.update(loss=v.loss, waited=0)
                history.best_epoch = epoch
                if patience is not None:
                    best["state"] = copy.deepcopy(model.state_dict())
            else:
                best["waited"] += 1
            if patience is not None and best["waited"] >= patience:
                history.stopped_early = True
        history.epoch_time.append(time.perf_counter() - t0)
        bar.set_postfix(postfix)
        if checkpoint is not None:
            if env.is_main:
                save_checkpoint(checkpoint, model, optimizer, epoch=epoch + 1,
                                scaler=precision.scaler, scheduler=scheduler,
                                history=history.to_dict(), best=best)
            distributed.barrier()
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return history
