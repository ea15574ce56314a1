"""Case (1): a system user, through local(8)'s mailbox_command.

Postfix's local(8) runs the shipped main.cf-system-users mailbox_command as the
recipient; mailslot-lda delivers as that user, without the relay.

mbox in a spool directory with the lock group (mailslot-dotlock) comes with the mbox
storage; until then this case delivers into the Maildir under the user's home.
"""
import os
import stat

from tests.postfix.postfixtest import SYSTEM_DOMAIN, SYSTEM_USER

MARK = b"X-Test-Case: system-user-1"
MSG = (b"From: sender@example.net\r\nTo: " + SYSTEM_USER.encode() + b"@"
       + SYSTEM_DOMAIN.encode() + b"\r\nSubject: local delivery\r\n" + MARK
       + b"\r\n\r\nThrough local(8) and mailbox_command.\r\n")


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
