"""The grammar checker (mmcourse.data.grammar): it reads every sentence the course writes, says
what each is true of, and rejects what the grammar cannot write."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcourse.data.grammar import all_descriptions, is_true, is_well_formed, judge, parse
from mmcourse.data.text import candidates, describe, grammar_words

LANGUAGE = {d: all_descriptions(d) for d in range(10)}
EVERY = sorted(set().union(*LANGUAGE.values()))
WORDS = grammar_words()

# the grammar again, written independently as one regular expression
_NUM = "(?:zero|one|two|three|four|five|six|seven|eight|nine)"
_CMP = f"(?:greater than|more than|above|bigger than|less than|below|smaller than|under) {_NUM}"
_NEXT = f"(?:one more than|just after|right after|one less than|just before|right before) {_NUM}"
_BETWEEN = f"between {_NUM} and {_NUM}"
_LEAD = "(?:it is |this is |the answer is )?"
_PAR, _NOUN = "(?:even|odd)", "(?:number|digit)"
ORACLE = re.compile(
    "|".join([
        f"{_LEAD}a {_NOUN} (?:{_BETWEEN}|{_CMP})",
        f"an {_PAR} {_NOUN} (?:{_BETWEEN}|{_CMP}|{_NEXT})",
        f"it is {_PAR} and {_CMP}",
        f"(?:a prime|not a prime) (?:{_CMP}|and {_PAR})",
        f"{_LEAD}(?:{_CMP}|{_NUM}|{_NEXT})",
        f"the (?:{_PAR} )?{_NOUN} {_NUM}",
    ])
)


def test_every_sentence_the_generator_can_write_is_well_formed_and_true():
    assert 1000 < len(EVERY) < 2000  # the language is small and finite
    for d, sentences in LANGUAGE.items():
        for s in sentences:
            allowed = parse(s)
            assert allowed is not None, s
            assert d in allowed and is_true(s, d), (s, d)
            assert set(allowed) == candidates(s), s  # the reference reading of text.py


def test_the_enumeration_holds_every_sampled_description():
    rng = np.random.default_rng(0)
    for i in range(5000):
        d = i % 10
        assert describe(d, rng, reveal=0.3) in LANGUAGE[d]


def test_the_regex_oracle_accepts_the_language():
    assert all(ORACLE.fullmatch(s) for s in EVERY)


def _mutate(words: list[str], kind: int, i: int, j: int, w: str) -> list[str]:
    words = list(words)
    i, j = i % len(words), j % len(words)
    if kind == 0 and len(words) > 1:
        del words[i]
    elif kind == 1:
        words[i], words[j] = words[j], words[i]
    elif kind == 2:
        words.insert(i, w)
    else:
        words[i] = w
    return words


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(EVERY), st.integers(0, 3), st.integers(0, 20), st.integers(0, 20),
       st.sampled_from(WORDS + ["sevn", "nmber"]))
def test_mutated_sentences_are_judged_like_the_oracle(sentence, kind, i, j, w):
    text = " ".join(_mutate(sentence.split(), kind, i, j, w))
    allowed = parse(text)
    assert (allowed is not None) == bool(ORACLE.fullmatch(text)), text
    if allowed is not None:
        assert set(allowed) == candidates(text), text
        for d in range(10):
            assert is_true(text, d) == (d in candidates(text))
    else:
        assert not any(is_true(text, d) for d in range(10))


def test_examples():
    assert parse("an odd number greater than four") == {5, 7, 9}
    assert parse("the answer is a digit between four and eight") == {5, 6, 7}
    assert parse("one less than eight") == {7}
    assert parse("the odd number four") == frozenset()  # well-formed, true of nothing
    assert is_well_formed("the odd number four") and not is_true("the odd number four", 4)
    for bad in ("", "seven seven", "a even number below four", "an odd number greater four",
                "it is odd and", "odd", "the number", "Seven", "seven ", "a number between four"):
        assert parse(bad) is None, bad


def test_judge_counts_rates():
    r = judge(["seven", "an even number", "below three"], [7, 4, 5])
    assert r == {"well_formed": pytest.approx(2 / 3), "true": pytest.approx(1 / 3)}


def test_bad_input():
    with pytest.raises(TypeError, match="expected a sentence as a str"):
        parse(7)
    with pytest.raises(ValueError, match="digit label 0-9"):
        is_true("seven", 10)
    with pytest.raises(ValueError, match="as many labels as texts"):
        judge(["seven"], [7, 7])
    with pytest.raises(ValueError, match="digit 0-9"):
        all_descriptions(-1)
