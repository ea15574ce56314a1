"""The installed engine sends what Sieve asks, to a real SMTP server on 127.0.0.1.

Each test writes this suite's users' scripts, delivers with the installed
mailslot-lda as that user (submission_host = the sink) and asserts the exact
envelope and headers the sink received, the exit code, the mailbox and the log.
"""

import email
import email.policy
import os
import subprocess

import pytest

from tests.support import needs_root

pytestmark = needs_root

MSG = (b"Return-Path: <sender@example.com>\n"
       b"From: Sender Name <sender@example.com>\nTo: mslt-snd1@example.org\n"
       b"Subject: Hello there\nMessage-ID: <abc123@example.com>\n\nbody line\n")
A = "mslt-snd1@example.org"
B = "mslt-snd2@example.org"


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def deliver_a(mailer, message=MSG, *args, sender="sender@example.com"):
    return mailer.deliver(mailer.users[0], message, "-f", sender, "-r", A, *args)


# -- reject ------------------------------------------------------------------------

def test_reject_mails_an_mdn_and_saves_nothing(mailer):
    mailer.script(mailer.users[0], 'require "reject";\nreject "Go away.";\n')
    proc = deliver_a(mailer)
    assert proc.returncode == 0, proc.stderr
    (sent,) = mailer.sink.wait(1)
    assert sent.sender == "" and sent.recipients == ["sender@example.com"]
    msg = parse(sent.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg["Subject"] == "Rejected: Hello there"
    assert msg["Auto-Submitted"] == "auto-replied (rejected)"
    report = msg.get_payload()[1].get_payload()[0]
    assert report["Final-Recipient"] == "rfc822; " + A
    assert report["Original-Message-ID"] == "<abc123@example.com>"
    assert "Go away." in msg.get_payload()[0].get_content()
    assert mailer.inbox(mailer.users[0]) == []
    log = mailer.log(mailer.users[0])
    # dovecot-lda logs "reject action: rejected message from <...> (reject)" and no
    # line about saving or discarding; the delivery's own line says what happened.
    assert "reject action: rejected message from <sender@example.com> (reject)" in log
    assert "rejected by sieve: rejection sent to <sender@example.com>" in log
    assert "discarded" not in log


def test_reject_with_e_is_77_with_the_reason_and_sends_nothing(mailer):
    mailer.script(mailer.users[0], 'require "reject";\nreject "Go away.";\n')
    proc = deliver_a(mailer, MSG, "-e")
    assert proc.returncode == 77 and b"Go away." in proc.stderr
    assert mailer.sink.wait(1, timeout=0.5) == []


def test_ereject_refuses_at_the_protocol_level(mailer):
    mailer.script(mailer.users[0], 'require "ereject";\nereject "No thanks.";\n')
    proc = deliver_a(mailer)
    assert proc.returncode == 77 and b"No thanks." in proc.stderr
    assert mailer.sink.wait(1, timeout=0.5) == []


@pytest.mark.parametrize("message,sender", [
    (MSG, "<>"),
    (MSG.replace(b"Subject:", b"Auto-Submitted: auto-replied\nSubject:"),
     "sender@example.com"),
])
def test_no_rejection_to_null_sender_or_auto_submitted(mailer, message, sender):
    mailer.script(mailer.users[0], 'require "reject";\nreject "Go away.";\n')
    proc = deliver_a(mailer, message, sender=sender)
    assert proc.returncode == 0, proc.stderr
    assert mailer.sink.wait(1, timeout=0.5) == []
    log = mailer.log(mailer.users[0])
    assert "not sending rejection" in log
    assert "rejected by sieve: no rejection sent" in log
    assert "discarded" not in log


# -- vacation ----------------------------------------------------------------------

VACATION = ('require "vacation";\n'
            f'vacation :days 1 :addresses ["{A}"] "I am away.";\n')


def test_vacation_replies_once_per_period(mailer):
    mailer.script(mailer.users[0], VACATION)
    assert deliver_a(mailer).returncode == 0
    assert deliver_a(mailer).returncode == 0
    sent = mailer.sink.wait(2, timeout=1)
    assert len(sent) == 1
    (reply,) = sent
    assert reply.sender == "" and reply.recipients == ["sender@example.com"]
    msg = parse(reply.data)
    assert msg["Subject"] == "Auto: Hello there"
    assert msg["Auto-Submitted"] == "auto-replied (vacation)"
    assert msg["In-Reply-To"] == "<abc123@example.com>"
    assert msg["From"] == A and msg.get_content() == "I am away.\n"
    assert len(mailer.inbox(mailer.users[0])) == 2      # both delivered
    assert "discarded duplicate response to <sender@example.com>" in \
        mailer.log(mailer.users[0])


@pytest.mark.parametrize("extra", [b"List-Id: <team.example.org>\n",
                                   b"Precedence: bulk\n", b"Precedence: junk\n",
                                   b"Auto-Submitted: auto-generated\n",
                                   b"X-Auto-Response-Suppress: OOF\n"])
def test_vacation_never_answers_list_or_bulk_mail(mailer, extra):
    mailer.script(mailer.users[0], VACATION)
    proc = deliver_a(mailer, MSG.replace(b"Subject:", extra + b"Subject:"))
    assert proc.returncode == 0, proc.stderr
    assert mailer.sink.wait(1, timeout=0.5) == []
    assert len(mailer.inbox(mailer.users[0])) == 1
    assert "vacation action: discarding vacation response" in mailer.log(mailer.users[0])


@pytest.mark.parametrize("setting,replies", [("", 0),
                                              ("sieve_vacation_dont_check_recipient: yes\n", 1)])
def test_vacation_only_for_mail_addressed_to_us_unless_configured(mailer, setting, replies):
    mailer.write_conf(setting)
    mailer.script(mailer.users[0], 'require "vacation";\nvacation "I am away.";\n')
    message = MSG.replace(b"To: mslt-snd1@example.org", b"To: list@example.net")
    assert deliver_a(mailer, message).returncode == 0
    assert len(mailer.sink.wait(1, timeout=0.5 if not replies else 10)) == replies
    if not replies:
        assert "discarding vacation response for implicitly delivered message" in \
            mailer.log(mailer.users[0])


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@example.com", "owner-list@example.com",
                                    "list-request@example.com", "<>"])
