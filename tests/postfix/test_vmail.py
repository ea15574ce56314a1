"""Recipe 3: one vmail uid, Postfix's pipe straight into mailslot-lda (no relay).

The shipped master.cf-vmail line (as the service vmailslot, for its own domain)
runs the engine as the vmail user; the passwd-file answers the vmail uid for the
address, the engine checks it is the uid it runs as, and files the message.
"""
import os
import stat

MARK = b"X-Test-Case: vmail-3"


def test_vmail_pipe_delivers_as_the_vmail_uid(postfix):
    vm = postfix.vmail
    msg = b"From: sender@example.net\nTo: vm1\nSubject: vmail\n" + MARK + b"\n\nOne uid.\n"
    postfix.send("sender@example.net", [vm.address], msg)
    found = postfix.wait_for_message(os.path.join(vm.home, "Maildir"), MARK)
    assert len(found) == 1, postfix.log()[-3000:]
    st = os.stat(found[0])
    assert (st.st_uid, st.st_gid) == (vm.uid, vm.gid)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert postfix.wait_for_log(rf"to=<{vm.address}>, relay=vmailslot,.*status=sent")


def test_vmail_extension_and_null_sender(postfix):
    vm = postfix.vmail
    address = f"{vm.name}+Lists@{vm.address.split('@')[1]}"
    postfix.send("", [address], b"Subject: bounce\nX-Test-Case: vmail-ext\n\nx\n")
    found = postfix.wait_for_message(os.path.join(vm.home, "Maildir", ".lists"), b"vmail-ext")
    assert len(found) == 1, postfix.log()[-3000:]
    # null_sender= in the example: the bounce is stored with Return-Path: <>.
    assert open(found[0], "rb").read().startswith(b"Return-Path: <>\n")
