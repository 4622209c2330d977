"""The main job: the tri-modal digit classifier, trained against its unimodal baselines.

::

    from mmcourse.trimodal import build_model, run, load_model
    model = build_model("late")           # image + audio + text encoders, a fusion, a head
    report = run(fusion="late")           # each modality alone, then fused: one table
    print(report.table())
    model = load_model("mmcourse-run/model.pt")

The recipe, in two stages:

1. each modality alone: its encoder and a linear head, trained with label smoothing and
   early stopping on the validation loss (keeps the model's confidence honest);
2. fused: a fresh model whose encoders start from those trained in stage 1 (for late fusion,
   whose per-modality classifiers are the unimodal heads, the heads too), fine-tuned for a few
   epochs at a lower learning rate. With equal weights, late fusion starts as the product of
   the three unimodal experts, the right combination for views that are independent given
   the label.

The command ``mmcourse train`` runs :func:`main`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmcourse.data import CLASSES
from mmcourse.nn import AudioEncoder, AudioFrontEnd, ImageEncoder, TextEncoder
from mmcourse.nn.fusion import METHODS, make_fusion
from mmcourse.nn.multimodal import MultimodalClassifier
from mmcourse.runtime import pick_device
from mmcourse.train import evaluate, fit, load_checkpoint, save_checkpoint
from mmcourse.train.amp import resolve_amp

MODALITIES = ("image", "audio", "text")
DATASETS = {"digits": MODALITIES, "avmnist": ("image", "audio")}
DIM = 32  # width of every modality's feature vector
WIDTH = 64  # width of the fused features (fusions that project)
REPORT_FORMAT = "mmcourse-train-report-1"
# Batch keys of the audio features computed once per split (see cache_audio_features).
AUDIO_FEATURES = ("audio_feats", "audio_frames")


@dataclass(frozen=True)
class Recipe:
    """Optimization settings of the two stages (the defaults train all four models in about
    10 s on one CPU thread: `python scripts/bench_train.py` times them)."""

    epochs: int = 14  # each unimodal model (stage 1)
    lr: float = 3e-3
    fusion_epochs: int = 2  # the fused model (stage 2)
    fusion_lr: float = 1e-3
    batch_size: int = 64
    label_smoothing: float = 0.1
    patience: int = 4  # early stopping on the validation loss, best weights kept
    warm_start: bool = True  # stage 2 starts from the stage-1 encoders


# ---------------------------------------------------------------- the model


def build_model(
    fusion: str = "late",
    modalities: Sequence[str] = MODALITIES,
    *,
    vocab_size: int | None = None,
    dim: int = DIM,
    width: int = WIDTH,
    num_classes: int = 10,
    seed: int | None = 0,
) -> MultimodalClassifier:
    """Encoders for ``modalities``, the fusion ``fusion`` (one of ``METHODS``), a head.

    image: a 3-block CNN (``ImageEncoder``); audio: log-mel frames and a 2-D CNN
    (``AudioEncoder``, energies kept: no per-clip normalization); text: embeddings and an
    LSTM (``TextEncoder``). Each gives (B, dim); one modality with "concat" is a unimodal
    classifier. ``seed`` (None: leave the generator alone) makes the initial weights repeatable.
    """
    if fusion not in METHODS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {', '.join(METHODS)}")
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"expected distinct modalities from {MODALITIES}, got {modalities}")
    if "text" in modalities and vocab_size is None:
        from mmcourse.data.spoken_digits import VOCAB

        vocab_size = len(VOCAB)
    if seed is not None:
        torch.manual_seed(seed)
    make = {
        "image": lambda: ImageEncoder(dim, width=16),
        "audio": lambda: audio_encoder(dim),
        "text": lambda: TextEncoder(vocab_size, dim, backbone="lstm", embed_dim=32, hidden_dim=32),
    }
    encoders = {m: make[m]() for m in modalities}
    fuse = make_fusion(fusion, dict.fromkeys(modalities, dim), width=width, num_classes=num_classes)
    return MultimodalClassifier(encoders, fuse, num_classes)


def audio_front_end() -> AudioFrontEnd:
    """The audio encoders' front end: log-mel energies in dB, no per-clip normalization."""
    return AudioFrontEnd(normalize=False)


