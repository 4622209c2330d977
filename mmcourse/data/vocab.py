"""A word vocabulary: text <-> token ids, with padding (id 0) and unknown words (id 1)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters; everything else separates them."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    return re.findall(r"[a-z]+", text.lower())


class Vocab:
    """Words to ids and back. Id 0 is padding, id 1 stands for every unknown word."""

    pad_id = 0
    unk_id = 1

    def __init__(self, words: Iterable[str]):
        self.itos: list[str] = [PAD, UNK]
        for w in words:
            if not isinstance(w, str) or tokenize(w) != [w]:
                raise ValueError(f"expected lower-case words of letters a-z, got {w!r}")
            if w not in self.itos:
                self.itos.append(w)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> Vocab:
        """The words seen at least ``min_freq`` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for t in texts for w in tokenize(t))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)
        )
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; unknown words map to ``unk_id``."""
        return [self.stoi.get(w, self.unk_id) for w in tokenize(text)]

    def decode(self, ids: Sequence[int] | Iterable[int]) -> str:
        """The words of ``ids`` joined by spaces, padding skipped (accepts a 1-D tensor too)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        words = []
        for i in ids:
            if not isinstance(i, int) or not 0 <= i < len(self.itos):
                raise ValueError(f"expected token ids in [0, {len(self.itos)}), got {i!r}")
            if i != self.pad_id:
                words.append(self.itos[i])
        return " ".join(words)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {' '.join(self.itos[:8])} ...)"
