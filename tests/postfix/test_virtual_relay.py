"""Case (2): two virtual users with different uids, through the setuid relay.

The shipped master.cf-virtual pipe transport runs mailslot-relay as the pipe user
(primary group: the relay's caller group); the relay resolves each recipient from
the passwd-file, drops to its uid and runs the engine. One message to both users is
two pipe deliveries (mailslot_destination_recipient_limit = 1).
"""
import os
import stat

MARK = b"X-Test-Case: virtual-relay-2"


def test_each_virtual_user_gets_the_message_as_its_own_uid(postfix):
    v1, v2 = postfix.virtual
    msg = (b"From: sender@example.net\nTo: v1, v2\nSubject: two uids\n" + MARK
           + b"\n\nOne message, two recipients, two uids.\n")
    postfix.send("sender@example.net", [v1.address, v2.address], msg)
    for user in (v1, v2):
        found = postfix.wait_for_message(os.path.join(user.home, "Maildir"), MARK)
        assert len(found) == 1, (user.name, postfix.log()[-3000:])
        st = os.stat(found[0])
        assert (st.st_uid, st.st_gid) == (user.uid, user.gid)
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0
        assert open(found[0], "rb").read().endswith(msg.split(b"\n\n", 1)[1])
    # Nowhere else: not in the other user's mailbox, not in the system user's.
    assert len(postfix.all_messages(MARK)) == 2


def test_pipe_delivery_goes_through_the_relay(postfix):
    v1 = postfix.virtual[0]
    postfix.send("sender@example.net", [v1.address],
                 b"Subject: relay log\nX-Test-Case: relay-log\n\nbody\n")
    assert postfix.wait_for_log(
        rf"pipe\[\d+\]: \w+: to=<{v1.address}>, relay=mailslot,.*status=sent")
    log = open(os.path.join(v1.home, "mailslot.log")).read()
    # The engine ran as v1 (the relay's promise checked) and logged as v1.
    assert f"lda({v1.address})" in log
