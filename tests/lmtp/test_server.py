"""mailslot-lmtpd end to end: a real daemon, real sockets, real Maildirs.

The client reads every reply (tests/lmtp/lmtpsite.Client), so "one reply per accepted
recipient" is checked on the wire, for every outcome in one transaction.
"""

import os
import re
import signal
import time

import pytest

from tests.support import needs_root
from tests.lmtp.lmtpsite import (Client, Site, assert_alice_over_the_limit,
                                  assert_sigterm_drains)

pytestmark = needs_root

FILLER = ("x" * 79 + "\n") * 25
MSG = b"From: a@example.org\nSubject: hello\nMessage-ID: <m1@example.org>\n\nbody\n.dot\n"


@pytest.fixture
def site():
    s = Site.create()
    s.start()
    yield s
    s.cleanup()


def test_mixed_outcomes_one_reply_per_recipient(site):
    c = Client.unix(site.socket)
    greeting, lhlo = c.hello()
    assert greeting.startswith("220 lmtp.test ")
    assert lhlo == ["250-lmtp.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES",
                    "250-8BITMIME", "250-SIZE 204800", "250-CHUNKING", "250 SMTPUTF8"]
    rcpt, final = c.transaction("s@example.org", ["alice@example.org", "nosuch@example.org",
                                                  "carol@example.org", "broken@example.org",
                                                  "bob+lists@example.org"], MSG)
    assert rcpt == ["250 2.1.5 OK",
                    "550 5.1.1 <nosuch@example.org> User doesn't exist: nosuch@example.org",
                    "250 2.1.5 OK", "250 2.1.5 OK", "250 2.1.5 OK"]
    assert len(final) == 4
    assert final[0] == "250 2.0.0 <alice@example.org> Saved"
    assert final[1].startswith("550 5.7.1 <carol@example.org> ")      # Sieve ereject
    assert final[2].startswith("451 4.") and "<broken@example.org>" in final[2]
    assert final[3] == "250 2.0.0 <bob+lists@example.org> Saved"
    c.send(b"QUIT\r\n")
    assert c.reply().startswith("221 2.0.0")
    for name in ("alice", "bob"):
        (stored,) = site.messages(name)
        # Several recipients: Return-Path and a Received without "for", no Delivered-To.
        head, _, rest = stored.partition(b"From: a@example.org\n")
        assert rest == MSG[len(b"From: a@example.org\n"):]
        assert re.match(rb"Return-Path: <s@example.org>\nReceived: from client.test\n"
                        rb"\tby lmtp.test with LMTP\n\tid [A-Za-z0-9+/]{22}\n"
                        rb"\t\(envelope-from <s@example.org>\); ", head), head
        assert b"Delivered-To" not in head and b"for <" not in head
    assert site.messages("carol") == [] and site.maildir("broken") == []


def test_one_recipient_gets_delivered_to_and_received_for(site):
    c = Client.tcp(site.port)
    c.hello()
    _, final = c.transaction("", ["alice@example.org"], MSG)
    assert final == ["250 2.0.0 <alice@example.org> Saved"]
    (stored,) = site.messages("alice")
    assert re.match(rb"Return-Path: <>\nDelivered-To: alice@example.org\n"
                    rb"Received: from client.test \(\[127.0.0.1\]\)\n\tby lmtp.test "
                    rb"with LMTP\n\tid [A-Za-z0-9+/]{22}\n\t\(envelope-from <>\)\n"
                    rb"\tfor <alice@example.org>; ", stored), stored


