"""The training loop: ``fit`` a classifier epoch by epoch, ``evaluate`` it on a split.

One loop for a laptop and for a GPU server: automatic device, mixed precision, optional
``torch.compile``, fused AdamW, gradient clipping, per-step learning-rate schedules, gradient
accumulation, early stopping, atomic checkpoints with exact resume, and data parallelism when
the script was launched by ``torchrun`` (each process trains on its shard of every global
batch; replicated with DDP or sharded with FSDP).

A step reads no tensor on the host, so on a GPU the host never waits for the device: each
batch is cut from the split on the device, the running loss and confusion matrix stay there
until the end of the epoch, and input values are checked once per split, before the first
step (see :mod:`mmcourse.nn.validate`).
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

from mmcourse.nn.validate import trusted_inputs
from mmcourse.runtime import in_ci, pick_device, seed_everything
from mmcourse.train import distributed
from mmcourse.train.amp import Precision
from mmcourse.train.checkpoint import load_checkpoint, save_checkpoint
from mmcourse.train.data import LABEL, PAIR_INPUT, PairBatch, Split
from mmcourse.train.history import History
from mmcourse.train.metrics import confusion_counts, scores
from mmcourse.train.schedule import continue_at, make_schedule
from mmcourse.train.sharded import latest_folder, load_sharded, save_sharded

Inputs = str | Sequence[str] | None
Compile = bool | str | Callable


def _nhwc(a: Any) -> Any:
    """A float image batch (B, C, H, W) stored as (B, H, W, C) in memory: faster convolutions."""
    if isinstance(a, torch.Tensor) and a.ndim == 4 and a.is_floating_point():
        return a.contiguous(memory_format=torch.channels_last)
    return a


def model_inputs(batch: dict, inputs: Inputs, channels_last: bool = False) -> tuple:
    """The positional arguments for the model: ``batch[inputs]``, several keys, or the batch."""
    if isinstance(batch, PairBatch):
        x = batch[PAIR_INPUT]
        args = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    elif inputs is None:  # the whole batch, its image tensors in the layout asked for
        return ({k: _nhwc(v) for k, v in batch.items()} if channels_last else batch,)
    else:
        keys = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(
                f"inputs={inputs!r}: expected key(s) {missing} in the batch, which has keys "
                f"{sorted(batch)}; pass inputs=<key>, a tuple of keys, or None for the whole batch"
            )
        args = tuple(batch[k] for k in keys)
    return tuple(_nhwc(a) for a in args) if channels_last else args


def resolve_inputs(model: nn.Module, inputs: Inputs) -> Inputs:
    """None (the whole batch) for a model that takes the batch dict, else ``inputs``.

    A model says so with ``takes_batch = True`` (``MultimodalClassifier`` does): it gets the
    whole batch whatever the default ``inputs="image"``; other keys are an error.
    """
    if not getattr(model, "takes_batch", False) or inputs is None:
        return inputs
    if inputs != "image":
        raise ValueError(
            f"{type(model).__name__} takes the whole batch dict: pass inputs=None (or leave "
            f"the default), not inputs={inputs!r}"
        )
    return None


def input_check(model: nn.Module, inputs: Inputs) -> Callable[[dict], Any] | None:
    """The model's ``check_input`` applied to a batch, if the model has one."""
    check = getattr(model, "check_input", None)
    if not callable(check):
        return None
    return lambda batch: check(*model_inputs(batch, inputs))


