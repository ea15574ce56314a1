"""mailslot-lmtpd with lmtp_processes 2: a parent and two workers on shared sockets.

Which worker served a connection is read from the system, not from a hook: the
Maildir file name carries the delivering process's pid (P<pid>), and a TCP
connection's server-side socket is found in /proc/net/tcp and then among the
workers' open files.
"""

import os
import re
import signal
import time

import pytest

from tests.support import needs_root
from tests.lmtp.lmtpsite import (Client, Site, assert_alice_over_the_limit,
                                  assert_sigterm_drains, workers)

pytestmark = needs_root

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"
TWO = "lmtp_processes: 2\n"


def worker_of(client, pids):
    """The worker whose file table holds the server side of a TCP client."""
    port = client.sock.getsockname()[1]
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
                inode = fields[9]
    assert inode, "no server-side socket"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                pass
    return None


def delivered_by(site, name):
    """The pids named in name's Maildir file names."""
    return {int(re.search(r"P(\d+)", os.path.basename(p)).group(1))
            for p in site.maildir(name)}


@pytest.fixture
def site():
    s = Site.create(extra=TWO)
    s.start()
    yield s
    s.cleanup()


def test_connections_are_served_by_both_workers(site):
    pids = workers(site)
    assert "starting 2 worker processes" in site.stderr()
    for pid in pids:                  # never root: the daemon's own unprivileged uid
        with open(f"/proc/{pid}/status") as f:
            uids = [ln for ln in f if ln.startswith("Uid:")][0].split()[1:]
        assert uids == [str(site.uid)] * 4
    open_clients = []
    for _ in range(40):
        c = Client.tcp(site.port)
        c.hello()
        _, final = c.transaction("s@x", ["alice@example.org"], MSG)
        assert final == ["250 2.0.0 <alice@example.org> Saved"]
        open_clients.append(c)        # kept open: each worker keeps its connections
        if delivered_by(site, "alice") == set(pids):
            break
    assert delivered_by(site, "alice") == set(pids), site.stderr()
    assert len(site.messages("alice")) == len(open_clients)


def test_new_connections_go_to_the_less_busy_worker(site):
    """Eight connections opened one after another (each served, then kept open):
    a worker serving more connections defers its accept(), so each worker gets
    four, give or take one -- not whichever the kernel happens to wake first."""
    pids = workers(site)
    clients = []
    for _ in range(8):
        c = Client.tcp(site.port)
        c.hello()
        clients.append(c)
    served = [worker_of(c, pids) for c in clients]
    assert sorted(served.count(pid) for pid in pids) in ([4, 4], [3, 5]), served


def test_user_concurrency_limit_holds_across_workers():
    """Limit 1: alice's delivery waits on a worker (her dotlock is ours); a second
    connection served by the OTHER worker is refused alice (451 4.3.0), not bob.
    After the first delivery ends its slot is free again on every worker."""
    s = Site.create(extra=TWO + "lmtp_user_concurrency_limit: 1\n",
                    location="mbox:~/mail:INBOX=~/mail/inbox")
    try:
        for name in ("alice", "bob"):
            os.makedirs(os.path.join(s.home(name), "mail"))
            os.chown(os.path.join(s.home(name), "mail"), s.uid, s.uid)
        s.start()
        pids = workers(s)
        lock = os.path.join(s.home("alice"), "mail", "inbox.lock")
        with open(lock, "w") as f:
            f.write("0")
        first = Client.tcp(s.port)
        first.hello()
        busy = worker_of(first, pids)
        first.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert first.replies(3)[-1] == "354 OK"
        first.send(b"Subject: one\r\n\r\n1\r\n.\r\n")
        extra = []
        for _ in range(50):
            second = Client.tcp(s.port)
            second.hello()
            if worker_of(second, pids) != busy:
                break
            extra.append(second)
        assert worker_of(second, pids) not in (busy, None)
        assert_alice_over_the_limit(second)
        second.send(b"RSET\r\n")
        assert second.reply() == "250 2.0.0 OK"
        os.unlink(lock)
        assert first.reply() == "250 2.0.0 <alice@example.org> Saved"
        # The slot went with the delivery: alice is accepted again over there.
        second.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\n")
        assert second.replies(2) == ["250 2.1.0 OK", "250 2.1.5 OK"]
    finally:
        s.cleanup()


def test_sigterm_finishes_transactions_on_a_worker_and_the_parent_exits_0(site):
    pids = workers(site)
    busy = Client.tcp(site.port)
    busy.hello()
    assert worker_of(busy, pids) in pids
    idle = Client.unix(site.socket)
    idle.hello()
    assert_sigterm_drains(site, busy, idle)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), "a worker outlived the parent"