def test_pipelined_transactions_bdat_and_big_message(site):
    c = Client.unix(site.socket)
    c.hello()
    big = b"Subject: big\n\n" + b"".join(b"line %06d ..........\n" % i for i in range(7000))
    # Two whole transactions in one write; then BDAT in chunks; all replies read.
    data = b""
    for rcpt in ("alice", "bob"):
        data += (f"MAIL FROM:<s@x>\r\nRCPT TO:<{rcpt}@example.org>\r\nDATA\r\n".encode()
                 + b"Subject: p\r\n\r\n..x\r\n.\r\n")
    c.send(data)
    assert c.replies(8) == ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK",
                            "250 2.0.0 <alice@example.org> Saved",
                            "250 2.1.0 OK", "250 2.1.5 OK", "354 OK",
                            "250 2.0.0 <bob@example.org> Saved"]
    _, final = c.transaction("s@x", ["alice@example.org", "bob@example.org"], big,
                             bdat=50000)
    assert final == ["250 2.0.0 <alice@example.org> Saved", "250 2.0.0 <bob@example.org> Saved"]
    # Not [0]: new/ sorted by name is not delivery order (M<usecs> is not padded,
    # so M123456 of a later message sorts before M99999 of an earlier one).
    assert sum(m.endswith(b"\n\n.x\n") for m in site.messages("alice")) == 1
    for name in ("alice", "bob"):
        assert any(m.endswith(big[len(b"Subject: big\n"):]) and b"Subject: big" in m
                   for m in site.messages(name))


def test_over_size_and_over_long_line_answer_each_recipient(site):
    c = Client.unix(site.socket)
    c.hello()
    _, final = c.transaction("s@x", ["alice@example.org", "bob@example.org"],
                             b"Subject: x\n\n" + b"y" * 70 + b"\n" * 3000 + b"z\n" * 100000)
    assert final == [f"552 5.3.4 <{r}@example.org> Message size exceeds fixed maximum "
                     "message size" for r in ("alice", "bob")]
    _, final = c.transaction("s@x", ["alice@example.org", "bob@example.org"],
                             b"Subject: x\n\n" + b"w" * 1200 + b"\n")
    assert [f[:10] for f in final] == ["554 5.6.0 "] * 2
    # The connection is still good.
    _, final = c.transaction("s@x", ["alice@example.org"], MSG)
    assert final == ["250 2.0.0 <alice@example.org> Saved"]
    assert len(site.messages("alice")) == 1 and site.messages("bob") == []


def test_sigterm_finishes_the_transaction_under_way(site):
    busy, idle = Client.unix(site.socket), Client.unix(site.socket)
    busy.hello()
    idle.hello()
    assert_sigterm_drains(site, busy, idle)


def test_sigterm_does_not_wait_for_a_transaction_without_recipients(site):
    """MAIL accepted, the only RCPT refused, DATA answered 503: the transaction can
    deliver nothing, so a SIGTERM closes it at once (421) instead of waiting for the
    client until DRAIN_TIMEOUT; a real transaction beside it still finishes."""
    stuck, busy = Client.unix(site.socket), Client.unix(site.socket)
    stuck.hello()
    busy.hello()
    stuck.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<nosuch@example.org>\r\nDATA\r\n")
    replies = stuck.replies(3)
    assert replies[1].startswith("550 5.1.1") and replies[2].startswith("503")
    busy.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    assert busy.replies(3)[-1] == "354 OK"
    site.signal(signal.SIGTERM)
    assert stuck.reply().startswith("421 4.3.2")
    busy.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert busy.reply() == "250 2.0.0 <alice@example.org> Saved"
    assert busy.reply().startswith("421 4.3.2")
    assert site.proc.wait(20) == 0
    assert len(site.messages("alice")) == 1


def test_sighup_reloads_settings(site):
    c = Client.unix(site.socket)
    c.hello()
    with open(site.conf, "a") as f:
        f.write("lmtp_save_to_detail_mailbox: yes\n")
    site.signal(signal.SIGHUP)
    deadline = time.time() + 10
    while "settings reloaded" not in site.stderr() and time.time() < deadline:
        time.sleep(0.05)
    assert "settings reloaded" in site.stderr()
    _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
    assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
    assert len(site.messages("bob", ".lists")) == 1 and site.messages("bob") == []
    # A settings file that no longer loads: logged, the old settings stay.
    with open(site.conf, "a") as f:
        f.write("no_such_setting: 1\n")
    site.signal(signal.SIGHUP)
    while "reload failed" not in site.stderr() and time.time() < deadline + 10:
        time.sleep(0.05)
    assert "reload failed" in site.stderr()
    _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
    assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
    assert len(site.messages("bob", ".lists")) == 2