def audio_encoder(dim: int = DIM) -> AudioEncoder:
    """The audio encoder: :func:`audio_front_end` and a 4-block CNN whose first block halves
    the (mel, time) map with a stride-2 convolution; its weights are stored channels-last
    (NHWC), the layout in which oneDNN convolves fastest on a CPU."""
    encoder = AudioEncoder(dim, audio_front_end(), strided_stem=True)
    return encoder.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def warm_start(fused: MultimodalClassifier, experts: dict[str, MultimodalClassifier]) -> None:
    """Copy each trained unimodal encoder (and, for late fusion, its head) into ``fused``."""
    for m, expert in experts.items():
        fused.encoders[m].load_state_dict(expert.encoders[m].state_dict())
        heads = getattr(fused.fusion, "heads", None)
        if heads is not None and isinstance(expert.head, nn.Linear):
            heads[m].load_state_dict(expert.head.state_dict())


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> MultimodalClassifier:
    """The fused model saved by :func:`run`, rebuilt from its config, on ``device``, in eval mode."""
    state = load_checkpoint(path, map_location=device)
    if "config" not in state:
        raise ValueError(f"{path} holds no model config: it was not written by mmcourse train")
    model = build_model(**state["config"], seed=None).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


# ---------------------------------------------------------------- the data