def test_a_killed_worker_is_replaced_and_service_goes_on(site):
    pids = workers(site)
    os.kill(pids[0], signal.SIGKILL)
    replaced = workers(site, other_than=[pids[0]])
    assert pids[1] in replaced
    assert re.search(rf"worker {pids[0]} killed by signal 9; another starts in",
                     site.stderr())
    clients = []
    for i in range(6):
        c = Client.unix(site.socket)
        c.hello()
        _, final = c.transaction("s@x", ["bob@example.org"], MSG)
        assert final == ["250 2.0.0 <bob@example.org> Saved"]
        clients.append(c)
    assert len(site.messages("bob")) == 6
    assert delivered_by(site, "bob") <= set(replaced)
    assert site.proc.poll() is None


def test_sighup_reloads_every_worker(site):
    pids = workers(site)
    with open(site.conf, "a") as f:
        f.write("lmtp_save_to_detail_mailbox: yes\n")
    site.signal(signal.SIGHUP)
    deadline = time.time() + 20
    while True:
        done = {pid for pid in pids if f"worker {pid}: settings reloaded" in site.stderr()}
        if done == set(pids):
            break
        assert time.time() < deadline, site.stderr()
        time.sleep(0.05)
    clients = []
    for _ in range(40):
        c = Client.tcp(site.port)
        c.hello()
        _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
        assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
        clients.append(c)
        if len({worker_of(x, pids) for x in clients}) == 2 and len(clients) >= 4:
            break
    assert {worker_of(x, pids) for x in clients} == set(pids)
    assert len(site.messages("bob", ".lists")) == len(clients)
    assert site.messages("bob") == []
    assert workers(site) == pids          # reloaded in place, not replaced
    # A worker started after the reload (replacing a killed one) has the new settings
    # (the parent's: it reloaded them too).
    os.kill(pids[0], signal.SIGKILL)
    replaced = workers(site, other_than=[pids[0]])
    new = [p for p in replaced if p != pids[1]][0]
    while f"worker {new}: worker started" not in site.stderr():
        assert time.time() < deadline + 20, site.stderr()
        time.sleep(0.05)
    for _ in range(40):
        c = Client.tcp(site.port)
        c.hello()
        clients.append(c)
        if worker_of(c, replaced) == new:
            break
    assert worker_of(c, replaced) == new
    _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
    assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
    assert site.messages("bob") == []


@pytest.mark.parametrize("value,expected", [
    ("1", 1), ("3", 3), (2, 2), ("auto", len(os.sched_getaffinity(0))),
    ("AUTO", len(os.sched_getaffinity(0))), ("0", None), ("-1", None), ("two", None),
    ("", None)])
def test_lmtp_processes_values(value, expected):
    from mailslot.errors import ConfigError
    from mailslot.lmtp.supervisor import worker_count
    if expected is None:
        with pytest.raises(ConfigError):
            worker_count(value)
    else:
        assert worker_count(value) == expected


