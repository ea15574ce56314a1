"""mailslot-lmtpd on the FUSE disk (fusecrash.py --path lmtp): the daemon's wrapper
and the clients of --clients N.

    DAEMON_HEAD + fusecrash.DROP_SYNC + DAEMON_BODY   # the wrapper's code (%-format)
    acked, finals = deliver_at_once(socket, clients, news, rcpt, timeout)

The wrapper runs mailslot-lmtpd unchanged, but logs (to stderr, off the FUSE disk)
the thread and the directory of every directory sync a Maildir save asks for
(storage/maildir.py's sync_directory, i.e. storage/dirs.py's group commit), so the
harness can compare the syncs asked for with the fsyncs the disk saw. Test-only
knobs, never in the product: skip_dirsync drops those syncs; dir_delay makes a
directory fsync return that much later (a slow disk: the other connections' saves
come in while it runs); broken_group replaces the group commit by a wrong one (a
save that finds an fsync of its directory under way waits for it, although it may
have begun before its rename) -- the harness must catch the last two's harm.
"""

import threading

# --clients N: each connection's message (small: the saves meet at their commit),
# how many each connection sends one after the other (the later ones commit while
# the first ones' 250s are out, so cuts fall after some acknowledgements), and how
# much longer the daemon's directory fsyncs take (see dir_delay above).
GROUP_MESSAGE_SIZE = 6000
GROUP_ROUNDS = 2
GROUP_DIR_DELAY_S = 0.1
DAEMON_HEAD = r"""
import os, stat, sys, threading, time
sys.path.insert(0, %(pyside)r)
"""
DAEMON_BODY = r"""
DIR_DELAY = %(dir_delay)r
if DIR_DELAY:
    # A slow disk (--clients): a directory's fsync returns DIR_DELAY after the disk
    # made the names durable, so that the saves of the other connections come in
    # while one runs (group commit's case) -- and must not count as covered by it.
    timed = os.fsync

    def slow_fsync(fd):
        timed(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            time.sleep(DIR_DELAY)
    os.fsync = slow_fsync
import mailslot.storage.maildir as maildir
real = maildir.sync_directory
if %(broken_group)d:
    # Test only: the classic wrong group commit -- a save that finds an fsync of its
    # directory under way waits for that one, which may have begun before its rename.
    running, running_lock = {}, threading.Lock()

    def real(fd):
        key = os.fstat(fd).st_ino
        with running_lock:
            under_way = running.get(key)
            if under_way is None:
                mine = running[key] = threading.Event()
        if under_way is not None:
            under_way.wait()        # wrongly taken as covering this save
            return None
        try:
            os.fsync(fd)
        finally:
            with running_lock:
                del running[key]
            mine.set()

def sync_directory(fd):
    sys.stderr.write("fusecrash: directory sync in thread %%s of %%s\n"
                     %% (threading.current_thread().name,
                        os.readlink("/proc/self/fd/%%d" %% fd)))
    sys.stderr.flush()
    if %(skip_dirsync)d:
        return None     # test only: the save's directory fsync is dropped
    return real(fd)
maildir.sync_directory = sync_directory
from mailslot.lmtp.server import main
sys.exit(main(["-c", %(conf)r, "--foreground"]))
"""


def deliver_at_once(socket_path, clients, news, rcpt, timeout):
    """`clients` connections to socket_path; connection i sends to rcpt the
    messages of news (tag -> bytes) whose tags start "new<i>r", one after the
    other, the first DATA of all at the same moment (the later ones come while the
    others' saves commit). Returns (tags whose 250 the client read, every final
    reply). A connection the power cut ends gets "connection lost"."""
    from tests.lmtp.lmtpsite import Client
    ready = threading.Barrier(clients)
    finals = {}

    def one(i):
        mine = [(tag, data) for tag, data in news.items()
                if tag.startswith(f"new{i}r")]
        client = None
        try:
            client = Client.unix(socket_path)
            client.hello()
            ready.wait(timeout)
            for tag, data in mine:
                finals[tag] = "no reply"
                replies, got = client.transaction("power@example.org", [rcpt], data)
                finals[tag] = got[0] if got else f"RCPT: {replies}"
        except (OSError, EOFError, AssertionError, threading.BrokenBarrierError) as exc:
            ready.abort()           # the power went: nobody waits for the others
            for tag, _data in mine:
                if not finals.get(tag, "").startswith("250"):
                    finals[tag] = f"connection lost: {exc!r}"
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked = {tag for tag, final in finals.items() if final.startswith("250")}
    return acked, [f"{tag}: {final}" for tag, final in sorted(finals.items())]
