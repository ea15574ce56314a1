"""Outgoing mail through Postfix's real sendmail (Debian's package), end to end.

A private Postfix instance of this suite's own (its own directory, never
/etc/postfix, nothing listening but its own master) relays everything it is given
to the SMTP sink on 127.0.0.1, so the test sees what Postfix's sendmail and
postdrop queued for the engine: the envelope (MAIL FROM, RCPT TO) and the headers.

Postfix's postdrop is set-gid postdrop; a set-gid program trusts a non-default
configuration directory (MAIL_CONFIG) only when /etc/postfix/main.cf lists it,
and the tests leave /etc/postfix alone. So the engine runs as this suite's user
with postdrop as its real gid (postdrop is then not elevated and reads MAIL_CONFIG,
which reaches sendmail through -k). On a real server sendmail uses the default
configuration and none of this is needed.
"""

import email
import email.policy
import grp
import os
import pwd
import shutil
import subprocess
import time

import pytest

from tests.support import needs_root, world_tempdir
from tests.postfix.postfixtest import base_master_cf
from tests.send.smtpsink import SmtpSink

pytestmark = [needs_root, pytest.mark.skipif(
    not os.access("/usr/sbin/postfix", os.X_OK), reason="Postfix is not installed")]

MSG = (b"From: Sender Name <sender@example.com>\nTo: mslt-snd1@example.org\n"
       b"Subject: Hello there\nMessage-ID: <pf1@example.com>\n\nbody line\n")
A = "mslt-snd1@example.org"


@pytest.fixture
def postfix(mailer):
    base = world_tempdir("mailslot-send-postfix-")
    etc, spool, data = (os.path.join(base, d) for d in ("etc", "spool", "data"))
    for d in (etc, spool, data):
        os.mkdir(d, 0o755)
    os.chown(data, pwd.getpwnam("postfix").pw_uid, -1)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(f"""\
# Private instance of tests/send: no listener, everything relayed to the test's sink.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.send.mailslot.test
mydomain = send.mailslot.test
myorigin = send.mailslot.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
relayhost = [127.0.0.1]:{mailer.sink.port}
smtp_dns_support_level = disabled
alias_maps =
alias_database =
maillog_file = {data}/maillog
maillog_file_prefixes = {base}
queue_run_delay = 1s
""")
    with open(os.path.join(etc, "master.cf"), "w") as f:
        # No listener: sendmail/postdrop queue, smtp relays to the sink.
        f.write(base_master_cf([
            "smtp      unix  -       -       n       -       -       smtp",
            "relay     unix  -       -       n       -       -       smtp"]))
    subprocess.run(["postfix", "-c", etc, "check"], check=True, capture_output=True)
    subprocess.run(["postfix", "-c", etc, "start"], check=True, capture_output=True)
    try:
        yield etc
    finally:
        try:
            with open(os.path.join(spool, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        subprocess.run(["postfix", "-c", etc, "stop"], capture_output=True)
        deadline = time.monotonic() + 20
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)        # our own master, by the pid it wrote
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)


def deliver(mailer, etc, *args, message=MSG):
    user = mailer.users[0]
    postdrop = grp.getgrnam("postdrop").gr_gid
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={postdrop}", "--clear-groups",
         os.path.join(mailer.installed, "mailslot-lda"), "-c", mailer.conf, "-k",
         "-f", "sender@example.com", "-r", A, *args],
        input=message, capture_output=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "USER": user.pw_name, "HOME": user.pw_dir,
             "MAIL_CONFIG": etc})


def use_sendmail(mailer):
    mailer.write_conf("")
    with open(mailer.conf) as f:
        text = f.read()
    with open(mailer.conf, "w") as f:
        f.write("".join(l + "\n" for l in text.split("\n")
                        if l and not l.startswith("submission_"))
                + "sendmail_path: /usr/sbin/sendmail\n")


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_reject_goes_out_through_postfix_sendmail_with_a_null_sender(mailer, postfix):
    use_sendmail(mailer)
    mailer.script(mailer.users[0], 'require "reject";\nreject "Go away.";\n')
    proc = deliver(mailer, postfix)
    assert proc.returncode == 0, proc.stderr
    (got,) = mailer.sink.wait(1, timeout=60)
    assert got.sender == "" and got.recipients == ["sender@example.com"]
    msg = parse(got.data)
    assert msg["Received"] is not None            # Postfix's pickup and cleanup
    assert msg["Subject"] == "Rejected: Hello there"
    assert msg["Auto-Submitted"] == "auto-replied (rejected)"
    assert msg.get_content_type() == "multipart/report"
    report = msg.get_payload()[1].get_payload()[0]
    assert report["Disposition"] == "automatic-action/MDN-sent-automatically; deleted"


def test_vacation_and_redirect_through_postfix_sendmail(mailer, postfix):
    use_sendmail(mailer)
    mailer.script(mailer.users[0], 'require ["vacation", "copy"];\n'
                  f'vacation :addresses ["{A}"] "Away.";\n'
                  'redirect :copy "fwd@example.net";\n')
    proc = deliver(mailer, postfix)
    assert proc.returncode == 0, proc.stderr
    got = {m.recipients[0]: m for m in mailer.sink.wait(2, timeout=60)}
    assert set(got) == {"sender@example.com", "fwd@example.net"}
    reply, fwd = got["sender@example.com"], got["fwd@example.net"]
    assert reply.sender == "" and parse(reply.data)["Auto-Submitted"] == \
        "auto-replied (vacation)"
    assert fwd.sender == "sender@example.com"
    assert parse(fwd.data)["X-Sieve-Redirected-From"] == A
    assert len(mailer.inbox(mailer.users[0])) == 1
