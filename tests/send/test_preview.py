"""`mailslot sieve-test -e` shows the whole message a delivery would send and sends
nothing (not even with a sendmail_path configured)."""

import email
import email.policy
import os
import sys

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.sieve.tool import sieve_test_main  # noqa: E402

MSG = (b"From: Sender Name <sender@example.com>\nTo: user@example.org\n"
       b"Subject: Hello there\nMessage-ID: <abc123@example.com>\n"
       b"Return-Path: <sender@example.com>\n\nbody line\n")


def run(tmp_path, capsys, script, *args):
    (tmp_path / "s.sieve").write_text(script)
    (tmp_path / "msg.eml").write_bytes(MSG)
    recorder = tmp_path / "sendmail"
    recorder.write_text(f"#!/bin/sh\ntouch {tmp_path}/SENT\ncat >/dev/null\n")
    recorder.chmod(0o755)
    (tmp_path / "conf").write_text(f"sendmail_path = {recorder}\nhostname = mx.example.org\n")
    rc = sieve_test_main(["-c", str(tmp_path / "conf"), "-e", "-f", "sender@example.com",
                          "-r", "user@example.org", *args,
                          str(tmp_path / "s.sieve"), str(tmp_path / "msg.eml")])
    out = capsys.readouterr().out
    assert not (tmp_path / "SENT").exists()
    return rc, out


def messages(out):
    """The messages between 'sending message from ...:' lines, parsed."""
    found = []
    for chunk in out.split("sending message from ")[1:]:
        head, _, rest = chunk.partition(":\n")
        body = rest.split("\ninfo: ")[0]
        found.append((head, email.message_from_string(body, policy=email.policy.default)))
    return found


def test_vacation_and_redirect_are_shown_whole(tmp_path, capsys):
    rc, out = run(tmp_path, capsys, 'require "vacation";\n'
                  'vacation :addresses ["user@example.org"] "away";\n'
                  'redirect "x@example.net";\n')
    assert rc == 0
    (vh, vac), (rh, fwd) = messages(out)
    assert vh == "<> to <sender@example.com>"
    assert vac["Auto-Submitted"] == "auto-replied (vacation)"
    assert vac["Subject"] == "Auto: Hello there" and vac.get_content() == "away\n"
    assert rh == "<sender@example.com> to <x@example.net>"
    assert fwd["X-Sieve-Redirected-From"] == "user@example.org"
    assert fwd["Return-Path"] is None and fwd.get_content() == "body line\n"
    assert "info: vacation action: sent vacation response to <sender@example.com> " \
           "(not sent by sieve-test)." in out


def test_reject_report_is_shown(tmp_path, capsys):
    rc, out = run(tmp_path, capsys, 'require "reject";\nreject "no";\n')
    ((head, report),) = messages(out)
    assert head == "<> to <sender@example.com>"
    assert report.get_content_type() == "multipart/report"
    assert report["Subject"] == "Rejected: Hello there"


def test_list_mail_gets_no_vacation_reply(tmp_path, capsys):
    global MSG
    saved, MSG = MSG, MSG.replace(b"Subject:", b"List-Id: <l.example.org>\nSubject:")
    try:
        rc, out = run(tmp_path, capsys, 'require "vacation";\n'
                      'vacation :addresses ["user@example.org"] "away";\n')
    finally:
        MSG = saved
    assert messages(out) == []
    assert "discarding vacation response to mailinglist recipient" in out


def test_without_e_it_says_nothing_was_sent(tmp_path, capsys):
    (tmp_path / "s.sieve").write_text('redirect "x@example.net";\n')
    (tmp_path / "msg.eml").write_bytes(MSG)
    assert sieve_test_main([str(tmp_path / "s.sieve"), str(tmp_path / "msg.eml")]) == 0
    captured = capsys.readouterr()
    assert " * redirect message to: <x@example.net>" in captured.out
    assert "sending message" not in captured.out
    assert "sieve-test: Info: no mail was sent; -e shows each message a delivery would " \
           "send\n" in captured.err
