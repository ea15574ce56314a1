"""vnd.dovecot.testsuite's own semantics, one small .svtest per case: what each
block reports (SUCCEEDED / FAILED: reason / SKIPPED: reason) and whether the
file passes. The Pigeonhole suite exercises these too; here each rule is
checked on its own, including the failing side."""

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

HEAD = 'require "vnd.dovecot.testsuite";\n'

CASES = [
    # name, extra args, script, expected [(status, reason)], file passes
    ("pass-and-fail", [], HEAD + 'test "a" { keep; }\ntest "b" { test_fail "no"; }\n',
     [("SUCCEEDED", ""), ("FAILED", "no")], False),
    ("fail-ends-the-block-only", [], HEAD +
     'test "a" { test_fail "first"; test_fail "second"; }\ntest "b" { }\n',
     [("FAILED", "first"), ("SUCCEEDED", "")], False),
    ("default-message-and-envelope", [], HEAD + 'require "envelope";\n'
     'test "m" { if not header :is "subject" "Frop!" { test_fail "subject"; }\n'
     'if not envelope :is "from" "sender@example.com" { test_fail "from"; }\n'
     'if not envelope :is "to" "recipient@example.org" { test_fail "to"; } }\n',
     [("SUCCEEDED", "")], True),
    ("test-error-index-and-count", [], HEAD +
     'require ["relational", "comparator-i;ascii-numeric"];\n'
     'test "e" { if test_script_compile "missing.sieve" { test_fail "compiled"; }\n'
     'if not test_error :count "eq" :comparator "i;ascii-numeric" "1" '
     '{ test_fail "count"; }\n'
     'if not test_error :index 1 :contains "failed to open" { test_fail "index"; }\n'
     'if test_error :index 2 :matches "*" { test_fail "no second error"; } }\n',
     [("SUCCEEDED", "")], True),
    ("result-action-and-execute", [], HEAD + 'require "fileinto";\n'
     'test_mailbox_create "Box";\n'
     'test "r" { fileinto "Box"; keep;\n'
     'if not test_result_action :index 1 "store" { test_fail "1"; }\n'
     'if not test_result_action :index 2 "keep" { test_fail "2"; }\n'
     'if not test_result_execute { test_fail "execute"; }\n'
     'if not test_message :folder "Box" 0 { test_fail "stored"; }\n'
     'if test_message :folder "Box" 1 { test_fail "only one"; } }\n',
     [("SUCCEEDED", "")], True),
    ("store-into-missing-mailbox-fails-and-keeps", [], HEAD + 'require "fileinto";\n'
     'test "x" { fileinto "Nowhere";\n'
     'if test_result_execute { test_fail "should fail"; }\n'
     'if not test_error :contains "failed to store" { test_fail "error"; }\n'
     'test_message :folder "INBOX" 0; }\n',
     [("SUCCEEDED", "")], True),
    ("message-command-fails-the-block", [], HEAD +
     'test "s" { test_message :smtp 0; }\n',
     [("FAILED", "no outgoing SMTP message with index 0")], False),
    ("redirect-is-captured", [], HEAD + 'require "envelope";\n'
     'test_set "envelope.from" "a@example.org";\n'
     'test "r" { redirect "b@example.net"; if not test_result_execute { test_fail "x"; }\n'
     'test_message :smtp 0;\n'
     'if not envelope :is "to" "b@example.net" { test_fail "to"; }\n'
     'if not envelope :is "from" "a@example.org" { test_fail "from"; }\n'
     'if not exists "x-sieve-redirected-from" { test_fail "header"; } }\n',
     [("SUCCEEDED", "")], True),
    ("run-time-error-fails-that-block", [], HEAD + 'require "variables";\n'
     'test "e" { set "a" "not an address"; redirect "${a}"; }\ntest "n" { }\n',
     [("FAILED", None), ("SUCCEEDED", "")], False),
    ("metadata-is-skipped", [], HEAD +
     'test "m" { test_imap_metadata_set "/private/x" "y"; }\n',
     [("SKIPPED", "IMAP METADATA is out of mailslot's scope")], True),
    ("expected-failure", ["-F"], HEAD + 'test "f" { test_fail "on purpose"; }\n',
     [("FAILED", "on purpose")], True),
    ("expected-failure-that-passes", ["-F"], HEAD + 'test "f" { }\n',
     [("SUCCEEDED", "")], False),
]


@pytest.mark.parametrize("name, args, script, expected, passes", CASES,
                         ids=[c[0] for c in CASES])
def test_testsuite_semantics(tmp_path, name, args, script, expected, passes):
    path = tmp_path / "case.svtest"
    path.write_text(script)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mailslot.admin import main; "
         "sys.exit(main())", "sieve-testsuite", "--json", *args, str(path)],
        capture_output=True, env=dict(os.environ,
                                      PYTHONPATH=os.path.join(REPO, "pyside")))
    report = json.loads(proc.stdout)
    got = [(b["status"], b["reason"]) for b in report["blocks"]]
    assert len(got) == len(expected), (got, proc.stderr)
    for (status, reason), (want_status, want_reason) in zip(got, expected):
        assert status == want_status, got
        if want_reason is not None:
            assert reason == want_reason, got
    assert report["passed"] == passes
    assert proc.returncode == (0 if passes else 1)
