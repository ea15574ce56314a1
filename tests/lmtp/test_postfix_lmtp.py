"""Real Postfix (Debian's packages) delivering over LMTP to mailslot-lmtpd.

The shipped packaging/examples/postfix/main.cf-lmtp, with the test's socket and
domain substituted, in a private Postfix instance of this file's own (its own
directories, a free port on 127.0.0.1; the system's /etc/postfix is never read):
reject_unverified_recipient makes Postfix probe each RCPT through the LMTP transport,
so an unknown user is refused during SMTP with 550 5.1.1 and a known user's mail
is delivered.
"""

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

from tests.support import REPO, needs_root, world_tempdir
from tests.lmtp.lmtpsite import Site
from tests.postfix.postfixtest import base_master_cf

pytestmark = [needs_root,
              pytest.mark.skipif(not os.path.exists("/usr/lib/postfix/sbin/lmtp"),
                                 reason="Postfix is not installed (make deps-test)")]

DOMAIN = "lmtp.mailslot.test"
EXAMPLE = os.path.join(REPO, "packaging", "examples", "postfix", "main.cf-lmtp")


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def example_lines(socket_path):
    """The shipped example, comments dropped, with this test's socket and domain."""
    with open(EXAMPLE) as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    out = "\n".join(lines).replace("/run/mailslot/lmtp", socket_path)
    return out.replace("example.org", DOMAIN)


@pytest.fixture
def postfix():
    site = Site.create()
    site.start()
    base = world_tempdir("mailslot-pf-lmtp-")
    etc, spool, data = (os.path.join(base, d) for d in ("etc", "spool", "data"))
    for d in (etc, spool, data):
        os.mkdir(d, 0o755)
    pf = pwd.getpwnam("postfix")
    os.chown(data, pf.pw_uid, pf.pw_gid)
    port = _free_port()
    maillog = os.path.join(data, "maillog")
    main = f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mailslot.test
mydomain = mailslot.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
default_transport = error:outbound mail is disabled in this test
relay_transport = error:outbound mail is disabled in this test
smtp_dns_support_level = disabled
maillog_file = {maillog}
maillog_file_prefixes = {base}
address_verify_map = btree:{data}/verify_cache
{example_lines(site.socket)}
"""
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(main)
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write(base_master_cf([
            f"127.0.0.1:{port} inet n - n - - smtpd",
            "lmtp      unix  -       -       n       -       -       lmtp"]))
    subprocess.run(["postfix", "-c", etc, "start"], check=True, capture_output=True,
                   timeout=60)
    deadline = time.monotonic() + 30
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                s.noop()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    yield site, port, maillog
    subprocess.run(["postfix", "-c", etc, "stop"], capture_output=True, timeout=60)
    time.sleep(0.5)
    site.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def rcpt(port, address, attempts=10):
    """RCPT's reply through Postfix's smtpd (a 450 while the probe is still out)."""
    for _ in range(attempts):
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            s.ehlo("client.mailslot.test")
            s.mail("sender@elsewhere.test")
            code, text = s.rcpt(address)
        if code != 450:
            return code, text.decode()
        time.sleep(1)
    return code, text.decode()


def test_unknown_user_refused_during_smtp_known_user_delivered(postfix):
    site, port, maillog = postfix
    code, text = rcpt(port, f"nosuch@{DOMAIN}")
    assert code == 550, text
    assert text.startswith("5.1.1 ") and "undeliverable address" in text
    assert "User doesn't exist" in text            # mailslot-lmtpd's reply, quoted
    marker = b"X-Test-Marker: lmtp-postfix-1"
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.mailslot.test")
        s.sendmail("sender@elsewhere.test", [f"alice@{DOMAIN}"],
                   b"From: sender@elsewhere.test\r\nSubject: via postfix\r\n" + marker
                   + b"\r\n\r\nhello over LMTP\r\n")
    deadline = time.monotonic() + 30
    while not site.messages("alice") and time.monotonic() < deadline:
        time.sleep(0.2)
    (stored,) = site.messages("alice")
    assert marker in stored and stored.endswith(b"\n\nhello over LMTP\n")
    assert stored.startswith(b"Return-Path: <sender@elsewhere.test>\n"
                             + f"Delivered-To: alice@{DOMAIN}\n".encode())
    with open(maillog) as f:
        log = f.read()
    assert "status=sent (250 2.0.0 <alice@" in log