def load_data(name: str, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Train, val and test splits: whole-split tensors on ``device`` (digits) or Datasets.

    The digits' splits keep only their tensors (not the raw texts and speaker names, which no
    model reads) and get the audio front end's features (:func:`cache_audio_features`).
    """
    if name == "digits":
        from mmcourse.data import SPLITS, load_split

        splits = {}
        for s in SPLITS:
            whole = load_split(s, seed=seed).tensors(device)
            splits[s] = {k: v for k, v in whole.items() if isinstance(v, torch.Tensor)}
        return cache_audio_features(splits, audio_front_end().to(device))
    if name == "avmnist":
        from mmcourse.data import SPLITS, load_avmnist

        return {s: load_avmnist(s, seed=seed) for s in SPLITS}
    raise ValueError(f"unknown data {name!r}; expected one of {', '.join(DATASETS)}")


def cache_audio_features(
    splits: dict[str, dict[str, torch.Tensor]], front_end: AudioFrontEnd, chunk: int = 512
) -> dict[str, dict[str, torch.Tensor]]:
    """Each split with its clips' features added under ``AUDIO_FEATURES`` (new dicts).

    The front end has no learned parameters; without SpecAugment it computes the same
    features in every epoch, so they are computed once per split (in eval mode, which also
    checks the lengths once) and replace the waveforms, which no model reads any more: the
    audio encoders read the features (see :func:`reading_cached_features`). With SpecAugment
    the splits come back unchanged.
    """
    if front_end.augments:
        return splits
    front_end = front_end.eval()
    out = {}
    with torch.no_grad():  # plain tensors (not inference tensors): batches may be views
        for name, split in splits.items():
            x, lengths = split["audio"], split["audio_len"]
            parts = [front_end(x[i : i + chunk], lengths[i : i + chunk])
                     for i in range(0, len(x), chunk)]
            rest = {k: v for k, v in split.items() if k not in ("audio", "audio_len")}
            out[name] = {**rest, AUDIO_FEATURES[0]: torch.cat([f for f, _ in parts]),  # (N, F, T)
                         AUDIO_FEATURES[1]: torch.cat([t for _, t in parts])}  # (N,)
    return out


@contextlib.contextmanager
def reading_cached_features(model: MultimodalClassifier, batch_keys: Sequence[str]) -> Iterator[None]:
    """Within the block, ``model``'s audio encoder reads ``AUDIO_FEATURES`` when the data has them.

    Outside it the model reads waveforms as usual, so the trained model works on any batch.
    """
    use = "audio" in model.inputs and all(k in batch_keys for k in AUDIO_FEATURES)
    saved = dict(model.inputs)
    if use:
        model.inputs["audio"] = AUDIO_FEATURES
    try:
        yield
    finally:
        model.inputs = saved


# ---------------------------------------------------------------- the run and its report


@dataclass
class Row:
    """One line of the results table: a model, its scores and its training cost."""

    model: str
    modalities: list[str]
    val_accuracy: float
    test_accuracy: float
    test_macro_f1: float
    epochs: int  # epochs run (early stopping may end a stage sooner)
    best_epoch: int | None
    parameters: int
    seconds: float  # wall-clock training time
    epoch_seconds: float | None = None  # median epoch after the first (warm-up, compilation)


@dataclass
class Report:
    """What ``mmcourse train`` prints and writes to ``report.json``."""

    data: str
    fusion: str
    device: str
    amp: str
    compile: bool
    seed: int
    recipe: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    threads: int = field(default_factory=torch.get_num_threads)
    torch: str = torch.__version__
    total_seconds: float = 0.0
    checkpoint: str | None = None
    format: str = REPORT_FORMAT
    # the trained models: one per modality and "fused" (not part of the JSON)
    models: dict[str, MultimodalClassifier] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the models, as JSON-ready values."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "models"}
        out["rows"] = [asdict(r) for r in self.rows]
        return out

    @property
    def fused(self) -> Row:
        return self.rows[-1]

    def table(self) -> str:
        """The results as a plain-text table."""
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        device = self.device + (f" ({threads})" if self.device == "cpu" else "")
        head = ("model", "params", "epochs", "val acc", "test acc", "time (s)")
        body = [
            (r.model, f"{r.parameters:,}", str(r.epochs), f"{100 * r.val_accuracy:.1f}%",
             f"{100 * r.test_accuracy:.1f}%", f"{r.seconds:.1f}")
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(line, widths, strict=True)))
                 for line in [head, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        title = (f"data {self.data}, fusion {self.fusion}, device {device}, amp {self.amp}, "
                 f"compile {'on' if self.compile else 'off'}, seed {self.seed}")
        return "\n".join([title, *lines, f"total {self.total_seconds:.1f} s"])


def check_settings(
    fusion: str, data: str, recipe: Recipe, device: str | torch.device | None,
    amp: str | None, seed: int,
) -> tuple[torch.device, str]:
    """Validate a run's options before any work; returns the device and the AMP dtype's name."""
    if fusion not in METHODS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {', '.join(METHODS)}")
    if data not in DATASETS:
        raise ValueError(f"unknown data {data!r}; expected one of {', '.join(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if recipe.epochs < 1 or recipe.fusion_epochs < 0:
        raise ValueError(f"expected epochs >= 1 and fusion epochs >= 0, got {recipe.epochs} "
                         f"and {recipe.fusion_epochs}")
    device = pick_device(device)
    dtype = resolve_amp(amp, device)
    return device, "off" if dtype is None else str(dtype).replace("torch.", "")


def _stage(
    name: str,
    model: MultimodalClassifier,
    splits: dict[str, Any],
    *,
    epochs: int,
    lr: float,
    recipe: Recipe,
    device: torch.device,
    amp: str | None,
    compile: bool,
    seed: int,
    progress: bool | None,
) -> Row:
    loss_fn = functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing)
    keys = splits["train"].keys() if isinstance(splits["train"], dict) else ()
    with reading_cached_features(model, keys):
        start = time.perf_counter()
        history = fit(model, splits["train"], splits["val"], epochs=epochs, lr=lr,
                      batch_size=recipe.batch_size, patience=recipe.patience, device=device,
                      seed=seed, loss_fn=loss_fn, inputs=None, progress=progress, amp=amp,
                      compile=compile, schedule="cosine")
        seconds = time.perf_counter() - start
        val = evaluate(model, splits["val"], inputs=None, amp=amp)
        test = evaluate(model, splits["test"], inputs=None, amp=amp)
    times = history.epoch_time[1:] or history.epoch_time  # one epoch: that one
    per_epoch = statistics.median(times) if times else None
    return Row(name, list(model.encoders), val.accuracy, test.accuracy, test.macro_f1,
               history.epochs, history.best_epoch, count_parameters(model), seconds, per_epoch)


def run(
    fusion: str = "late",
    *,
    data: str = "digits",
    recipe: Recipe | None = None,
    device: str | torch.device | None = None,
    amp: str | None = "auto",
    compile: bool = False,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool | None = False,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Train every modality alone, then the fused model; score each on val and test.

    ``out``: a folder that receives ``model.pt`` (the fused model: weights, optimizer-free,
    with the config :func:`load_model` needs) and ``report.json``. ``log`` gets one line per
    finished model.
    """
    start = time.perf_counter()
    recipe = recipe or Recipe()
    device, amp_name = check_settings(fusion, data, recipe, device, amp, seed)
    splits = load_data(data, device)  # the course's data (seed 0); ``seed`` is the model's
    modalities = DATASETS[data]
    vocab_size = None
    if "text" in modalities:
        from mmcourse.data.spoken_digits import VOCAB

        vocab_size = len(VOCAB)
    config = {"fusion": fusion, "modalities": list(modalities), "vocab_size": vocab_size,
              "dim": DIM, "width": WIDTH}
    report = Report(data, fusion, str(device), amp_name, compile, seed, asdict(recipe))
    common = {"recipe": recipe, "device": device, "amp": amp, "compile": compile,
              "seed": seed, "progress": progress}

    experts = {}
    for m in modalities:
        experts[m] = build_model("concat", [m], vocab_size=vocab_size, seed=seed)
        row = _stage(m, experts[m], splits, epochs=recipe.epochs, lr=recipe.lr, **common)
        report.rows.append(row)
        report.models[m] = experts[m]
        if log:
            log(_line(row))
    model = build_model(**config, seed=seed)
    if recipe.warm_start:
        warm_start(model, experts)
    # fusion_epochs=0 scores the warm-started model as it is (late: the product of experts)
    row = _stage(f"fused ({fusion})", model, splits, epochs=recipe.fusion_epochs,
                 lr=recipe.fusion_lr, **common)
    report.rows.append(row)
    report.models["fused"] = model
    if log:
        log(_line(row))
    report.total_seconds = time.perf_counter() - start
    if out is not None:
        out = Path(out)
        path = save_checkpoint(out / "model.pt", model, epoch=row.epochs, config=config,
                               classes=list(CLASSES))
        report.checkpoint = str(path)
        _write_json(report.to_dict(), out / "report.json")
    return report