def test_vacation_never_answers_system_senders(mailer, sender):
    mailer.script(mailer.users[0], VACATION)
    assert deliver_a(mailer, sender=sender).returncode == 0
    assert mailer.sink.wait(1, timeout=0.5) == []
    log = mailer.log(mailer.users[0])
    assert "not sending vacation response to system address" in log or \
        "discarded vacation reply to <>" in log, log


def test_vacation_send_failure_after_save_is_logged_and_retried_next_time(mailer):
    mailer.script(mailer.users[0], VACATION)
    mailer.sink.fail_data = "451 4.3.0 try later"
    proc = deliver_a(mailer)
    assert proc.returncode == 0, proc.stderr          # saved: the send failure is logged
    assert len(mailer.inbox(mailer.users[0])) == 1
    assert "451 4.3.0 try later" in mailer.log(mailer.users[0])
    mailer.sink.fail_data = None
    assert deliver_a(mailer).returncode == 0          # the claim was forgotten: answered
    assert len(mailer.sink.wait(1)) == 1


# -- redirect ----------------------------------------------------------------------

def test_redirect_headers_and_envelope(mailer):
    mailer.script(mailer.users[0], f'redirect "{B}";\n')
    proc = deliver_a(mailer)
    assert proc.returncode == 0, proc.stderr
    (fwd,) = mailer.sink.wait(1)
    assert fwd.sender == "sender@example.com" and fwd.recipients == [B]
    head = fwd.data.split(b"\n\n")[0].split(b"\n")
    assert head[1] == b"X-Sieve-Redirected-From: " + A.encode()
    assert not any(l.lower().startswith(b"return-path:") for l in head)
    assert fwd.data.endswith(b"Message-ID: <abc123@example.com>\n\nbody line\n")
    assert mailer.inbox(mailer.users[0]) == []
    # The same message again (an MTA retry): not forwarded twice, not kept.
    assert deliver_a(mailer).returncode == 0
    assert len(mailer.sink.wait(2, timeout=0.5)) == 1
    assert "discarded duplicate forward" in mailer.log(mailer.users[0])


