"""mbox appends from several threads of one process (mailslot-lmtpd's deliveries).

The dotlock and fcntl locks keep other processes out; between two threads of one
process an fcntl lock is no barrier at all and a dotlock names the same pid, so
storage/mbox_lock.py takes an in-process lock per mbox (PROCESS_LOCKS) before any
file lock. The test makes the file-lock logic "err" -- every file lock reports
success without locking -- and checks that threads appending to one mbox still
never interleave: every message is found whole, in one piece, once.
"""

import hashlib
import os
import threading

from mailslot.storage import mbox_lock, open_storage
from tests.message_source import BytesSource

THREADS = 6
PER_THREAD = 4
# Past mbox_append.IN_MEMORY_MAX: streamed in several writes, so two appends left
# unserialized overlap for sure.
SIZE = 1536 * 1024


def _message(tag):
    line = f"{tag}: the quick brown fox jumps over the lazy dog\n".encode()
    body = line * (SIZE // len(line))
    head = f"Subject: {tag}\nX-Body-SHA256: {hashlib.sha256(body).hexdigest()}\n\n"
    return head.encode() + body


def _messages_in(path):
    """{subject: body intact?} for each message of the mbox, and the count."""
    with open(path, "rb") as f:
        data = f.read()
    found, count = {}, 0
    for part in data.split(b"\n\nFrom "):
        count += 1
        head, _, body = part.partition(b"\n\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\n")[1:]
                      if b": " in line)
        digest = hashlib.sha256(body.rstrip(b"\n") + b"\n").hexdigest().encode()
        found[fields.get(b"Subject")] = fields.get(b"X-Body-SHA256") == digest
    return found, count


def test_threads_never_interleave_appends_even_if_file_locks_err(tmp_path, monkeypatch):
    monkeypatch.setattr(mbox_lock.MboxLocks, "_dotlock", lambda self, *a: True)
    monkeypatch.setattr(mbox_lock.MboxLocks, "_fd_lock", lambda self, *a: True)
    home = tmp_path / "home"
    (home / "mail").mkdir(parents=True)
    errors = []

    def deliver(t):
        storage = open_storage(f"mbox:{home}/mail:INBOX={home}/inbox", user="t",
                               home=str(home), hostname="h", mail_fsync="never")
        try:
            for i in range(PER_THREAD):
                storage.save(("INBOX",), BytesSource(_message(f"m{t}-{i}"),
                                                     envelope_sender="s@example.org"))
        except Exception as exc:        # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    found, count = _messages_in(home / "inbox")
    assert count == THREADS * PER_THREAD
    assert found == {f"m{t}-{i}".encode(): True
                     for t in range(THREADS) for i in range(PER_THREAD)}
    assert not mbox_lock.PROCESS_LOCKS._locks        # nothing left behind


def test_the_in_process_lock_times_out_like_the_file_locks(tmp_path, monkeypatch):
    """A thread that cannot get the in-process lock within mbox_lock_timeout fails
    with the file locks' timeout error (temporary), and leaves nothing held."""
    from mailslot.errors import StorageError
    home = tmp_path / "home"
    (home / "mail").mkdir(parents=True)
    storage = open_storage(f"mbox:{home}/mail:INBOX={home}/inbox", user="t",
                           home=str(home), hostname="h", mail_fsync="never",
                           settings={"mbox_lock_timeout": 1})
    storage.save(("INBOX",), BytesSource(_message("first"), envelope_sender="s@x"))
    st = os.stat(home)
    key = (st.st_dev, st.st_ino, "inbox")
    assert mbox_lock.PROCESS_LOCKS.acquire(key, 0)
    try:
        try:
            storage.save(("INBOX",), BytesSource(_message("second"), envelope_sender="s@x"))
        except StorageError as exc:
            assert "Timeout while waiting for lock" in str(exc)
        else:
            raise AssertionError("saved while another thread held the mbox")
    finally:
        mbox_lock.PROCESS_LOCKS.release(key)
    assert not mbox_lock.PROCESS_LOCKS._locks
    storage.save(("INBOX",), BytesSource(_message("third"), envelope_sender="s@x"))
    found, count = _messages_in(home / "inbox")
    assert count == 2 and set(found) == {b"first", b"third"}
