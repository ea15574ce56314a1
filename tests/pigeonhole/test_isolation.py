"""vnd.dovecot.testsuite is test-only: a delivery or sieve-test never has it."""

import subprocess
import sys

from mailslot import sieve

SCRIPT = b'require "vnd.dovecot.testsuite";\ntest "x" { keep; }\n'
MESSAGE = b"From: a@example.org\nTo: b@example.org\nSubject: x\n\nbody\n"


class _Message:
    def header_fields(self):
        return [("From", "a@example.org"), ("To", "b@example.org"), ("Subject", "x")]

    def read_bytes(self):
        return MESSAGE


def test_delivery_does_not_know_the_testsuite(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_bytes(SCRIPT)
    res = sieve.run([str(script)], _Message(), {"from": "a@example.org",
                                                 "to": "b@example.org"}, cache=False)
    assert res.status != "success"
    assert res.implicit_keep
    assert any("unknown Sieve capability `vnd.dovecot.testsuite'" in line
               for line in res.errors), res.errors


def test_sieve_test_tool_does_not_know_the_testsuite(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_bytes(SCRIPT)
    mail = tmp_path / "m.eml"
    mail.write_bytes(MESSAGE)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mailslot.admin import main; "
         "sys.exit(main())", "sieve-test", "-C", str(script), str(mail)],
        capture_output=True)
    assert proc.returncode == 1
    assert b"unknown Sieve capability `vnd.dovecot.testsuite'" in proc.stderr


def test_the_testsuite_command_runs_a_file(tmp_path):
    test = tmp_path / "t.svtest"
    test.write_bytes(b'require "vnd.dovecot.testsuite";\n'
                     b'test "passes" { if not header :is "subject" "Frop!" '
                     b'{ test_fail "default message"; } }\n'
                     b'test "fails" { test_fail "on purpose"; }\n')
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from mailslot.admin import main; "
         "sys.exit(main())", "sieve-testsuite", str(test)], capture_output=True)
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert " 1: Test 'passes' SUCCEEDED" in out
    assert " 2: Test 'fails' FAILED: on purpose" in out
