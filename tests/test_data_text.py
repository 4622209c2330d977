"""The description grammar (mmcourse.data.text): every description is true, and partial."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.data.text import (
    NUMBER_WORDS,
    add_typos,
    candidates,
    describe,
    grammar_words,
)
from mmcourse.data.vocab import Vocab, tokenize


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 9), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_every_description_is_true(d, seed, reveal):
    text = describe(d, np.random.default_rng(seed), reveal=reveal)
    assert d in candidates(text), text
    assert set(tokenize(text)) <= set(grammar_words()), text


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 9), st.integers(0, 2**32 - 1))
def test_reveal_one_names_the_digit_and_zero_never_does(d, seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        assert candidates(describe(d, rng, reveal=1.0)) == {d}
        assert len(candidates(describe(d, rng, reveal=0.0))) >= 2


def test_partial_descriptions_leave_several_candidates_on_average():
    rng = np.random.default_rng(0)
    sizes = [len(candidates(describe(i % 10, rng, reveal=0.0))) for i in range(2000)]
    assert 3.0 < np.mean(sizes) < 7.0
    assert max(sizes) <= 9  # never says nothing at all


def test_number_words_also_appear_as_thresholds():
    rng = np.random.default_rng(1)
    texts = [describe(3, rng, reveal=0.0) for _ in range(300)]
    assert any(w in t.split() for t in texts for w in NUMBER_WORDS if w != "three")


def test_candidates_parses_each_clue():
    assert candidates("an odd number greater than four") == {5, 7, 9}
    assert candidates("one less than eight") == {7}
    assert candidates("just after six") == {7}
    assert candidates("not a prime and even") == {0, 4, 6, 8}
    assert candidates("a prime below five") == {2, 3}
    assert candidates("the digit zero") == {0}


def test_typos_misspell_about_the_asked_share_of_words():
    rng = np.random.default_rng(0)
    text = " ".join(["seven", "greater", "number"] * 400)
    out = add_typos(text, 0.2, rng).split()
    changed = np.mean([a != b for a, b in zip(text.split(), out, strict=True)])
    assert 0.15 < changed < 0.25
    assert all(b[0] == a[0] for a, b in zip(text.split(), out, strict=True))  # first letter kept
    assert add_typos(text, 0.0, rng) == text


def test_same_generator_state_same_text():
    a = [describe(5, np.random.default_rng([3, 1]), 0.4, 0.1) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="digit 0-9"):
        describe(10, rng)
    with pytest.raises(ValueError, match=r"reveal and typo in \[0, 1\]"):
        describe(3, rng, reveal=2.0)


def test_grammar_vocab_covers_every_clean_word():
    v = Vocab(grammar_words())
    rng = np.random.default_rng(5)
    for i in range(200):
        assert v.unk_id not in v.encode(describe(i % 10, rng, reveal=0.5))
