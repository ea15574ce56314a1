"""Differential test: every case through Pigeonhole's real sieve-test as well.

Debian's dovecot-sieve (Pigeonhole 0.5.19) is the oracle. For each case the
printed result (the action list) and the script's error lines must be the same
as mailslot's, after normalising the volatile parts (tool prefixes). A case that
documents a deliberate difference (== differs) is skipped here with its reason.
"""

import pytest

from tests.sieve.casefile import Case, all_cases, error_lines, pigeonhole_available, \
    run_mailslot, run_pigeonhole

pytestmark = pytest.mark.skipif(not pigeonhole_available(),
                                reason="needs root and /usr/bin/sieve-test")


def normalise(text):
    return text.replace("\r\n", "\n")


@pytest.mark.parametrize("path", all_cases(), ids=lambda p: p.stem)
def test_same_as_pigeonhole(path, tmp_path):
    case = Case(path)
    if case.differs:
        pytest.skip("deliberate difference: " + case.differs.splitlines()[0])
    ph_rc, ph_out, ph_err = run_pigeonhole(case)
    rc, out, err = run_mailslot(case, tmp_path)
    assert normalise(out) == normalise(ph_out), (
        "\n--- pigeonhole ---\n" + ph_out + ph_err + "\n--- mailslot ---\n" + out + err)
    assert error_lines(err) == error_lines(ph_err)
    assert (rc == 0) == (ph_rc == 0)
