"""Calibrate the degradation knobs of the course data with simple baselines.

    python data/calibrate.py                      # the defaults, test accuracies as a table
    python data/calibrate.py --snr-db 3 --image-noise 0.3 --seeds 0 1 2

Unimodal baselines (scikit-learn logistic regression, C picked on the val split):
- image: the 64 pixels;
- audio: log-mel energies (32 bands, 32 ms windows) resampled to 16 frames, plus their mean
  and standard deviation over time, per clip;
- text: bag of words (token counts over the course vocabulary).
Fusion: early (concatenated standardized features, one logistic regression) and late (sum of
the three models' log-probabilities, i.e. a product of experts). The aim: every unimodal
baseline between about 40% and 90% on the test split, the best fusion at 97% or more.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
import torchaudio
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mmcourse.data import DEFAULTS, SAMPLE_RATE, load_split
from mmcourse.nn.audio import summarize_frames

C_GRID = (0.01, 0.1, 1.0, 10.0)
MEL = torchaudio.transforms.MelSpectrogram(
    sample_rate=SAMPLE_RATE, n_fft=256, win_length=256, hop_length=80, n_mels=32
)


def image_features(ds) -> np.ndarray:
    return ds.images.reshape(len(ds), -1).numpy()  # (N, 64)


def audio_features(ds, frames: int = 16) -> np.ndarray:
    """(N, 32 * frames + 64): time-resampled log-mel, and its mean and std over time."""
    feats = []
    for i in range(len(ds)):
        s, m = int(ds.audio_offset[i]), int(ds.audio_length[i])
        logmel = torch.log(MEL(ds.audio[s : s + m]) + 1e-6)  # (32, T)
        feats.append(summarize_frames(logmel[None], torch.tensor([logmel.shape[1]]), frames)[0])
    return torch.stack(feats).numpy()


def text_features(ds) -> np.ndarray:
    counts = np.zeros((len(ds), len(ds.vocab)), dtype=np.float32)  # (N, V)
    for i, t in enumerate(ds.tokens):
        np.add.at(counts[i], t.numpy(), 1.0)
    return counts


FEATURES = {"image": image_features, "audio": audio_features, "text": text_features}


def fit_lr(xtr, ytr, xva, yva) -> tuple[LogisticRegression, StandardScaler]:
    """Standardize, then logistic regression with C chosen on the val split."""
    scaler = StandardScaler().fit(xtr)
    xtr, xva = scaler.transform(xtr), scaler.transform(xva)
    best = None
    for c in C_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=300).fit(xtr, ytr)
        acc = model.score(xva, yva)
        if best is None or acc > best[0]:
            best = (acc, model)
    return best[1], scaler


def run(seed: int, knobs: dict) -> dict[str, float]:
    """Test accuracy of every baseline for one seed of the degradations."""
    splits = {s: load_split(s, seed=seed, **knobs) for s in ("train", "val", "test")}
    y = {s: ds.labels.numpy() for s, ds in splits.items()}
    x = {m: {s: f(ds) for s, ds in splits.items()} for m, f in FEATURES.items()}
    acc, logp = {}, {}
    for m in FEATURES:
        model, scaler = fit_lr(x[m]["train"], y["train"], x[m]["val"], y["val"])
        for s in ("val", "test"):
            logp[m, s] = model.predict_log_proba(scaler.transform(x[m][s]))
        acc[m] = float(np.mean(logp[m, "test"].argmax(1) == y["test"]))
    cat = {s: np.concatenate([x[m][s] for m in FEATURES], axis=1) for s in splits}
    model, scaler = fit_lr(cat["train"], y["train"], cat["val"], y["val"])
    acc["early fusion (concat)"] = float(model.score(scaler.transform(cat["test"]), y["test"]))
    late = sum(logp[m, "test"] for m in FEATURES)
    acc["late fusion (sum log p)"] = float(np.mean(late.argmax(1) == y["test"]))
    return acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--image-noise", type=float, default=DEFAULTS["image_noise"])
    p.add_argument("--image-occlusion", type=int, default=DEFAULTS["image_occlusion"])
    p.add_argument("--snr-db", type=float, default=DEFAULTS["snr_db"])
    p.add_argument("--text-reveal", type=float, default=DEFAULTS["text_reveal"])
    p.add_argument("--text-typo", type=float, default=DEFAULTS["text_typo"])
    p.add_argument("--clean", action="store_true", help="no degradation at all")
    a = p.parse_args()
    knobs = (
        {}
        if a.clean
        else dict(
            image_noise=a.image_noise,
            image_occlusion=a.image_occlusion,
            snr_db=a.snr_db,
            text_reveal=a.text_reveal,
            text_typo=a.text_typo,
        )
    )
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = [run(seed, {**knobs, "clean": a.clean}) for seed in a.seeds]
    print(f"knobs: {knobs or 'clean'}; seeds {a.seeds}; {time.perf_counter() - start:.0f} s")
    print("\n| baseline (test split) | accuracy, mean ± std over seeds |\n| --- | --- |")
    for name in runs[0]:
        vals = 100 * np.array([r[name] for r in runs])
        print(f"| {name} | {vals.mean():.1f}% ± {vals.std():.1f} |")


if __name__ == "__main__":
    main()
