"""The course data: spoken digits in three partial views (image, audio, text), embedded.

    from mmcourse.data import load_split, collate, Vocab, SAMPLE_RATE, CLASSES
    ds = load_split("train", seed=0)     # also "val", "test"; clean=True: no degradation
    item = ds[0]                         # dict: image, audio, text, tokens, label, speaker
    batch = collate([ds[0], ds[1]])      # padded, with audio_len and tokens_len
    whole = ds.tensors(device)           # the whole split as one batch on the device

``verify()`` lists missing or corrupted files (``mmcourse doctor`` calls it).
"""

from mmcourse.data.avmnist import load_avmnist as load_avmnist  # AV-MNIST, downloaded
from mmcourse.data.collate import collate, pad
from mmcourse.data.integrity import DataFileError
from mmcourse.data.integrity import problems as verify
from mmcourse.data.spoken_digits import (
    CLASSES,
    DEFAULTS,
    SAMPLE_RATE,
    SPLITS,
    SpokenDigits,
    load_split,
)
from mmcourse.data.vocab import Vocab

__all__ = [
    "CLASSES",
    "DEFAULTS",
    "SAMPLE_RATE",
    "SPLITS",
    "DataFileError",
    "SpokenDigits",
    "Vocab",
    "collate",
    "load_split",
    "pad",
    "verify",
]
