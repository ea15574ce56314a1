"""The Sieve case corpus, run through mailslot's sieve-test.

One test per tests/sieve/cases/*.case (format: casefile.py). Each checks the
printed result (exactly), the error lines, and the exit status.
"""

import pytest

from tests.sieve.casefile import Case, all_cases, error_lines, run_mailslot

STATUS_RC = {"success": 0, "failed": 1, "compile-error": 1, "resource-limit": 1,
             "fatal": 1}


@pytest.mark.parametrize("path", all_cases(), ids=lambda p: p.stem)
def test_case(path, tmp_path):
    case = Case(path)
    rc, out, err = run_mailslot(case, tmp_path)
    assert rc == STATUS_RC[case.status], err
    if case.expect is not None:
        # Case files hold text: CRLF inside strings prints as LF here.
        assert out.replace("\r\n", "\n") == case.expect, err
    if case.errors is not None:
        assert error_lines(err) == case.errors
    if case.status == "success":
        assert "final result: success" in err
    elif case.status == "resource-limit":
        assert "resource limit exceeded" in err
    elif case.status == "failed":
        assert "final result: failed" in err
    elif case.status == "fatal":
        assert "Fatal: " in err and "final result" not in err
