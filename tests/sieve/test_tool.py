"""The administrator's tools: `mailslot sieve-test` and `mailslot sievec`.

The layout of sieve-test's normal output is checked by the case corpus; here:
--json, exit statuses, -x, -e, -f/-r/-a envelope options, sievec, usage
errors, and one run of the installed console command.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailslot.sieve.tool import sieve_test_main, sievec_main

MSG = "From: Alice <alice@example.org>\nTo: bob@example.com\nSubject: Hi\n\nbody\n"


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "msg.eml").write_text(MSG)

    def script(text, name="s.sieve"):
        (tmp_path / name).write_text(text)
        return name
    return script


def run_test(capsys, argv):
    rc = sieve_test_main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_output(files, capsys):
    s = files('require ["fileinto", "imap4flags", "copy"];\n'
              'addflag "\\\\Seen";\nfileinto :copy "Copy";\nredirect "x@example.net";\n')
    rc, out, err = run_test(capsys, ["--json", s, "msg.eml"])
    assert rc == 0
    data = json.loads(out)
    assert data["status"] == "success"
    assert data["actions"] == [
        {"type": "store", "mailbox": "Copy", "copy": True, "flags": ["\\Seen"]},
        {"type": "redirect", "address": "x@example.net"}]
    assert data["implicit_keep"] is None
    assert data["errors"] == []


def test_json_implicit_keep_and_errors(files, capsys):
    s = files('require "variables";\nset "a" "bad";\nredirect "${a}";\n')
    rc, out, _ = run_test(capsys, ["--json", s, "msg.eml"])
    data = json.loads(out)
    assert rc == 1
    assert data["status"] == "failed"
    assert data["implicit_keep"] == {"mailbox": "INBOX", "flags": []}
    assert data["errors"] == ["error: specified redirect address 'bad' is invalid: "
                              "invalid or lonely local part 'bad' (expecting '@')."]


def test_compile_error_exit_and_stderr(files, capsys):
    s = files("frobnicate;\n")
    rc, out, err = run_test(capsys, [s, "msg.eml"])
    assert rc == 1
    assert out == ""
    assert "s: line 1: error: unknown command 'frobnicate'" in err
    assert "Fatal: failed to compile sieve script" in err


def test_usage_error(files, capsys):
    rc, out, err = run_test(capsys, ["-Q", "x", "y"])
    assert rc == 1
    assert "Usage: mailslot sieve-test" in err
    rc, out, err = run_test(capsys, ["only-one-arg"])
    assert rc == 1
    assert "Missing <mail-file> argument" in err


def test_extension_toggles(files, capsys):
    s = files('require "fileinto";\nfileinto "x";\n')
    rc, _, err = run_test(capsys, ["-x", "-fileinto", s, "msg.eml"])
    assert rc == 1
    assert "unknown Sieve capability `fileinto'" in err
    s2 = files('require "editheader";\naddheader "X-A" "b";\n', "e.sieve")
    rc, out, _ = run_test(capsys, ["-x", "+editheader", s2, "msg.eml"])
    assert rc == 0


def test_envelope_options(files, capsys):
    s = files('require ["envelope", "fileinto", "variables"];\n'
              'if envelope :matches "from" "*" { set "f" "${1}"; }\n'
              'if envelope :matches "to" "*" { fileinto "${f}-${1}"; }\n')
    rc, out, _ = run_test(capsys, ["-f", "s@x.org", "-r", "r@y.org", s, "msg.eml"])
    assert " * store message in folder: s@x.org-r@y.org" in out
    rc, out, _ = run_test(capsys, ["-f", "s@x.org", "-r", "r@y.org", "-a", "o@y.org",
                                   s, "msg.eml"])
    assert " * store message in folder: s@x.org-o@y.org" in out
    # Without -f/-r: From and To of the message (sieve-test's defaults).
    rc, out, _ = run_test(capsys, [s, "msg.eml"])
    assert " * store message in folder: alice@example.org-bob@example.com" in out


def test_execute_mode(files, capsys):
    s = files('require "fileinto";\nfileinto "Work";\n')
    rc, out, err = run_test(capsys, ["-e", s, "msg.eml"])
    assert rc == 0
    assert "info: stored mail into mailbox 'Work'." in out
    assert "Performed actions" not in out


def test_sievec(files, tmp_path, capsys):
    good = files('require "fileinto";\nfileinto "A";\n')
    assert sievec_main([good]) == 0
    assert (tmp_path / "s.msbin").exists()
    bad = files("keep\n", "bad.sieve")
    assert sievec_main([bad]) == 1
    err = capsys.readouterr().err
    assert "bad: line 2: error: expected end of command ';' or the beginning of a " \
           "compound block '{', but found end of file." in err
    assert "bad: error: parse failed." in err
    assert sievec_main([good, str(tmp_path / "out.bin")]) == 0
    assert (tmp_path / "out.bin").exists()


def test_installed_command(files, tmp_path):
    exe = Path(sys.executable).parent / "mailslot"
    if not exe.exists():
        pytest.skip("mailslot console script not installed in this environment")
    s = files('require "fileinto";\nfileinto "Installed";\n')
    proc = subprocess.run([str(exe), "sieve-test", s, "msg.eml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, HOME=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert " * store message in folder: Installed" in proc.stdout
    proc = subprocess.run([str(exe), "sievec", s], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
