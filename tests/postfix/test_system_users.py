"""Case (1): a system user, through local(8)'s mailbox_command.

Postfix's local(8) runs the shipped main.cf-system-users mailbox_command as the
recipient; mailslot-lda delivers as that user, without the relay.

With the mbox storage (MBOX_AVAILABLE) the mail goes where system mail goes on
Debian: the user's mbox in a spool directory that only the mail group may write
(root:mail 2775), locked through mailslot-dotlock (root:mail 2755, built for that
directory). Until the mbox storage lands, the same delivery goes into ~/Maildir.
"""
import os
import stat

import pytest

from tests.postfix.postfixtest import MBOX_AVAILABLE, SYSTEM_DOMAIN, SYSTEM_USER

MARK = b"X-Test-Case: system-user-1"
MSG = (b"From: sender@example.net\r\nTo: " + SYSTEM_USER.encode() + b"@"
       + SYSTEM_DOMAIN.encode() + b"\r\nSubject: local delivery\r\n" + MARK
       + b"\r\n\r\nThrough local(8) and mailbox_command.\r\n")


def _wait_for_spool(postfix, marker):
    import time
    path = os.path.join(postfix.mail_spool, SYSTEM_USER)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(path) and marker in open(path, "rb").read():
            return path
        time.sleep(0.2)
    return None


@pytest.mark.skipif(not MBOX_AVAILABLE, reason="the mbox storage has not landed yet "
                    "(pyside/mailslot/storage/mbox.py); the Maildir case below runs instead")
def test_local_delivery_appends_to_the_spool_mbox_as_the_user(postfix):
    postfix.send("sender@example.net", [f"{SYSTEM_USER}@{SYSTEM_DOMAIN}"], MSG)
    path = _wait_for_spool(postfix, MARK)
    assert path, postfix.log()[-3000:]
    user = postfix.system_user
    st = os.stat(path)
    assert st.st_uid == user.pw_uid
    assert stat.S_IMODE(st.st_mode) & 0o007 == 0
    data = open(path, "rb").read()
    assert data.startswith(b"From sender@example.net ")
    assert b"\r\n" not in data
    # The dotlock is gone once the delivery is over.
    assert not os.path.exists(path + ".lock")


@pytest.mark.skipif(MBOX_AVAILABLE, reason="system users get mbox in the spool directory")
def test_local_delivery_lands_in_the_users_maildir_as_the_user(postfix):
    postfix.send("sender@example.net", [f"{SYSTEM_USER}@{SYSTEM_DOMAIN}"], MSG)
    user = postfix.system_user
    found = postfix.wait_for_message(os.path.join(user.pw_dir, "Maildir"), MARK)
    assert len(found) == 1, postfix.log()[-3000:]
    st = os.stat(found[0])
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    body = open(found[0], "rb").read()
    # Postfix's local(8) adds Delivered-To:; CRLF from SMTP is stored as LF.
    assert body.startswith(b"Return-Path: <sender@example.net>\n")
    assert b"Delivered-To: " + SYSTEM_USER.encode() in body
    assert b"\r\n" not in body


def test_local_delivery_is_logged_by_both(postfix):
    postfix.send("sender@example.net", [f"{SYSTEM_USER}@{SYSTEM_DOMAIN}"],
                 MSG.replace(b"Subject: local delivery", b"Subject: logged"))
    assert postfix.wait_for_log(
        rf"local\[\d+\]: \w+: to=<{SYSTEM_USER}@{SYSTEM_DOMAIN}>.*status=sent "
        r"\(delivered to command: \S+/mailslot-lda")
    log = os.path.join(postfix.system_user.pw_dir, "mailslot.log")
    assert "saved mail to INBOX" in open(log).read()
