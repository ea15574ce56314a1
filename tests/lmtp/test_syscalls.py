"""What the kernel is asked per LMTP delivery (docs/benchmarks.md, "CPU per message"):
the daemon is traced with strace over a few deliveries into one Maildir and the
system calls cut from the hot path must stay cut -- no poll() before each recv() and
send() (the idle limit is the socket's SO_RCVTIMEO/SO_SNDTIMEO), no lstat of
dovecot-uidlist.lock before its link (the link's EEXIST is the check), no dup() of
the lock's pool file -- while the steps that make a 250 durable are all still there,
in order, for every message: the file's fsync before its rename, the directory's
fsync and the uidlist's fdatasync before the reply."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.lmtp.lmtpsite import Client, Site

MSG = b"Subject: t\r\n\r\nbody\r\n"
DELIVERIES = 4


@pytest.fixture
def traced():
    if os.geteuid() != 0 or shutil.which("strace") is None:
        pytest.skip("needs root and strace")
    site = Site.create()
    site.start()
    client = Client.unix(site.socket)
    client.hello()
    for _ in range(2):          # warm-up: the Maildir, the lock pool's file
        client.transaction("s@x", ["alice@lmtp.test"], MSG)
    finals = []
    with _strace(site) as traced_lines:
        for _ in range(DELIVERIES):
            finals += client.transaction("s@x", ["alice@lmtp.test"], MSG)[1]
        client.send(b"QUIT\r\n")
        client.reply()
    lines = [line for line in traced_lines if "resumed>" not in line or "(" in line]
    yield site, finals, lines
    site.stop()
    site.cleanup()


@contextlib.contextmanager
def _strace(site):
    """strace -f the daemon while the block runs; yields a list that gets the
    trace's lines when the block ends. Fails if strace never attached: an empty
    trace would let every "no such call" assertion pass."""
    out = os.path.join(site.top, "strace.out")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-s", "80", "-o", out,
                               "-p", str(site.proc.pid)], stderr=subprocess.PIPE)
    # strace reports nothing on -qq; wait until it has attached.
    deadline = time.monotonic() + 20
    while not _attached(site.proc.pid):
        assert time.monotonic() < deadline, "strace did not attach"
        time.sleep(0.05)
    lines = []
    yield lines
    time.sleep(0.3)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(20)
    with open(out) as f:
        lines += f.readlines()


def _attached(pid):
    with open(f"/proc/{pid}/status") as f:
        return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in f)


def _calls(lines, name):
    return [line for line in lines if re.match(rf"\d+\s+{name}\(", line)]


def test_no_poll_no_lock_lstat_no_dup_per_delivery(traced):
    site, finals, lines = traced
    assert finals == ["250 2.0.0 <alice@lmtp.test> Saved"] * DELIVERIES
    assert _calls(lines, "poll") == [] and _calls(lines, "ppoll") == []
    links = [l for l in _calls(lines, "linkat") if '"dovecot-uidlist.lock"' in l]
    assert len(links) == DELIVERIES
    looks = [l for l in _calls(lines, "newfstatat") if '"dovecot-uidlist.lock"' in l]
    assert len(looks) == DELIVERIES     # release's "still ours?" only, none before the link
    assert [l for l in _calls(lines, "fcntl") if "F_DUPFD" in l] == []


def test_every_durable_step_is_still_made_for_every_message(traced):
    site, finals, lines = traced
    assert len(site.maildir("alice")) == 2 + DELIVERIES
    steps = []          # strace -f writes in time order, every thread together
    for line in lines:
        m = re.match(r"(\d+)\s+(fsync|renameat2?|fdatasync|sendto)\(", line)
        if m and (m.group(2) != "sendto" or "Saved" in line):
            steps.append((m.group(1), m.group(2).replace("renameat2", "renameat")))
    # The connection's own thread: per message the file's fsync, its rename, the
    # uidlist's fdatasync, then the 250.
    tid = next(t for t, name in steps if name == "renameat")
    own = " ".join(name for t, name in steps if t == tid)
    assert own == " ".join(["fsync renameat fdatasync sendto"] * DELIVERIES), own
    # The directory's fsync (maybe in a flusher thread): one per message, each
    # after its rename and before its 250.
    renamed = synced = 0
    for t, name in steps:
        if name == "renameat":
            renamed += 1
        elif name == "fsync" and t != tid:
            synced += 1
            assert synced <= renamed
        elif name == "sendto":
            assert synced == renamed, steps
    assert synced == DELIVERIES


def test_with_deliveries_side_by_side_the_directory_fsync_is_made_in_turn():
    """Two clients at once in one process: while another delivery is in flight a
    save makes its directory fsync itself (server._parallel_sync declines the
    hand-off, which costs two thread wake-ups), between its rename and its uidlist
    record -- and every message is still delivered and numbered."""
    if os.geteuid() != 0 or shutil.which("strace") is None:
        pytest.skip("needs root and strace")
    import threading
    from mailslot.storage.index import read_uidlist
    site = Site.create()
    try:
        site.start()
        clients = [Client.unix(site.socket) for _ in range(2)]
        users = ("alice", "bob")        # one Maildir each: no wait for a uidlist lock
        for c, user in zip(clients, users):
            c.hello()
            c.transaction("s@x", [f"{user}@lmtp.test"], MSG)
        finals = []

        def pump(c, user):
            for _ in range(15):
                finals.extend(c.transaction("s@x", [f"{user}@lmtp.test"], MSG)[1])
        threads = [threading.Thread(target=pump, args=cu) for cu in zip(clients, users)]
        with _strace(site) as lines:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(finals) == sorted(f"250 2.0.0 <{u}@lmtp.test> Saved"
                                        for u in users for _ in range(15))
        for user in users:
            assert len(site.maildir(user)) == 16
            fd = os.open(os.path.join(site.home(user), "Maildir"), os.O_RDONLY)
            try:
                _, records = read_uidlist(fd)
            finally:
                os.close(fd)
            assert [r[0] for r in records] == list(range(1, 17))
        by_thread = {}
        for line in lines:
            m = re.match(r"(\d+)\s+(fsync|renameat2?|fdatasync)\(", line)
            if m:
                by_thread.setdefault(m.group(1), []).append(m.group(2)[:8])
        inline = sum(" ".join(steps).count("renameat fsync fdatasyn")
                     for steps in by_thread.values())
        assert inline >= 1, by_thread
    finally:
        site.stop()
        site.cleanup()