class Objective(nn.Module):
    """The model and its loss as one module: ``objective(*args, y=y) -> (loss, out)``.

    One module, so that DDP sees every parameter that reaches the loss (the per-modality heads
    a multi-task loss reads, a loss's own parameters such as InfoNCE's temperature) and
    ``torch.compile`` traces the loss with the model. A loss that is an ``nn.Module`` is a
    submodule: its parameters are trained and checkpointed with the model's.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, *args: Any, y: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out = self.model(*args)
        return self.loss_fn(out, y), out


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
    """Running sums of loss and a confusion matrix, kept on the device (no host read per step)."""

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
        counts = confusion_counts(logits.detach().argmax(dim=1), y, logits.shape[1])  # (C, C)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def result(self) -> EvalResult:
        """The totals; with ``reduce`` over every process (under DDP: call on all ranks)."""
        reduce = self.reduce and distributed.active()
        sum_ = distributed.all_reduce_sum if reduce else (lambda t: t)
        sum_(self.loss)
        sum_(self.n)
        c = self.confusion.shape[0] if self.confusion is not None else 0
        width = c
        if reduce:  # a process whose shard was empty has no confusion matrix
            width = int(distributed.all_reduce_max(torch.tensor([c], device=self.device)).item())
        n = int(self.n.item())
        loss = self.loss.item() / max(n, 1)
        if width == 0:
            return EvalResult(loss, math.nan, math.nan, torch.zeros(0, 0, dtype=torch.long), n)
        cm = torch.zeros(width, width, dtype=torch.long, device=self.device)
        if self.confusion is not None:
            cm[:c, :c] += self.confusion
        cm = sum_(cm).cpu()
        acc, f1 = scores(cm)
        return EvalResult(loss, acc, f1, cm, n)


def _run_eval(
    objective: Callable,
    module: nn.Module,
    split: Split,
    inputs: Inputs,
    precision: Precision,
    channels_last: bool = False,
    reduce: bool = True,
) -> EvalResult:
    """Score ``objective`` (maybe compiled) on ``split``, with ``module`` in eval mode; every
    submodule is then put back in the mode it had (a model passed in eval mode stays so)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    tally = _Tally(split.device, reduce)
    with torch.inference_mode(), precision.autocast():
        for batch in split.epoch(0, shuffle=False, pad=False):  # values checked in the split
            y = batch[LABEL]
            with trusted_inputs():
                loss, out = objective(*model_inputs(batch, inputs, channels_last), y=y)
            tally.add(loss, out, y)
    for m, training in modes:
        m.training = training
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

    ``data`` and ``inputs`` take the same forms as in :func:`fit`; the model stays on its own
    device unless ``device`` is given. Under DDP each process scores the whole of ``data`` on
    its own (no collective calls, so rank 0 alone may call it).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module, got {type(model).__name__}")
    if device is not None:
        device = pick_device(device)
    else:
        device = next((p.device for p in model.parameters()), None) or pick_device(None)
    inputs = resolve_inputs(model, inputs)
    objective = Objective(model, loss_fn).to(device)
    split = Split(data, batch_size=batch_size, device=device, name="data",
                  check=input_check(model, inputs))
    return _run_eval(objective, objective, split, inputs, Precision.create(amp, device),
                     reduce=False)


def make_optimizer(
    module: nn.Module, lr: float, weight_decay: float, device: torch.device, fused: bool | None
) -> torch.optim.Optimizer:
    """AdamW over ``module``'s parameters; its fused kernel (one launch for all parameters) on
    CUDA unless ``fused=False`` (``fused=True`` also works on the CPU)."""
    if fused is None:
        fused = device.type == "cuda"
    kwargs = {"fused": True} if fused else {}
    return torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay, **kwargs)


def _check_optimizer_covers(optimizer: torch.optim.Optimizer, loss_fn: Callable) -> None:
    if not isinstance(loss_fn, nn.Module):
        return
    covered = {id(p) for group in optimizer.param_groups for p in group["params"]}
    left = [n for n, p in loss_fn.named_parameters() if p.requires_grad and id(p) not in covered]
    if left:
        raise ValueError(
            f"loss_fn has trainable parameters {left} that the optimizer given does not update: "
            "add them (e.g. AdamW([*model.parameters(), *loss_fn.parameters()])) or freeze them "
            "with requires_grad_(False)"
        )


def _load_loss_state(loss_fn: Callable, state: dict, source: Any) -> None:
    if not isinstance(loss_fn, nn.Module):
        return
    saved = state.get("loss")
    if saved is None:
        if loss_fn.state_dict():
            raise ValueError(
                f"checkpoint {source} holds no state for the parameters of loss_fn "
                f"({type(loss_fn).__name__}): it was written by a run with another loss"
            )
        return
    loss_fn.load_state_dict(saved)