def test_refuses_root():
    import subprocess
    import sys
    from tests.support import REPO
    proc = subprocess.run([sys.executable, "-I", "-c",
                           "import sys; sys.path.insert(0, sys.argv[1]); "
                           "from mailslot.lmtp.server import main; sys.exit(main([]))",
                           os.path.join(REPO, "pyside")], capture_output=True, timeout=30)
    assert proc.returncode == 75
    assert b"refusing to run as root" in proc.stderr


def test_sigkill_under_load_loses_nothing_acknowledged(site):
    """4 clients deliver as fast as they can; the daemon is SIGKILLed mid-run. Every
    message that got its 250 is in the Maildir, whole; nothing partial is visible."""
    import threading
    acked, stop = [], threading.Event()

    def client(n):
        try:
            c = Client.unix(site.socket)
            c.hello()
            i = 0
            while not stop.is_set():
                marker = f"m-{n}-{i}"
                body = (f"Subject: {marker}\n\n" + FILLER + f"end {marker}\n").encode()
                _, final = c.transaction("s@x", ["alice@example.org", "bob@example.org"],
                                         body)
                for address, reply in zip(("alice", "bob"), final):
                    if reply.startswith("250 "):
                        acked.append((address, marker))
                i += 1
        except (OSError, EOFError, AssertionError):
            return          # the kill: a transaction in flight is simply not acked

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(acked) < 60 and time.time() < deadline:
        time.sleep(0.05)
    site.proc.kill()
    stop.set()
    for t in threads:
        t.join(30)
    site.proc.wait()
    assert len(acked) >= 60
    for name in ("alice", "bob"):
        stored = {}
        for m in site.messages(name):
            marker = m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].decode()
            # Whole: the body is there to its last line.
            assert m.endswith((FILLER + f"end {marker}\n").encode())
            stored[marker] = True
        missing = [mk for who, mk in acked if who == name and mk not in stored]
        assert missing == []


def test_systemd_socket_activation(tmp_path):
    """LISTEN_PID/LISTEN_FDS: the daemon serves the socket it is handed (fd 3) and
    ignores lmtp_listen."""
    s = Site.create()
    try:
        path = s.start_activated()
        deadline = time.time() + 20
        while True:
            try:
                c = Client.unix(path)
                break
            except OSError:
                assert time.time() < deadline, s.stderr()
                time.sleep(0.05)
        assert c.hello()[0].startswith("220 lmtp.test")
        _, final = c.transaction("s@x", ["alice@example.org"], MSG)
        assert final == ["250 2.0.0 <alice@example.org> Saved"]
        assert not os.path.exists(s.socket)          # lmtp_listen was not used
    finally:
        s.stop()
        s.cleanup()


def test_user_concurrency_limit():
    """lmtp_user_concurrency_limit: 1 and one delivery to alice under way (her
    mailbox lock is held by us): a second RCPT for alice is 451 4.3.0, bob is fine."""
    s = Site.create(extra="lmtp_user_concurrency_limit: 1\n",
                    location="mbox:~/mail:INBOX=~/mail/inbox")
    try:
        for name in ("alice", "bob"):
            os.makedirs(os.path.join(s.home(name), "mail"))
            os.chown(os.path.join(s.home(name), "mail"), s.uid, s.uid)
        s.start()
        # Hold alice's dotlock so her delivery waits inside the core.
        lock = os.path.join(s.home("alice"), "mail", "inbox.lock")
        with open(lock, "w") as f:
            f.write("0")
        first = Client.unix(s.socket)
        first.hello()
        first.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert first.replies(3)[-1] == "354 OK"
        first.send(b"Subject: one\r\n\r\n1\r\n.\r\n")
        second = Client.unix(s.socket)
        second.hello()
        assert_alice_over_the_limit(second)
        os.unlink(lock)
        assert first.reply() == "250 2.0.0 <alice@example.org> Saved"
    finally:
        s.cleanup()


