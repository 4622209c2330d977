"""The course text: a small grammar of partial descriptions of a digit.

A description states true facts about the digit ``d``. Most facts only narrow it down:

- parity:      "an even number", "it is odd"              -> 5 candidates
- comparison:  "greater than four", "below seven"         -> the digits on one side
- a range:     "between four and eight"                   -> two or three digits
- primality:   "a prime", "not a prime"                   -> 4 or 6 candidates

Thresholds lie one to three steps from the digit, and a partial description always leaves at
least two candidates.

With probability ``reveal`` the description also pins the digit down exactly:

- the number word:  "the digit seven", "seven"
- a neighbour:      "one less than eight", "just after six"

so the Bayes-optimal text-only accuracy grows with ``reveal``. Number words also appear as
thresholds ("less than eight"), so a bag of words cannot tell "eight" from "less than eight":
word order matters. With probability ``typo`` per word (of three letters or more) a letter is
dropped, doubled or swapped with its neighbour, which usually makes the word unknown.
"""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PRIMES = frozenset({2, 3, 5, 7})
NOUNS = ("number", "digit")
GREATER = ("greater than", "more than", "above", "bigger than")
LESS = ("less than", "below", "smaller than", "under")
AFTER = ("one more than {}", "just after {}", "right after {}")
BEFORE = ("one less than {}", "just before {}", "right before {}")
LEADS = ("", "it is ", "this is ", "the answer is ")


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _comparison(d: int, rng: np.random.Generator) -> tuple[str, set[int]]:
    """A true comparison with a threshold 1-3 away, e.g. 'greater than four' for d = 6.

    Returns the phrase and the digits it allows.
    """
    k = int(rng.integers(1, 4))
    sides = (["greater"] if d - k >= 0 else []) + (["less"] if d + k <= 9 else [])
    if _pick(rng, sides) == "greater":
        return f"{_pick(rng, GREATER)} {NUMBER_WORDS[d - k]}", set(range(d - k + 1, 10))
    return f"{_pick(rng, LESS)} {NUMBER_WORDS[d + k]}", set(range(d + k))


def _between(d: int, rng: np.random.Generator) -> tuple[str, set[int]]:
    """A range around d with two or three digits inside, e.g. 'between four and eight' for 6."""
    if d in (0, 9):
        return _comparison(d, rng)
    width = int(rng.integers(3, 5))  # y - x: 2 or 3 digits strictly inside
    x = int(np.clip(d - int(rng.integers(1, width)), 0, 9 - width))
    x = min(x, d - 1)
    y = min(x + width, 9)
    return f"between {NUMBER_WORDS[x]} and {NUMBER_WORDS[y]}", set(range(x + 1, y))


def _neighbour(d: int, rng: np.random.Generator) -> str:
    """An exact clue through a neighbour, e.g. 'one less than eight' for d = 7."""
    options = ([(AFTER, d - 1)] if d > 0 else []) + ([(BEFORE, d + 1)] if d < 9 else [])
    templates, n = options[int(rng.integers(len(options)))]
    return _pick(rng, templates).format(NUMBER_WORDS[n])


def _partial(d: int, rng: np.random.Generator) -> str:
    """One or two facts that leave at least two candidates."""
    parity = "even" if d % 2 == 0 else "odd"
    same_parity = set(range(d % 2, 10, 2))
    while True:
        noun = _pick(rng, NOUNS)
        form = int(rng.integers(6))
        if form in (0, 2):  # "an even number greater than four", "it is odd and below seven"
            clue, allowed = _comparison(d, rng)
            lead = f"{_article(parity)} {parity} {noun}" if form == 0 else f"it is {parity} and"
            text, allowed = f"{lead} {clue}", allowed & same_parity
        elif form in (1, 3):  # "a number between four and eight", "an odd digit between ..."
            lead = (
                f"{_pick(rng, LEADS)}a {noun}"
                if form == 1
                else f"{_article(parity)} {parity} {noun}"
            )
            clue, allowed = _between(d, rng)
            text = f"{lead} {clue}"
            allowed = allowed if form == 1 else allowed & same_parity
        elif form == 4:  # "a prime greater than two" / "not a prime and even"
            prime = "a prime" if d in PRIMES else "not a prime"
            primes = set(PRIMES) if d in PRIMES else set(range(10)) - PRIMES
            if rng.random() < 0.5:
                clue, allowed = _comparison(d, rng)
                text, allowed = f"{prime} {clue}", allowed & primes
            else:
                text, allowed = f"{prime} and {parity}", primes & same_parity
        else:  # "the answer is below seven"
            lead = _pick(rng, LEADS)
            clue, allowed = _comparison(d, rng)
            text = f"{lead}{clue}"
        if len(allowed) >= 2:
            return text