def _line(row: Row) -> str:
    return (f"{row.model}: val {100 * row.val_accuracy:.1f}%, test {100 * row.test_accuracy:.1f}%, "
            f"{row.epochs} epochs, {row.seconds:.1f} s")


def _write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as JSON atomically (temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def main(
    fusion: str = "late",
    *,
    data: str = "digits",
    epochs: int | None = None,
    fusion_epochs: int | None = None,
    device: str | None = None,
    amp: str = "auto",
    compile: bool = False,
    seed: int = 0,
    out: str = "mmcourse-run",
    as_json: bool = False,
    warm: bool = True,
    threads: int | None = None,
) -> int:
    """What ``mmcourse train`` runs: the table (or the JSON report) on stdout; exit status.

    ``threads``: CPU threads for torch. By default 1 unless ``OMP_NUM_THREADS`` says otherwise:
    models this small gain little from more threads, and lose many times over when the
    cores are shared with other work (threads then wait for each other at every operation).
    """
    from mmcourse.data import DataFileError
    from mmcourse.data.download import OfflineError

    if threads is not None and threads < 1:
        print(f"error: threads must be a positive int, got {threads}", file=sys.stderr)
        return 2
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)

    changes: dict[str, Any] = {"warm_start": warm}
    if epochs is not None:
        changes["epochs"] = epochs
    if fusion_epochs is not None:
        changes["fusion_epochs"] = fusion_epochs
    recipe = Recipe(**changes)
    log = None if as_json else functools.partial(print, file=sys.stderr, flush=True)
    try:
        check_settings(fusion, data, recipe, device, amp, seed)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        report = run(fusion, data=data, recipe=recipe, device=device, amp=amp,
                     compile=compile, seed=seed, out=out, log=log,
                     progress=False if as_json else None)
    except DataFileError as err:  # the embedded data is damaged: its message says what to do
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OfflineError, FileNotFoundError) as err:
        print(f"error: {err}\nThe embedded course data needs no download: "
              "run `mmcourse train --data digits`.", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
        print(f"checkpoint {report.checkpoint}; report {Path(out) / 'report.json'}")
    return 0