def test_two_workers_appending_to_one_mbox_never_interleave():
    """The in-process mbox lock is per worker: between workers the dotlock and
    fcntl locks alone order the appends. Two connections on each worker deliver
    1.5 MB messages (past mbox_append.IN_MEMORY_MAX: several writes each) to
    alice's one mbox at once; every message is found once, whole."""
    import hashlib
    import threading
    s = Site.create(extra=TWO, location="mbox:~/mail:INBOX=~/mail/inbox",
                    size_limit="0")
    try:
        os.makedirs(os.path.join(s.home("alice"), "mail"))
        os.chown(os.path.join(s.home("alice"), "mail"), s.uid, s.uid)
        s.start()
        pids = workers(s)
        clients, spare = [], []
        for _ in range(60):              # two connections on each worker
            c = Client.tcp(s.port)
            c.hello()
            served = [worker_of(x, pids) for x in clients]
            if served.count(worker_of(c, pids)) < 2:
                clients.append(c)
            else:
                spare.append(c)
            if len(clients) == 4:
                break
        assert sorted(worker_of(c, pids) for c in clients) == sorted(pids * 2)
        bodies = {}
        for t in range(4):
            for i in range(3):
                line = f"m{t}-{i} the quick brown fox jumps over the lazy dog\n".encode()
                bodies[f"m{t}-{i}"] = line * (1536 * 1024 // len(line))
        replies, start = [], threading.Barrier(4)

        def send(t, c):
            start.wait()
            for i in range(3):
                tag = f"m{t}-{i}"
                _, final = c.transaction("s@x", ["alice@example.org"],
                                         f"Subject: {tag}\n\n".encode() + bodies[tag])
                replies.extend(final)

        threads = [threading.Thread(target=send, args=(t, c))
                   for t, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert replies == ["250 2.0.0 <alice@example.org> Saved"] * 12
        with open(os.path.join(s.home("alice"), "mail", "inbox"), "rb") as f:
            data = f.read()
        parts = data.split(b"\n\nFrom ")
        assert len(parts) == 12
        found = {}
        for part in parts:
            head, _, body = part.partition(b"\n\n")
            subject = [ln for ln in head.split(b"\n") if ln.startswith(b"Subject: ")]
            tag = subject[0][9:].decode()
            found[tag] = hashlib.sha256(body.rstrip(b"\n") + b"\n").digest() == \
                hashlib.sha256(bodies[tag]).digest()
        assert found == {tag: True for tag in bodies}
    finally:
        s.cleanup()


def test_systemd_sockets_are_shared_by_the_workers():
    """LISTEN_FDS with lmtp_processes 2: the passed socket is opened once and
    served by both workers (lmtp_listen unused)."""
    s = Site.create(extra=TWO)
    try:
        path = s.start_activated()
        pids = workers(s)
        clients = []
        for _ in range(40):
            c = Client.unix(path)
            c.hello()
            _, final = c.transaction("s@x", ["alice@example.org"], MSG)
            assert final == ["250 2.0.0 <alice@example.org> Saved"]
            clients.append(c)
            if delivered_by(s, "alice") == set(pids):
                break
        assert delivered_by(s, "alice") == set(pids)
        assert not os.path.exists(s.socket)          # lmtp_listen was not used
        assert s.stop() == 0
    finally:
        s.cleanup()


def test_sigkill_of_a_worker_under_load_loses_nothing_acknowledged(site):
    """Four clients deliver as fast as they can, spread over both workers; one
    worker is SIGKILLed mid-run. Every message that got its 250 is stored whole;
    the other worker's clients go on being served; the parent replaces the dead one."""
    import threading
    pids = workers(site)
    filler = ("x" * 79 + "\n") * 25
    acked, stop = [], threading.Event()
    after_kill = []
    killed = threading.Event()
    clients = []
    for _ in range(60):               # two connections on each worker
        c = Client.tcp(site.port)
        c.hello()
        if [worker_of(x, pids) for x in clients].count(worker_of(c, pids)) < 2:
            clients.append(c)
        if len(clients) == 4:
            break
    assert sorted(worker_of(c, pids) for c in clients) == sorted(pids * 2)
    victim = pids[0]

    def client(n, c):
        i = 0
        try:
            while not stop.is_set():
                marker = f"m-{n}-{i}"
                body = (f"Subject: {marker}\n\n" + filler + f"end {marker}\n").encode()
                _, final = c.transaction("s@x", ["alice@example.org"], body)
                if final and final[0].startswith("250 "):
                    acked.append(marker)
                    if killed.is_set():
                        after_kill.append(marker)
                i += 1
        except (OSError, EOFError, AssertionError):
            return          # the kill: a transaction in flight is simply not acked

    threads = [threading.Thread(target=client, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(acked) < 60 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    killed.set()
    while len(after_kill) < 20 and time.time() < deadline + 30:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 60 and len(after_kill) >= 20, (len(acked), len(after_kill))
    stored = {}
    for m in site.messages("alice"):
        marker = m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0].decode()
        assert m.endswith((filler + f"end {marker}\n").encode())     # whole
        stored[marker] = True
    assert [mk for mk in acked if mk not in stored] == []
    assert victim not in workers(site, other_than=[victim])
    assert site.proc.poll() is None


def test_workers_drain_and_exit_when_the_parent_is_killed(site):
    """SIGKILL of the parent: the kernel tells each worker (SIGTERM), an idle
    connection gets 421, a transaction under way still ends in 250, and the
    workers exit instead of serving on unsupervised."""
    pids = workers(site)
    busy = Client.tcp(site.port)
    busy.hello()
    busy.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    assert busy.replies(3)[-1] == "354 OK"
    busy.send(b"Subject: half\r\n\r\nfirst half\r\n")
    time.sleep(0.3)
    site.proc.kill()
    site.proc.wait()
    time.sleep(0.3)
    busy.send(b"second half\r\n.\r\n")
    assert busy.reply() == "250 2.0.0 <alice@example.org> Saved"
    assert busy.reply().startswith("421 4.3.2")
    deadline = time.time() + 20
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.time() < deadline, site.stderr()
        time.sleep(0.05)
    assert len(site.messages("alice")) == 1


def test_a_worker_that_keeps_dying_is_restarted_after_a_growing_delay(site):
    """Each replacement killed at once: the delays double (0.5, 1, 2 s), so a
    worker that cannot live does not make the parent spin; the other serves on."""
    pids = workers(site)
    victim, delays = pids[0], []
    for _ in range(3):
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = workers(site, other_than=[victim], timeout=30)
        waited = time.monotonic() - killed_at
        m = re.search(rf"worker {victim} killed by signal 9; another starts in "
                      rf"([0-9.]+) s", site.stderr())
        delays.append(float(m.group(1)))
        assert waited >= delays[-1] - 0.05, (waited, delays)
        victim = [p for p in replaced if p != pids[1]][0]
    assert delays == [0.5, 1.0, 2.0]
    c = Client.unix(site.socket)
    c.hello()
    _, final = c.transaction("s@x", ["alice@example.org"], MSG)
    assert final == ["250 2.0.0 <alice@example.org> Saved"]
