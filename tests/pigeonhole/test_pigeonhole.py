"""Pigeonhole 0.5.19's test suite against mailslot's Sieve (see suite.py).

One test per .svtest file: every block recorded in expected-pass.txt must still
pass. A block that passes but is not recorded is reported (pytest warning) so
the list can grow: `python tests/pigeonhole/report.py --update`.
"""

import os
import warnings

import pytest

from tests.pigeonhole.suite import (TESTS, classify, load_expected, load_skips,
                                    run_file, suite_files)

if not os.path.isdir(TESTS):
    FILES = []
else:
    FILES = suite_files()


def test_suite_is_present():
    # `make test` fetches it (tests/pigeonhole/fetch-suite.sh, as root).
    assert os.path.isdir(TESTS), \
        "Pigeonhole's suite is missing: run tests/pigeonhole/fetch-suite.sh"
    assert len(FILES) == 147


def test_expected_list_names_real_blocks():
    files = set(FILES)
    for rel, _ in load_expected():
        assert rel in files, rel


_REPORTS = {}


def _report(rel):
    """One file's report; the first call runs every file, two at a time (the
    whole suite takes about as long as the slowest half)."""
    if not _REPORTS:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(2) as pool:
            _REPORTS.update(zip(FILES, pool.map(run_file, FILES)))
    return _REPORTS[rel]


@pytest.mark.parametrize("rel", FILES)
def test_svtest(rel):
    expected = {i for r, i in load_expected() if r == rel}
    outcomes = classify(rel, _report(rel), load_skips())
    regressed = [(i, name, why) for i, name, outcome, why in outcomes
                 if i in expected and outcome != "pass"]
    assert not regressed, "blocks that passed before now fail: %r" % regressed
    new = [(i, name) for i, name, outcome, _ in outcomes
           if outcome == "pass" and i not in expected]
    if new:
        warnings.warn("%s: newly passing blocks %r (run report.py --update)"
                      % (rel, new))