def _compiled(module: nn.Module, compile: Compile) -> Callable:
    """``module`` under ``torch.compile``, tracing LSTM and GRU layers into the graph.

    Dynamo breaks the graph at every recurrent layer unless ``allow_rnn`` is on; it is on
    while this function's calls run (and trace), and off for the rest of the program.
    """
    if compile is False:
        return module
    compiled = torch.compile(module, backend="inductor" if compile is True else compile)

    def call(*args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(allow_rnn=True):
            return compiled(*args, **kwargs)

    return call


def micro_batches(batch: dict, n: int) -> list[dict]:
    """``batch`` cut into ``n`` micro-batches along the first axis, sizes as equal as they can
    be (they differ by at most one; an empty one is left out). No tensor is read: the sizes
    come from the shapes."""
    if n == 1:
        return [batch]
    b = len(batch[LABEL])
    sizes = [(b + i) // n for i in range(n)]  # sum(sizes) == b
    sizes = [k for k in sizes if k]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    kind = type(batch)
    return [kind((key, value[a:a + k]) for key, value in batch.items())
            for a, k in zip(starts, sizes, strict=True)]


@dataclass
class _Step:
    """One optimizer step over a batch cut into micro-batches: for each, forward and loss
    under autocast and a (scaled) backward; then clip, step, schedule.

    A micro-batch's loss is weighted by its share of the batch, so that the gradients added up
    over the micro-batches are those of the batch's mean loss (the micro-batches may differ in
    size). Under data parallelism the gradients are averaged over the processes after the last
    micro-batch only.
    """

    objective: Callable
    optimizer: torch.optim.Optimizer
    precision: Precision
    scheduler: Any
    params: list[nn.Parameter]
    grad_clip: float | None
    wrapped: nn.Module | None = None

    def __call__(self, micro: list[tuple[tuple, torch.Tensor]]) -> list[tuple[torch.Tensor, Any]]:
        self.optimizer.zero_grad(set_to_none=True)
        n = sum(len(y) for _, y in micro)
        results = []
        for i, (args, y) in enumerate(micro):
            last = i == len(micro) - 1
            # the split's values were checked: trusted in the forward and in the backward
            # (where checkpointed layers run their forward again)
            with distributed.gradient_sync(self.wrapped, sync=last), trusted_inputs():
                with self.precision.autocast():
                    loss, out = self.objective(*args, y=y)
                self.precision.backward(loss if len(micro) == 1 else loss * (len(y) / n))
            results.append((loss, out))
        self.precision.step(self.optimizer, self.params, self.grad_clip)
        if self.scheduler is not None:
            self.scheduler.step()
        return results


def _check_args(model: Any, epochs: Any, lr: Any, patience: Any, val: Any, grad_clip: Any,
                warmup: Any, checkpoint: Any, resume: Any, compile: Any, accumulate: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module, got {type(model).__name__}")
    if not (isinstance(compile, (bool, str)) or callable(compile)):
        raise TypeError(
            "compile must be True/False, a torch.compile backend name (e.g. 'aot_eager') or a "
            f"backend function, got {compile!r}"
        )
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
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"accumulate must be a positive int (micro-batches per step), got {accumulate!r}")


def _save_sharded(path: Any, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                  epoch: int, precision: Precision, scheduler: Any, history: History,
                  best: dict) -> None:
    """The sharded checkpoint of ``fit``: the best weights kept for early stopping, sharded
    like the model, go with the tensors; the rest of ``best`` with each process's state."""
    tensors = {}
    if best.get("state") is not None:
        tensors["best_model"] = best["state"]
    if best.get("loss_state"):
        tensors["best_loss"] = best["loss_state"]
    small = {k: v for k, v in best.items() if k not in ("state", "loss_state")}
    save_sharded(path, model, optimizer, loss_fn=loss_fn, epoch=epoch, scaler=precision.scaler,
                 scheduler=scheduler, tensors=tensors, history=history.to_dict(), best=small)


def _resume(source: Any, sharded: bool, model: nn.Module, optimizer: torch.optim.Optimizer,
            loss_fn: Callable, precision: Precision, device: torch.device) -> dict:
    """Load a checkpoint of ``fit`` (a file, or a sharded folder) into the run's objects."""
    if not sharded:
        state = load_checkpoint(source, model, optimizer, scaler=precision.scaler,
                                restore_rng=True, map_location=device)
        _load_loss_state(loss_fn, state, source)
        return state
    placeholders = {"best_model": copy.deepcopy(model.state_dict())}
    if isinstance(loss_fn, nn.Module) and loss_fn.state_dict():
        placeholders["best_loss"] = copy.deepcopy(loss_fn.state_dict())
    state = load_sharded(source, model, optimizer, loss_fn=loss_fn, scaler=precision.scaler,
                         tensors=placeholders, restore_rng=True)
    best = dict(state["best"])
    if "best_model" in state["tensors"]:
        best["state"] = placeholders["best_model"]
    if "best_loss" in state["tensors"]:
        best["loss_state"] = placeholders["best_loss"]
    return {**state, "best": best}


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
    compile: Compile = False,
    channels_last: bool = False,
    grad_clip: float | None = None,
    schedule: str | Callable[[int], float] | None = None,
    warmup: float = 0.0,
    fused: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    find_unused_parameters: bool | None = None,
    strategy: str | None = None,
    accumulate: int = 1,
) -> History:
    """Train ``model`` with AdamW on ``train``; score it on ``val`` after every epoch.

    Data: ``train``/``val`` are a dict of tensors (a whole split; moved to the device once and
    batched by a shuffled index), a Dataset of dict items (batched with
    ``mmcourse.data.collate``), a DataLoader yielding dicts, or a pair ``(x, y)``. Targets
    are ``batch["label"]``; ``inputs`` names the batch key(s) given to the model, or None for
    the whole batch dict (a model with ``takes_batch = True``, such as ``MultimodalClassifier``,
    always gets the whole batch). ``batch_size`` is the global batch (split across DDP
    processes; a DataLoader is used as given, so under DDP give it a ``DistributedSampler``).
    A model with a ``check_input`` method has the values of its inputs checked once per split
    (a Dataset or DataLoader: batch by batch, on the CPU), so that no step reads a tensor.

    Loss: ``loss_fn(out, y)``. A loss that is an ``nn.Module`` with parameters (InfoNCE's
    learnable temperature) is trained with the model and saved in checkpoints; an
    ``optimizer`` given by the caller must hold those parameters too.

    Speed: ``amp`` "auto" (bf16, or fp16 with a grad scaler, on CUDA; off on the CPU), "bf16",
    "fp16" or None; ``compile=True`` wraps model and loss in ``torch.compile`` (inductor), a
    string or function picks another backend (``"aot_eager"`` traces the graphs, forward and
    backward, without generating code: quick to compile, for checks); LSTM and GRU layers
    are traced into the graph (Dynamo's ``allow_rnn``, on for fit's compiled calls only);
    ``channels_last`` stores 4-D inputs and conv weights as NHWC; ``fused`` AdamW (default:
    on CUDA; with the grad scaler of fp16, only the fused kernel avoids a sync per step).

    Optimization: ``grad_clip`` (max global gradient norm), ``schedule`` ("cosine",
    "onecycle", "constant" or a function step -> factor) stepped per batch after ``warmup``
    epochs of linear warm-up, ``patience`` (early stopping on the validation loss; the best
    model weights are restored).

    Checkpoints: ``checkpoint=PATH`` is written atomically after each epoch (by rank 0);
    ``resume=True`` continues from it when it exists (weights, optimizer, grad scaler, loss
    parameters, RNG states, epoch, history); ``resume=PATH`` continues from another file.
    From the step it reached, the resumed run's learning rate follows this call's ``lr``,
    ``schedule``, ``warmup`` and ``epochs``: with the same arguments it continues exactly as
    if never stopped; with more epochs a "cosine" or "onecycle" schedule goes on at the rates
    of the longer run (rather than staying at the end of the shorter one).

    Gradient accumulation: ``accumulate=A`` computes each batch (each process's share of it)
    as A micro-batches, one forward and backward each, and takes one optimizer step: the
    memory of activations of a batch A times smaller, the step of the whole batch (for a loss
    that is a mean over samples; BatchNorm statistics and modality dropout are drawn per
    micro-batch). Micro-batches differ in size by at most one, and each loss is weighted by
    its share of the batch.

    Data parallel (``torchrun``): ``strategy`` "ddp" (the default: a replica per process,
    gradients all-reduced) or "fsdp" (FSDP2, ZeRO-3: parameters, gradients and optimizer state
    sharded over the processes; the model stays sharded after ``fit``; the optimizer must be
    fit's own). ``find_unused_parameters`` for DDP; None: on when the model says some
    parameters may take no part in a step (``model.may_skip_parameters``, true for a
    ``MultimodalClassifier`` with modality dropout, missing modalities or per-modality heads).
    With "fsdp", ``checkpoint=PATH`` is a folder of sharded checkpoints written by every
    process (:mod:`mmcourse.train.sharded`; in a single process too), which a run with any
    number of processes resumes, and :func:`~mmcourse.train.sharded.load_sharded` reads into
    a plain model.
    """
    _check_args(model, epochs, lr, patience, val, grad_clip, warmup, checkpoint, resume, compile,
                accumulate)
    strategy = distributed.check_strategy(strategy)
    sharded = strategy == "fsdp"
    env = distributed.dist_env()
    seed_everything(seed)
    device = distributed.process_device(env, pick_device(device))
    distributed.init(env, device)
    if sharded and optimizer is not None and distributed.active():
        raise ValueError(
            "strategy='fsdp' replaces the model's parameters by their shards, so an optimizer "
            "built before fit would update nothing: leave optimizer=None (fit makes AdamW from "
            "lr and weight_decay)"
        )
    inputs = resolve_inputs(model, inputs)
    objective = Objective(model, loss_fn).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    rank, world = env.rank, env.world_size
    check = input_check(model, inputs)
    train_split = Split(train, batch_size=batch_size, device=device, name="train",
                        rank=rank, world_size=world, seed=seed, check=check)
    val_split = None
    if val is not None:
        val_split = Split(val, batch_size=max(batch_size, 256), device=device, name="val",
                          rank=rank, world_size=world, check=check)
    if find_unused_parameters is None:
        find_unused_parameters = bool(getattr(model, "may_skip_parameters", False))
    wrapped = distributed.wrap(objective, device, find_unused_parameters, strategy,
                               units=distributed.shard_units(model))
    own_optimizer = optimizer is None
    if own_optimizer:  # after sharding: over the shards
        optimizer = make_optimizer(objective, lr, weight_decay, device, fused)
    else:
        _check_optimizer_covers(optimizer, loss_fn)
    precision = Precision.create(amp, device)
    steps_per_epoch = train_split.num_batches()  # the same on every rank
    scheduler = make_schedule(schedule, optimizer, total_steps=max(epochs * steps_per_epoch, 1),
                              warmup_steps=round(warmup * steps_per_epoch))
    train_step = _compiled(wrapped, compile)
    evaluate_step = train_step if wrapped is objective else _compiled(objective, compile)

    history, start = History(), 0
    best = {"loss": math.inf, "waited": 0, "state": None}
    source = checkpoint if resume is True else (resume or None)
    if source is not None:
        if sharded:
            found = resume is not True or latest_folder(source) is not None
        else:
            found = resume is not True or Path(source).is_file()
        if found:
            state = _resume(source, sharded, model, optimizer, loss_fn, precision, device)
            start, history = state["epoch"], History.from_dict(state["history"])
            best.update(state["best"])
            if scheduler is not None:  # this call's plan, from the step the run reached
                continue_at(scheduler, start * steps_per_epoch)
            elif own_optimizer:
                for group in optimizer.param_groups:
                    group["lr"] = lr

    from tqdm.auto import tqdm

    show = _progress_enabled(progress) and env.is_main
    bar = tqdm(range(start, epochs), desc="fit", unit="epoch", disable=not show,
               initial=start, total=epochs)
    params = [p for p in objective.parameters() if p.requires_grad]
    step = _Step(train_step, optimizer, precision, scheduler, params, grad_clip, wrapped)
    for epoch in bar:
        if history.stopped_early:
            break
        t0 = time.perf_counter()
        objective.train()
        history.lr.append(optimizer.param_groups[0]["lr"])
        tally = _Tally(device)
        for batch in train_split.epoch(epoch, shuffle=True):
            micro = [(model_inputs(b, inputs, channels_last), b[LABEL])
                     for b in micro_batches(batch, accumulate)]
            for (loss, out), (_, y) in zip(step(micro), micro, strict=True):
                tally.add(loss, out, y)
        result = tally.result()
        history.train_loss.append(result.loss)
        history.train_accuracy.append(result.accuracy)
        postfix = {"loss": f"{result.loss:.4f}"}
        if val_split is not None:
            v = _run_eval(evaluate_step, objective, val_split, inputs, precision,
                          channels_last)
            history.val_loss.append(v.loss)
            history.val_accuracy.append(v.accuracy)
            postfix.update(val_loss=f"{v.loss:.4f}", val_acc=f"{v.accuracy:.3f}")
            if v.loss < best["loss"]:
                best.update(loss=v.loss, waited=0)
                history.best_epoch = epoch
                if patience is not None:  # the model and the loss's own parameters
                    best["state"] = copy.deepcopy(model.state_dict())
                    if isinstance(loss_fn, nn.Module):
                        best["loss_state"] = copy.deepcopy(loss_fn.state_dict())
            else:
                best["waited"] += 1
            if patience is not None and best["waited"] >= patience:
                history.stopped_early = True
        history.epoch_time.append(time.perf_counter() - t0)
        bar.set_postfix(postfix)
        if checkpoint is not None:
            if sharded:  # every process writes its shards
                _save_sharded(checkpoint, model, optimizer, loss_fn, epoch + 1, precision,
                              scheduler, history, best)
            else:
                if env.is_main:
                    loss_state = loss_fn.state_dict() if isinstance(loss_fn, nn.Module) else None
                    save_checkpoint(checkpoint, model, optimizer, epoch=epoch + 1,
                                    scaler=precision.scaler, scheduler=scheduler,
                                    history=history.to_dict(), best=best, loss=loss_state)
                distributed.barrier()
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
        if best.get("loss_state") is not None:
            loss_fn.load_state_dict(best["loss_state"])
    return history