def test_recipients_of_one_transaction_are_delivered_side_by_side():
    """alice's mbox is locked (her delivery waits); bob's and carol's copies, later in
    the same transaction, are written meanwhile; the replies still come in RCPT order."""
    s = Site.create(location="mbox:~/mail:INBOX=~/mail/inbox")
    try:
        with open(os.path.join(s.home("carol"), ".dovecot.sieve"), "wb") as f:
            f.write(b"keep;\n")
        for name in ("alice", "bob", "carol"):
            os.makedirs(os.path.join(s.home(name), "mail"))
            os.chown(os.path.join(s.home(name), "mail"), s.uid, s.uid)
        s.start()
        lock = os.path.join(s.home("alice"), "mail", "inbox.lock")
        with open(lock, "w") as f:
            f.write("0")
        c = Client.unix(s.socket)
        c.hello()
        c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>"
               b"\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
        assert c.replies(5)[-1] == "354 OK"
        c.send(b"Subject: fan-out\r\n\r\nhello\r\n.\r\n")
        deadline = time.time() + 20
        others = [os.path.join(s.home(n), "mail", "inbox") for n in ("bob", "carol")]
        while not all(os.path.exists(p) and os.path.getsize(p) for p in others):
            assert time.time() < deadline, s.stderr()
            time.sleep(0.05)
        released = time.time()
        os.unlink(lock)
        assert c.replies(3) == [f"250 2.0.0 <{n}@example.org> Saved"
                                for n in ("alice", "bob", "carol")]
        # alice's copy was written only after the lock went; the others before.
        alice = os.path.join(s.home("alice"), "mail", "inbox")
        assert os.path.getmtime(alice) >= released - 0.01
        assert all(os.path.getmtime(p) < released for p in others)
    finally:
        s.cleanup()


def test_another_uid_without_a_relay_is_refused_at_rcpt():
    """Without lmtp_relay_path the server writes only as its own uid: a user of
    another uid is 451 at RCPT (the MTA keeps the mail), never a bounce."""
    s = Site.create(users_extra="other::%UID%1:%UID%1::%TOP%/home-other::\n")
    try:
        s.start()
        c = Client.unix(s.socket)
        c.hello()
        c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<other@example.org>\r\n")
        reply = c.replies(2)[1]
        assert reply.startswith("451 4.3.0 <other@example.org> ") and "mailslot-relay" in reply
    finally:
        s.cleanup()


