"""Case (1): a system user, through local(8)'s mailbox_command.

Postfix's local(8) runs the shipped main.cf-system-users mailbox_command as the
recipient; mailslot-lda delivers as that user, without the relay.

The mail goes where system mail goes on Debian: the user's mbox in a spool
directory that only the mail group may write (root:mail 2775), locked through
mailslot-dotlock (root:mail 2755, built for that directory).
"""
import os
import stat

from tests.postfix.postfixtest import SYSTEM_DOMAIN, SYSTEM_USER

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
    # Postfix's local(8) adds Delivered-To:; CRLF from SMTP is stored as LF.
    assert b"\nDelivered-To: " + SYSTEM_USER.encode() in data
    # The dotlock is gone once the delivery is over.
    assert not os.path.exists(path + ".lock")


def test_local_delivery_is_logged_by_both(postfix):
    postfix.send("sender@example.net", [f"{SYSTEM_USER}@{SYSTEM_DOMAIN}"],
                 MSG.replace(b"Subject: local delivery", b"Subject: logged"))
    assert postfix.wait_for_log(
        rf"local\[\d+\]: \w+: to=<{SYSTEM_USER}@{SYSTEM_DOMAIN}>.*status=sent "
        r"\(delivered to command: \S+/mailslot-lda")
    log = os.path.join(postfix.system_user.pw_dir, "mailslot.log")
    assert "saved mail to INBOX" in open(log).read()


def test_root_mail_through_local_says_to_alias_root(postfix):
    # local(8) runs mailbox_command for root as default_privs (nobody, home
    # /nonexistent): the engine defers with what to do instead of a bare EACCES or
    # "cannot open the log". (A real site aliases root, docs/deployment.md.)
    postfix.send("sender@example.net", [f"root@{SYSTEM_DOMAIN}"],
                 b"Subject: for the postmaster\nX-Test-Case: root-mail\n\nHello root.\n")
    deferred = postfix.wait_for_log(
        rf"(?m)local\[\d+\]: (\w+): to=<root@{SYSTEM_DOMAIN}>, relay=local,.*status=deferred "
        r"\(temporary failure\. Command output: mailslot-lda: (.*)\)$")
    assert deferred, postfix.log()[-3000:]
    queue_id, reason = deferred.group(1), deferred.group(2)
    try:
        assert reason.startswith("home /nonexistent of nobody (uid "), reason
        assert "alias root to a real user in /etc/aliases" in reason
    finally:
        # Not retried for ever by the rest of the session.
        postfix.postfix_tool("postsuper", "-d", queue_id)
