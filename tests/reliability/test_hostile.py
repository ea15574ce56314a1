"""Hostile inputs end to end (tests/reliability/hostile.py): NUL bytes, bare CR, a
1 MB header line, 100 000 header fields, 8-bit garbage in headers, no header/body
separator, 2000-deep MIME nesting, RFC 2231 parameter bombs, a 4 MB base64 line,
Sieve regex backtracking bombs, include loops and heavy foreverypart work: each
delivered (intact, once) or deferred (75, nothing stored) within the time and
memory limits, measured per case."""

import os

import pytest

from tests.reliability import hostile
from tests.support import needs_root

pytestmark = needs_root


@pytest.fixture(scope="module")
def home():
    h = hostile.Home()
    yield h
    h.close()


@pytest.mark.parametrize("name", list(hostile.CASES))
def test_hostile_input_is_delivered_or_deferred_within_limits(home, name):
    result = hostile.run_case(home, name)
    assert result["problems"] == [], result


def test_committed_corpus_is_what_the_generators_make(tmp_path):
    """tests/reliability/corpus/ holds the small cases; the big ones are made at
    run time. Rewrite it with: python3 -m tests.reliability.hostile --write
    tests/reliability/corpus --small"""
    made = hostile.write_corpus(str(tmp_path), small_only=True)
    assert made
    committed = sorted(os.listdir(hostile.CORPUS))
    assert committed == sorted(os.listdir(tmp_path))
    for name in committed:
        with open(os.path.join(hostile.CORPUS, name), "rb") as a, \
                open(os.path.join(tmp_path, name), "rb") as b:
            assert a.read() == b.read(), name