def test_redirect_forwards_the_copy_editheader_left_at_that_point(mailer):
    # Pigeonhole's editheader/alternating.svtest: add; redirect; delete; keep.
    mailer.script(mailer.users[0], 'require "editheader";\n'
                  'addheader "X-Added" "before redirect";\n'
                  f'redirect "{B}";\n'
                  'deleteheader "X-Added";\n'
                  'deleteheader "Subject";\n'
                  'keep;\n')
    proc = deliver_a(mailer, MSG, "-o", "sieve_extensions=+editheader")
    assert proc.returncode == 0, proc.stderr
    (fwd,) = mailer.sink.wait(1)
    head = fwd.data.split(b"\n\n")[0].split(b"\n")
    assert b"X-Added: before redirect" in head
    assert b"Subject: Hello there" in head
    assert fwd.data.endswith(b"\n\nbody line\n")
    (kept,) = mailer.inbox(mailer.users[0])
    assert b"X-Added" not in kept and b"Subject:" not in kept


def test_sieve_max_redirects_is_enforced(mailer):
    mailer.write_conf("sieve_max_redirects: 2\n")
    mailer.script(mailer.users[0], "".join(f'redirect "r{i}@example.net";\n'
                                           for i in range(3)))
    proc = deliver_a(mailer)
    assert proc.returncode == 0, proc.stderr
    # The run fails ("number of redirect actions exceeds policy limit"): nothing is
    # forwarded and the message is kept.
    assert mailer.sink.wait(1, timeout=0.5) == []
    assert len(mailer.inbox(mailer.users[0])) == 1


def test_redirect_envelope_from_setting(mailer):
    mailer.write_conf("sieve_redirect_envelope_from: recipient\n")
    mailer.script(mailer.users[0], f'redirect "{B}";\n')
    assert deliver_a(mailer).returncode == 0
    assert mailer.sink.wait(1)[0].sender == A


def test_redirect_loop_between_two_users_stops(mailer):
    a, b = mailer.users
    mailer.script(a, f'redirect "{B}";\n')
    mailer.script(b, f'redirect "{A}";\n')
    assert deliver_a(mailer).returncode == 0
    first = mailer.sink.wait(1)[0]
    # The MTA hands the forwarded copy to B ...
    proc = mailer.deliver(b, first.data, "-f", first.sender, "-r", B)
    assert proc.returncode == 0, proc.stderr
    second = mailer.sink.wait(2)[1]
    assert second.recipients == [A]
    # ... and B's forward back to A: A sees its own X-Sieve-Redirected-From.
    proc = mailer.deliver(a, second.data, "-f", second.sender, "-r", A)
    assert proc.returncode == 0, proc.stderr
    assert len(mailer.sink.wait(3, timeout=1)) == 2       # the loop stopped
    assert len(mailer.inbox(a)) == 1                       # and the message is kept
    assert "loop" in mailer.log(a)


def test_delivered_to_the_target_is_a_loop(mailer):
    mailer.script(mailer.users[0], f'redirect "{B}";\n')
    proc = deliver_a(mailer, b"Delivered-To: " + B.encode() + b"\n" + MSG)
    assert proc.returncode == 0, proc.stderr
    assert mailer.sink.wait(1, timeout=0.5) == []
    assert len(mailer.inbox(mailer.users[0])) == 1
    assert f"not forwarding to <{B}>: loop" in mailer.log(mailer.users[0])


def test_redirect_failure_with_nothing_saved_defers_and_the_retry_forwards(mailer):
    mailer.script(mailer.users[0], f'redirect "{B}";\n')
    mailer.sink.fail_data = "451 4.3.0 try later"
    proc = deliver_a(mailer)
    assert proc.returncode == 75 and b"451 4.3.0 try later" in proc.stderr
    assert mailer.inbox(mailer.users[0]) == []
    # The MTA's retry: the failed forward was not remembered, so it goes out now.
    mailer.sink.fail_data = None
    assert deliver_a(mailer).returncode == 0
    assert [m.recipients for m in mailer.sink.wait(1)] == [[B]]


def test_redirect_copy_failure_after_save_stands(mailer):
    mailer.script(mailer.users[0], f'require "copy";\nredirect :copy "{B}";\n')
    mailer.sink.fail_data = "451 4.3.0 try later"
    proc = deliver_a(mailer)
    assert proc.returncode == 0, proc.stderr
    assert len(mailer.inbox(mailer.users[0])) == 1
    assert "redirect action: " in mailer.log(mailer.users[0]) and \
        "451 4.3.0 try later (the message was saved)" in mailer.log(mailer.users[0])


# -- notify, duplicate ---------------------------------------------------------------

