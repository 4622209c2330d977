"""Reading the course sentences back: is a sentence of the grammar, and is it true of a digit?

:func:`parse` accepts exactly the sentence forms that :func:`mmcourse.data.text.describe` writes
(without typos), with any number words in them, and returns the set of digits the sentence is
true of (``None`` when the words do not form a sentence of the grammar). The forms, with
``LEAD`` = "it is" | "this is" | "the answer is" (optional where marked ``LEAD?``)::

    LEAD? a NOUN (BETWEEN | CMP)            "a number between four and eight"
    an PARITY NOUN (BETWEEN | CMP | NEXT)   "an odd digit below seven", "an odd number just after six"
    it is PARITY and CMP                    "it is even and greater than four"
    PRIME (CMP | and PARITY)                "a prime below five", "not a prime and even"
    LEAD? (CMP | NUM | NEXT)                "the answer is under seven", "seven", "one less than eight"
    the PARITY? NOUN NUM                    "the digit seven", "the odd number seven"

    CMP = (greater than | more than | above | bigger than | less than | below | smaller than
           | under) NUM
    NEXT = (one more than | just after | right after | one less than | just before
            | right before) NUM
    BETWEEN = between NUM and NUM           (strictly between)
    PRIME = a prime | not a prime

A well-formed sentence may still be false ("the odd number four" is true of no digit).
:func:`all_descriptions` lists every sentence ``describe`` can write for a digit, by running it
on every sequence of random choices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from mmcourse.data import text as _text
from mmcourse.data.text import AFTER, BEFORE, GREATER, LEADS, LESS, NOUNS, NUMBER_WORDS, PRIMES

__all__ = ["all_descriptions", "is_true", "is_well_formed", "judge", "parse"]

DIGITS = frozenset(range(10))
EVEN, ODD = frozenset(range(0, 10, 2)), frozenset(range(1, 10, 2))
NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS)}

# a parser maps (tokens, position) to every (next position, digits allowed) it can read there
Parser = Callable[[Sequence[str], int], Iterator[tuple[int, frozenset[int]]]]


def _phrases(templates: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(t.replace("{}", "").split()) for t in templates if t.strip()]


def _words(options: Sequence[tuple[str, ...]], meaning: frozenset[int] = DIGITS) -> Parser:
    """Any one of the fixed phrases ``options``; it allows ``meaning``."""

    def parse(tokens: Sequence[str], i: int) -> Iterator[tuple[int, frozenset[int]]]:
        for words in options:
            if tuple(tokens[i : i + len(words)]) == words:
                yield i + len(words), meaning

    return parse


def _number(relation: Callable[[int, int], bool]) -> Parser:
    """One number word n; allows the digits x with relation(n, x)."""

    def parse(tokens: Sequence[str], i: int) -> Iterator[tuple[int, frozenset[int]]]:
        if i < len(tokens) and tokens[i] in NUMBERS:
            n = NUMBERS[tokens[i]]
            yield i + 1, frozenset(x for x in range(10) if relation(n, x))

    return parse


def _seq(*parts: Parser) -> Parser:
    """The parts one after another; the allowed digits are the intersection of theirs."""

    def parse(tokens: Sequence[str], i: int) -> Iterator[tuple[int, frozenset[int]]]:
        def rest(k: int, j: int, allowed: frozenset[int]) -> Iterator[tuple[int, frozenset[int]]]:
            if k == len(parts):
                yield j, allowed
                return
            for j2, a in parts[k](tokens, j):
                yield from rest(k + 1, j2, allowed & a)

        yield from rest(0, i, DIGITS)

    return parse


def _any(*alternatives: Parser) -> Parser:
    def parse(tokens: Sequence[str], i: int) -> Iterator[tuple[int, frozenset[int]]]:
        for alt in alternatives:
            yield from alt(tokens, i)

    return parse


def _optional(part: Parser) -> Parser:
    return _any(part, _words([()]))


LEAD = _words(_phrases(LEADS))
NOUN = _words([(n,) for n in NOUNS])
PARITY = _any(_words([("even",)], EVEN), _words([("odd",)], ODD))
NUM = _number(lambda n, x: x == n)
CMP = _any(
    _seq(_words(_phrases(GREATER)), _number(lambda n, x: x > n)),
    _seq(_words(_phrases(LESS)), _number(lambda n, x: x < n)),
)
NEXT = _any(
    _seq(_words(_phrases(AFTER)), _number(lambda n, x: x == n + 1)),
    _seq(_words(_phrases(BEFORE)), _number(lambda n, x: x == n - 1)),
)
BETWEEN = _seq(
    _words([("between",)]), _number(lambda n, x: x > n), _words([("and",)]),
    _number(lambda n, x: x < n),
)
PRIME = _any(
    _words([("a", "prime")], frozenset(PRIMES)),
    _words([("not", "a", "prime")], DIGITS - PRIMES),
)
SENTENCE = _any(
    _seq(_optional(LEAD), _words([("a",)]), NOUN, _any(BETWEEN, CMP)),
    _seq(_words([("an",)]), PARITY, NOUN, _any(BETWEEN, CMP, NEXT)),
    _seq(_words([("it", "is")]), PARITY, _words([("and",)]), CMP),
    _seq(PRIME, _any(CMP, _seq(_words([("and",)]), PARITY))),
    _seq(_optional(LEAD), _any(CMP, NUM, NEXT)),
    _seq(_words([("the",)]), _optional(PARITY), NOUN, NUM),
)


def parse(text: str) -> frozenset[int] | None:
    """The digits a sentence of the grammar is true of, or ``None`` if it is not one.

    Words are separated by single spaces, lower case, no punctuation (as ``describe`` writes).
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a sentence as a str, got {type(text).__name__}")
    tokens = text.split(" ")
    readings = {allowed for end, allowed in SENTENCE(tokens, 0) if end == len(tokens)}
    if not readings:
        return None
    if len(readings) > 1:  # the grammar is unambiguous; this guards it
        raise AssertionError(f"ambiguous sentence {text!r}: readings {readings}")
    return readings.pop()


