"""Case (5): a delivery the engine cannot complete is deferred by Postfix, not bounced.

v1's Maildir is made read-only; the engine fails to create its temp file and exits
75 (EX_TEMPFAIL); Postfix keeps the message in its deferred queue with the engine's
one-line reason, sends no bounce, and delivers it once the Maildir is writable again.
"""
import os

MARK = b"X-Test-Case: tempfail-5"


def test_readonly_maildir_defers_then_delivers(postfix):
    v1 = postfix.virtual[0]
    maildir = os.path.join(v1.home, "Maildir")
    # Make sure the Maildir exists (an earlier case may have created it already).
    postfix.send("sender@example.net", [v1.address], b"Subject: prime\n\nprime\n")
    assert postfix.wait_for_message(maildir, b"prime"), postfix.log()[-3000:]
    dirs = [maildir] + [os.path.join(maildir, d) for d in ("tmp", "new", "cur")]
    for d in dirs:
        os.chmod(d, 0o500)
    try:
        sender = f"{postfix.system_user.pw_name}@sys.mailslot.test"
        postfix.send(sender, [v1.address],
                     b"Subject: cannot be saved now\n" + MARK + b"\n\nLater.\n")
        deferred = postfix.wait_for_log(
            rf"pipe\[\d+\]: (\w+): to=<{v1.address}>, relay=mailslot,.*dsn=4\.\d\.\d, "
            r"status=deferred \(temporary failure\. Command output: mailslot-lda: ([^)]*)")
        assert deferred, postfix.log()[-3000:]
        queue_id, reason = deferred.group(1), deferred.group(2)
        assert "Permission denied" in reason
        assert queue_id in postfix.deferred()
        assert f"{queue_id}: to=<{v1.address}>" in postfix.log()
        assert "status=bounced" not in postfix.log()
        assert postfix.all_messages(MARK) == []
    finally:
        for d in dirs:
            os.chmod(d, 0o700)
    # Repaired: the next queue run delivers it; nothing was lost.
    postfix.flush()
    found = postfix.wait_for_message(maildir, MARK)
    assert len(found) == 1, postfix.log()[-3000:]
    assert postfix.wait_for_log(rf"{queue_id}: to=<{v1.address}>.*status=sent")
    assert "status=bounced" not in postfix.log()


def test_missing_home_defers_with_what_to_do(postfix):
    # A virtual user whose home is gone, below a directory only root may write: the
    # relay lets the engine decide (chdir ENOENT), the engine says what is missing
    # and what to do, Postfix keeps the mail; once the home is back it is delivered.
    v2 = postfix.virtual[1]
    moved = v2.home + ".away"
    os.rename(v2.home, moved)
    marker = b"X-Test-Case: missing-home"
    try:
        postfix.send("sender@example.net", [v2.address],
                     b"Subject: no home yet\n" + marker + b"\n\nLater.\n")
        deferred = postfix.wait_for_log(
            rf"pipe\[\d+\]: (\w+): to=<{v2.address}>, relay=mailslot,.*dsn=4\.\d\.\d, "
            r"status=deferred \(temporary failure\. Command output: mailslot-lda: ([^)]*)")
        assert deferred, postfix.log()[-3000:]
        queue_id, reason = deferred.group(1), deferred.group(2)
        assert reason.startswith(f"home {v2.home} does not exist (create it owned by "
                                 f"uid {v2.uid}"), reason
        assert queue_id in postfix.deferred()
        assert not os.path.exists(v2.home)
    finally:
        os.rename(moved, v2.home)
    postfix.flush()
    assert len(postfix.wait_for_message(os.path.join(v2.home, "Maildir"), marker)) == 1, \
        postfix.log()[-3000:]
    assert postfix.wait_for_log(rf"{queue_id}: to=<{v2.address}>.*status=sent")