def test_notify_mailto(mailer):
    mailer.script(mailer.users[0], 'require "enotify";\n'
                  'notify :importance "1" :message "New mail" '
                  '"mailto:alert@example.net?body=check%20it";\n')
    assert deliver_a(mailer).returncode == 0
    (note,) = mailer.sink.wait(1)
    assert note.sender == "postmaster@example.org" and note.recipients == [
        "alert@example.net"]
    msg = parse(note.data)
    assert msg["Subject"] == "New mail" and msg["Importance"] == "High"
    assert msg["Auto-Submitted"] == f'auto-notified; owner-email="{A}"'
    assert msg.get_content() == "check it\n"
    assert len(mailer.inbox(mailer.users[0])) == 1


def test_notify_about_null_sender_mail_is_sent_from_null(mailer):
    mailer.script(mailer.users[0], 'require "enotify";\n'
                  'notify "mailto:alert@example.net";\n')
    assert deliver_a(mailer, sender="<>").returncode == 0
    (note,) = mailer.sink.wait(1)
    assert note.sender == "" and note.recipients == ["alert@example.net"]


def test_notify_not_for_auto_submitted_mail(mailer):
    mailer.script(mailer.users[0], 'require "enotify";\n'
                  'notify "mailto:alert@example.net";\n')
    message = MSG.replace(b"Subject:", b"Auto-Submitted: auto-notified\nSubject:")
    assert deliver_a(mailer, message).returncode == 0
    assert mailer.sink.wait(1, timeout=0.5) == []
    assert "not sending notification for auto-submitted message" in \
        mailer.log(mailer.users[0])


def test_sieve_duplicate_test_remembers_across_deliveries(mailer):
    mailer.script(mailer.users[0], 'require "duplicate";\n'
                  'if duplicate { discard; stop; }\n')
    assert deliver_a(mailer).returncode == 0
    assert deliver_a(mailer).returncode == 0
    assert len(mailer.inbox(mailer.users[0])) == 1
    assert "discarded by sieve" in mailer.log(mailer.users[0])


def test_no_new_privs_with_sendmail_path_defers_before_saving(mailer):
    user = mailer.users[0]
    mailer.write_conf("")
    with open(mailer.conf) as f:
        text = f.read()
    with open(mailer.conf, "w") as f:
        f.write("\n".join(l for l in text.split("\n") if not l.startswith("submission_")))
    mailer.script(user, VACATION)
    proc = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
         "--no-new-privs", os.path.join(mailer.installed, "mailslot-lda"),
         "-c", mailer.conf, "-f", "sender@example.com", "-r", A],
        input=MSG, capture_output=True,
        env={"PATH": "/usr/bin:/bin", "USER": user.pw_name, "HOME": user.pw_dir})
    assert proc.returncode == 75
    assert b"cannot work under no_new_privs" in proc.stderr
    assert mailer.inbox(user) == []


# -- bounded memory ------------------------------------------------------------------

MEASURE = ("import resource, subprocess, sys\n"
           "with open(sys.argv[1], 'rb') as f:\n"
           "    rc = subprocess.run(sys.argv[2:], stdin=f).returncode\n"
           "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def test_forwarding_a_large_message_keeps_memory_flat(mailer, tmp_path):
    """A 64 MiB message is forwarded from a spooled copy in chunks: the engine's peak
    RSS stays far below the message size (measured, not assumed)."""
    import sys
    user = mailer.users[0]
    mailer.script(user, f'redirect "{B}";\n')
    big = tmp_path / "big.eml"
    line = b"x" * 99 + b"\n"
    with open(big, "wb") as f:
        f.write(MSG)
        for _ in range(64 * 1024 * 1024 // len(line)):
            f.write(line)
    os.chmod(tmp_path, 0o755)
    os.chmod(big, 0o644)
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big), "setpriv", f"--reuid={user.pw_uid}",
         f"--regid={user.pw_gid}", "--init-groups", "--",
         os.path.join(mailer.installed, "mailslot-lda"), "-c", mailer.conf,
         "-f", "sender@example.com", "-r", A],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "USER": user.pw_name, "HOME": user.pw_dir})
    rc, peak_kib = map(int, out.stdout.split())
    assert rc == 0, out.stderr
    (fwd,) = mailer.sink.wait(1, timeout=60)
    assert len(fwd.data) > 64 * 1024 * 1024
    print(f"engine peak RSS forwarding 64 MiB: {peak_kib} KiB")
    assert peak_kib < 40 * 1024, f"peak RSS {peak_kib} KiB"