def _vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_stays_bounded_for_big_and_hostile_input():
    """8 connections at once: 20 MB messages, a 20 MB line without an end in DATA and
    as a command. The daemon's peak RSS stays under 64 MiB (issue 17's bound for
    16 x 50 MB; bench/lmtp_bench.py measures that one)."""
    import threading
    s = Site.create(size_limit="0")
    try:
        s.start()
        start_kib = _vm_hwm_kib(s.proc.pid)
        blob = (b"y" * 76 + b"\r\n") * (1024 * 1024 // 78)
        results = []

        def big(i):
            c = Client.unix(s.socket)
            c.hello()
            c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            c.replies(3)
            c.send(b"Subject: big\r\n\r\n")
            for _ in range(20):
                c.send(blob)
            c.send(b".\r\n")
            results.append(c.reply())

        def endless_line(in_data):
            c = Client.unix(s.socket)
            c.hello()
            if in_data:
                c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
                c.replies(3)
            chunk = b"z" * (1024 * 1024)
            for _ in range(20):
                c.send(chunk)
            c.send(b"\r\n.\r\n" if in_data else b"\r\nNOOP\r\n")
            results.append(c.reply() if in_data else c.replies(2)[-1])

        threads = [threading.Thread(target=big, args=(i,)) for i in range(6)]
        threads += [threading.Thread(target=endless_line, args=(flag,))
                    for flag in (True, False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert sorted(results) == sorted(
            ["250 2.0.0 <alice@example.org> Saved"] * 6
            + ["554 5.6.0 <bob@example.org> Message has a line longer than 1000 octets "
               "(RFC 5321 4.5.3.1.6)", "250 2.0.0 OK"])
        peak = _vm_hwm_kib(s.proc.pid)
        assert peak < 64 * 1024, (start_kib, peak)
        assert len(s.messages("alice")) == 6
    finally:
        s.cleanup()


@pytest.mark.parametrize("tempfail,code", [(False, "552 5.2.2"), (True, "452 4.2.2")])
def test_rcpt_check_quota(tempfail, code):
    """lmtp_rcpt_check_quota: a user already at their quota is refused at RCPT (452
    with quota_full_tempfail, else 552), as Dovecot's lmtp; others are accepted."""
    s = Site.create(extra=f"lmtp_rcpt_check_quota: yes\nquota_full_tempfail: "
                          f"{'yes' if tempfail else 'no'}\n",
                    users_extra="full::%UID%:%UID%::%TOP%/home-full::"
                                "userdb_quota_rule=*:storage=1k\n")
    try:
        home = os.path.join(s.top, "home-full")
        os.makedirs(os.path.join(home, "Maildir", "new"))
        os.makedirs(os.path.join(home, "Maildir", "cur"))
        os.makedirs(os.path.join(home, "Maildir", "tmp"))
        with open(os.path.join(home, "Maildir", "new", "1.M1P1.h,S=2000"), "wb") as f:
            f.write(b"Subject: old\n\n" + b"x" * 1985 + b"\n")
        for root, dirs, files in os.walk(home):
            for name in dirs + files + ["."]:
                os.chown(os.path.join(root, name), s.uid, s.uid)
        s.start()
        c = Client.unix(s.socket)
        c.hello()
        c.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<full@example.org>\r\n"
               b"RCPT TO:<alice@example.org>\r\n")
        replies = c.replies(3)
        assert replies[1].startswith(f"{code} <full@example.org> "), replies
        assert replies[2] == "250 2.1.5 OK"
    finally:
        s.cleanup()


def test_connections_beyond_the_limit_get_421():
    s = Site.create(extra="lmtp_max_connections: 2\n")
    try:
        s.start()

        def admitted():
            """A connection the server serves (one that just ended, like start()'s
            probe, may still count for a moment)."""
            deadline = time.time() + 10
            while True:
                c = Client.unix(s.socket)
                greeting = c.reply()
                if greeting.startswith("220 ") or time.time() > deadline:
                    assert greeting.startswith("220 "), greeting
                    return c
                c.close()
                time.sleep(0.05)

        first, second = admitted(), admitted()
        third = Client.unix(s.socket)
        assert third.reply() == "421 4.3.2 Too many connections, try again later"
        first.send(b"QUIT\r\n")
        assert first.reply().startswith("221 ")
        first.close()
        fourth = admitted()
        fourth.send(b"LHLO c\r\n")
        assert fourth.reply()[0] == "250-lmtp.test"
        second.send(b"NOOP\r\n")
        assert second.reply() == "250 2.0.0 OK"
    finally:
        s.cleanup()


def _headers_of_one(site, name, rcpt_line):
    """Send one pipelined one-recipient transaction with a raw RCPT line; return
    (RCPT reply, final reply or None, stored copy's header block or None)."""
    before = set(site.maildir(name))
    c = Client.unix(site.socket)
    c.hello()
    c.send(b"MAIL FROM:<s@example.org>\r\n" + rcpt_line + b"\r\n")
    assert c.reply().startswith("250 ")
    rcpt = c.reply()
    if not rcpt.startswith("250"):
        return rcpt, None, None
    c.send(b"DATA\r\n")
    assert c.reply().startswith("354")
    c.send(b"Subject: orcpt\r\n\r\nbody\r\n.\r\n")
    final = c.reply()
    c.close()
    (path,) = set(site.maildir(name)) - before
    with open(path, "rb") as f:
        return rcpt, final, f.read().split(b"\n\n")[0]


# (lmtp_hdr_delivery_address, RCPT parameters, Delivered-To or None, Received's for).
# Facts from Dovecot 2.3.19's lmtp: "original" writes ORCPT's address (xtext decoded,
# angle brackets dropped) in Delivered-To and Received's for; without an rfc822 ORCPT
# no Delivered-To, and Received names the final address.
ORCPT_CASES = [
    ("original", b" ORCPT=rfc822;Orig+2Bx@example.net", b"Orig+x@example.net",
     b"Orig+x@example.net"),
    ("original", b" ORCPT=RFC822;<o@example.net>", b"o@example.net", b"o@example.net"),
    ("original", b"", None, b"alice@example.org"),
    ("original", b" ORCPT=x400;foo", None, b"alice@example.org"),
    ("final", b" ORCPT=rfc822;o@example.net", b"alice@example.org", b"alice@example.org"),
    ("none", b" ORCPT=rfc822;o@example.net", None, None),
]


@pytest.mark.parametrize("mode", ["original", "final", "none"])
def test_hdr_delivery_address_original_uses_orcpt(mode):
    s = Site.create(extra=f"lmtp_hdr_delivery_address: {mode}\n")
    try:
        s.start()
        for case_mode, params, delivered_to, received_for in ORCPT_CASES:
            if case_mode != mode:
                continue
            rcpt, final, head = _headers_of_one(s, "alice",
                                                b"RCPT TO:<alice@example.org>" + params)
            assert rcpt == "250 2.1.5 OK" and final.startswith("250 2.0.0"), (params, final)
            lines = head.split(b"\n")
            got = [x[len(b"Delivered-To: "):] for x in lines if x.startswith(b"Delivered-To:")]
            assert got == ([delivered_to] if delivered_to else []), (params, head)
            fors = re.findall(rb"\tfor <([^>]*)>;", head)
            assert fors == ([received_for] if received_for else []), (params, head)
        if mode == "original":
            # Bad ORCPT values are refused at RCPT (as Dovecot: 501 5.5.4), and
            # other DSN parameters are not taken (no DSN in LHLO).
            for params, reply in ((b" ORCPT=rfc822;a+x@example.net", "501 5.5.4"),
                                  (b" ORCPT=nosemicolon", "501 5.5.4"),
                                  (b" ORCPT=rfc822;a+0Ab@example.net", "501 5.5.4"),
                                  (b" NOTIFY=NEVER", "555 5.5.4")):
                rcpt, _, _ = _headers_of_one(s, "alice",
                                             b"RCPT TO:<alice@example.org>" + params)
                assert rcpt.startswith(reply), (params, rcpt)
    finally:
        s.cleanup()


SIGNAL_WHILE_LOCKED = r"""
import os, signal, socket, sys, threading
sys.path.insert(0, sys.argv[1])
from mailslot.lmtp.server import Server
server = Server(sys.argv[2], log=lambda text: None)
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[3])
listener.listen()
accept = server._accept
def accept_while_locked(sock):
    # SIGTERM arrives while the main thread holds the server's lock, as it can
    # in _accept under load: Python runs the handler right here.
    with server.lock:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10000):
            pass
    return accept(sock)
server._accept = accept_while_locked
server.run([listener])
print("drained")
"""


@needs_root
def test_sigterm_while_the_main_thread_holds_the_lock_still_drains():
    """A signal handler runs in the main thread between any two bytecodes; one that
    took the server's lock while the main thread held it would wait for itself for
    ever (found by CI: a SIGTERM under load never ended the daemon). The handlers
    only note the signal; the loop drains. Fails without: the process hangs."""
    import subprocess
    import sys
    from tests.lmtp.lmtpsite import REPO
    s = Site.create()
    try:
        path = os.path.join(s.top, "run", "locked")
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={s.uid}", f"--regid={s.uid}", "--clear-groups", "--",
             sys.executable, "-I", "-c", SIGNAL_WHILE_LOCKED,
             os.path.join(REPO, "pyside"), s.conf, path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while not os.path.exists(path):
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.2)             # listening (bound before listen; run() registers it)
        client = Client.unix(path)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("the server never drained after a SIGTERM taken while it "
                        "held its lock")
        finally:
            client.close()
        assert proc.returncode == 0, err
        assert out.decode().strip() == "drained"
    finally:
        s.cleanup()