def _exact(d: int, rng: np.random.Generator) -> str:
    """A description that names the digit, directly or through a neighbour."""
    word, parity, noun = NUMBER_WORDS[d], ("even" if d % 2 == 0 else "odd"), _pick(rng, NOUNS)
    form = int(rng.integers(5))
    if form == 0:  # "the digit seven"
        return f"the {noun} {word}"
    if form == 1:  # "seven" / "it is seven"
        return f"{_pick(rng, LEADS)}{word}"
    if form == 2:  # "one less than eight"
        return f"{_pick(rng, LEADS)}{_neighbour(d, rng)}"
    if form == 3:  # "an odd number, one less than eight" (no comma: tokens are words)
        return f"{_article(parity)} {parity} {noun} {_neighbour(d, rng)}"
    return f"the {parity} {noun} {word}"  # "the odd number seven"


def add_typos(text: str, typo: float, rng: np.random.Generator) -> str:
    """Misspell each word of three letters or more with probability ``typo``."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) < 3 or rng.random() >= typo:
            continue
        j = int(rng.integers(1, len(w) - 1))  # never the first letter
        kind = int(rng.integers(3))
        if kind == 0:  # drop a letter
            words[i] = w[:j] + w[j + 1 :]
        elif kind == 1:  # double a letter
            words[i] = w[: j + 1] + w[j:]
        else:  # swap two neighbours
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def describe(d: int, rng: np.random.Generator, reveal: float = 0.1, typo: float = 0.0) -> str:
    """A short description of digit ``d``; exact with probability ``reveal``."""
    if not isinstance(d, int | np.integer) or not 0 <= d <= 9:
        raise ValueError(f"expected a digit 0-9, got {d!r}")
    if not 0.0 <= reveal <= 1.0 or not 0.0 <= typo <= 1.0:
        raise ValueError(f"expected reveal and typo in [0, 1], got {reveal!r}, {typo!r}")
    text = _exact(int(d), rng) if rng.random() < reveal else _partial(int(d), rng)
    return add_typos(text, typo, rng)


def grammar_words() -> list[str]:
    """Every word the grammar can produce (without typos), sorted."""
    phrases = [*NUMBER_WORDS, *NOUNS, *GREATER, *LESS, *AFTER, *BEFORE, *LEADS]
    phrases += ["a an even odd it is and not prime the between"]
    words = {w for p in phrases for w in p.replace("{}", "").split()}
    return sorted(words)


def candidates(text: str) -> set[int]:
    """The digits consistent with a typo-free description (a reference for tests and the course).

    Parses the grammar's clues back; used to prove that every description is true.
    """
    tokens = text.split()
    alive = set(range(10))
    words = {w: i for i, w in enumerate(NUMBER_WORDS)}
    i = 0
    while i < len(tokens):
        rest = " ".join(tokens[i:])
        step = 1
        if tokens[i] == "between":  # "between x and y": x < d < y
            lo, hi = words[tokens[i + 1]], words[tokens[i + 3]]
            alive = {x for x in alive if lo < x < hi}
            i += 4
            continue
        for phrases, test in (
            (GREATER, lambda n, x: x > n),
            (LESS, lambda n, x: x < n),
            (tuple(a.replace(" {}", "") for a in AFTER), lambda n, x: x == n + 1),
            (tuple(b.replace(" {}", "") for b in BEFORE), lambda n, x: x == n - 1),
        ):
            hit = next((p for p in phrases if rest.startswith(p + " ")), None)
            if hit is not None:
                n = words[tokens[i + len(hit.split())]]
                alive = {x for x in alive if test(n, x)}
                step = len(hit.split()) + 1
                break
        else:
            t = tokens[i]
            if t in words:
                alive &= {words[t]}
            elif t == "even":
                alive &= {0, 2, 4, 6, 8}
            elif t == "odd":
                alive &= {1, 3, 5, 7, 9}
            elif t == "prime":
                negated = tokens[max(0, i - 2) : i] == ["not", "a"]
                alive &= set(range(10)) - PRIMES if negated else set(PRIMES)
        i += step
    return alive