def is_well_formed(text: str) -> bool:
    """True if ``text`` is a sentence of the grammar (true or not)."""
    return parse(text) is not None


def is_true(text: str, label: int) -> bool:
    """True if ``text`` is a sentence of the grammar and true of the digit ``label``."""
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label <= 9:
        raise ValueError(f"expected a digit label 0-9, got {label!r}")
    allowed = parse(text)
    return allowed is not None and int(label) in allowed


def judge(texts: Sequence[str], labels: Sequence[int]) -> dict[str, float]:
    """The share of ``texts`` that are well-formed, and that are true of their ``labels``."""
    texts, labels = list(texts), [int(y) for y in labels]
    if len(texts) != len(labels) or not texts:
        raise ValueError(
            f"expected as many labels as texts (at least one), got {len(texts)} and {len(labels)}"
        )
    well = [is_well_formed(t) for t in texts]
    true = [is_true(t, y) for t, y in zip(texts, labels, strict=True)]
    return {"well_formed": float(np.mean(well)), "true": float(np.mean(true))}


class _Prune(Exception):
    """A run that made more choices than a first attempt at a sentence ever needs."""


class _Choices:
    """Stands in for ``np.random.Generator``: replays ``prefix``, then takes option 0 each time.

    ``made`` records (choice, number of options) for every call, so that the caller can step
    to the next sequence of choices like an odometer.
    """

    def __init__(self, prefix: list[int], limit: int) -> None:
        self.prefix, self.limit, self.made = prefix, limit, []

    def _choose(self, n: int) -> int:
        if len(self.made) >= self.limit:
            raise _Prune
        c = self.prefix[len(self.made)] if len(self.made) < len(self.prefix) else 0
        self.made.append((c, n))
        return c

    def integers(self, low: int, high: int | None = None) -> int:
        low, high = (0, low) if high is None else (low, high)
        return low + self._choose(high - low)

    def random(self) -> float:
        return (0.25, 0.75)[self._choose(2)]  # describe only compares it with thresholds


def _every_run(fn: Callable[[_Choices], str], limit: int) -> set[str]:
    out: set[str] = set()
    prefix: list[int] = []
    while True:
        rng = _Choices(prefix, limit)
        try:
            out.add(fn(rng))
        except _Prune:
            pass
        made = rng.made
        while made and made[-1][0] + 1 >= made[-1][1]:  # odometer: drop exhausted choices
            made.pop()
        if not made:
            return out
        prefix = [c for c, _ in made[:-1]] + [made[-1][0] + 1]


def all_descriptions(d: int) -> set[str]:
    """Every sentence ``describe(d, rng, typo=0)`` can write, for any ``rng`` and ``reveal``."""
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or not 0 <= d <= 9:
        raise ValueError(f"expected a digit 0-9, got {d!r}")
    # a first attempt at a sentence makes at most 6 choices; _partial retries when a clue
    # leaves fewer than two digits, and a retry can only write what a first attempt can
    exact = _every_run(lambda rng: _text._exact(int(d), rng), limit=8)
    partial = _every_run(lambda rng: _text._partial(int(d), rng), limit=8)
    return exact | partial
