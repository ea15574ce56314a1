"""mailslot-lmtpd's peak memory under hostile load: many large messages at once.

Issue 17: "peak memory under 64 MiB with 16 connections sending 50 MB messages",
for the whole daemon (the supervisor and its workers together). The test runs the
real daemon as installed (`python3 -I -S`, lmtp_processes 2: the parent and two
workers), sends CONNECTIONS messages of MESSAGE_SIZE in parallel, all of them in
flight at the same time, and reads every process's VmHWM (the peak resident set,
kernel-measured) from /proc before the daemon stops. Every message must arrive
whole: the stored bytes are compared by hash with what was sent (dot-unstuffed,
CRLF turned into LF).

Why the bound catches regressions: a whole message held in memory per connection
would be CONNECTIONS x MESSAGE_SIZE = 160 MiB; the server before session 5's memory
work (an in-memory spool of up to 1 MiB per connection, here in small pieces cut at
every dot-stuffed line; the spool's first 256 KiB kept as the "header"; a fresh
buffer per read of the copy) peaked at 74 MiB in this test, and now at about 46 MiB
(docs/benchmarks.md, "LMTP memory"). Memory per connection is flat beyond a few MB
of message (measured: the same peak for 20 and 50 MB), so MESSAGE_SIZE stands for
the issue's 50 MB at a fifth of the time.
"""

import compileall
import hashlib
import os
import threading
import time

from tests.support import REPO, needs_root
from tests.lmtp.lmtpsite import Client, Site

pytestmark = needs_root

CONNECTIONS = 16
MESSAGE_SIZE = 10 * 1024 * 1024
# Issue 17's target, for the sum of every process's peak RSS (counting the pages the
# workers share with the parent once per process: the strictest way to count).
BUDGET_KIB = 64 * 1024
# One write of the client: a multiple of the 100-octet line below.
SEND_CHUNK = 100 * 1000


class InstalledSite(Site):
    """The daemon started as the installed entry point starts it: -I -S (no site
    module, so nothing of the host's site-packages is loaded into it)."""

    def argv(self):
        argv = super().argv()
        argv[argv.index("-I")] = "-IS"
        return argv


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def content(i):
    """Message i as (wire chunks generator, sha256 of what must be stored).

    Lines of 100 octets with CRLF; every seventh starts with a dot (sent stuffed)."""
    def lines():
        yield b"Subject: big %d\r\nFrom: s@example.org\r\n\r\n" % i
        n = 0
        while n * 100 < MESSAGE_SIZE:
            body = b"%08d-%03d " % (n, i)
            line = body + b"m" * (98 - len(body)) + b"\r\n"
            if n % 7 == 0:
                line = b"." + line[1:]
            yield line
            n += 1
    digest = hashlib.sha256()
    for line in lines():
        digest.update(line.replace(b"\r\n", b"\n"))

    def wire():
        out = []
        size = 0
        for line in lines():
            out.append(b"." + line if line.startswith(b".") else line)
            size += len(out[-1])
            if size >= SEND_CHUNK:
                yield b"".join(out)
                out, size = [], 0
        yield b"".join(out) + b".\r\n"
    return wire, digest.hexdigest()


def test_sixteen_large_messages_at_once_stay_within_the_budget():
    # Byte-compiled first, as `make install` does: the daemon's uid cannot write
    # __pycache__ here, and compiling the sources in every process would cost each
    # of them memory the installed daemon does not spend.
    assert compileall.compile_dir(os.path.join(REPO, "pyside", "mailslot"), quiet=1)
    users = "".join(f"u{i}::%UID%:%UID%::%TOP%/home-u{i}::\n" for i in range(CONNECTIONS))
    site = InstalledSite.create(extra="lmtp_processes: 2\n", size_limit="0",
                                users_extra=users)
    try:
        for i in range(CONNECTIONS):
            home = site.home(f"u{i}")
            os.mkdir(home, 0o700)
            os.chown(home, site.uid, site.uid)
        site.start()
        messages = [content(i) for i in range(CONNECTIONS)]
        # Every connection is inside DATA before any sends its content: all the
        # messages are in flight at once (the peak the figure is about).
        ready = threading.Barrier(CONNECTIONS)
        replies = [None] * CONNECTIONS

        def send(i):
            client = Client.unix(site.socket)
            try:
                client.hello()
                client.send(b"MAIL FROM:<s@example.org>\r\n"
                            b"RCPT TO:<u%d@example.org>\r\nDATA\r\n" % i)
                assert client.replies(3)[2].startswith("354")
                ready.wait(60)
                for piece in messages[i][0]():
                    client.send(piece)
                replies[i] = client.reply()
            finally:
                client.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(CONNECTIONS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        took = time.monotonic() - began
        pids = [site.proc.pid] + site.children()
        peaks = {pid: peak_kib(pid) for pid in pids}
        assert len(pids) == 3, site.stderr()
        assert replies == [f"250 2.0.0 <u{i}@example.org> Saved"
                           for i in range(CONNECTIONS)], site.stderr()
        total = sum(peaks.values())
        assert total < BUDGET_KIB, (
            f"peak RSS {total / 1024:.1f} MiB over {len(pids)} processes "
            f"({', '.join(f'{k / 1024:.1f}' for k in peaks.values())}) after "
            f"{CONNECTIONS} x {MESSAGE_SIZE >> 20} MiB in {took:.1f} s")
    finally:
        site.stop()
    for i in range(CONNECTIONS):
        (path,) = site.maildir(f"u{i}")
        with open(path, "rb") as f:
            stored = f.read()
        # What the server adds (Return-Path, Delivered-To, Received) comes first.
        start = stored.index(b"Subject: big %d\n" % i)
        assert hashlib.sha256(stored[start:]).hexdigest() == messages[i][1], i
    site.cleanup()
