"""lmtp_user_concurrency_limit across the worker processes of mailslot-lmtpd.

    slots = UserSlots()                 # in the parent, before the workers are forked
    token = slots.take("alice", 2)      # a free slot of alice's 2, or None
    slots.free(token)
    slots.full("alice", 2)              # RCPT's question: are all of them taken?

With lmtp_processes above 1 a user's deliveries may run in different processes, so
an in-process counter no longer holds the limit. A slot is a one-byte write lock
(an open-file-description lock, F_OFD_SETLK, Linux) on an anonymous memory file
(memfd) that the parent makes before it forks: byte SLOTS_PER_USER * h + i is slot
i of the user whose name hashes to h. Every take() opens the file anew (through
/proc/self/fd), so each delivery holds its own description: two threads of one
worker conflict as two workers do (a classic fcntl lock would not: it belongs to
the process). take() never waits (non-blocking lock).

Crash safety: a lock lives as long as its descriptor; a worker that is killed
frees its slots with its descriptors -- no stale count, nothing to clean up, and
the memfd has no path (nothing left on disk, nothing another user can open).

Errors: take() that cannot open the file or lock (no /proc, ENOLCK) returns None
and full() answers False: the limit is then not enforced for that delivery (it is
a load limit, never a safety one), and the delivery goes on.

Security: a user name is sender-controlled data; it only chooses a byte offset
(through a hash), never a path.
"""

import fcntl
import os
import struct

# A limit above this many is enforced as this many (offsets are SLOTS_PER_USER per user).
SLOTS_PER_USER = 1024
# Users are spread over 2**HASH_BITS ranges (a collision makes two users share slots;
# at 52 bits, practically never). 2**52 * 1024 stays below off_t's 2**63.
HASH_BITS = 52
# struct flock on Linux x86_64/aarch64: short l_type, short l_whence, off_t l_start,
# off_t l_len, pid_t l_pid (0 for OFD locks), native alignment and padding.
_FLOCK = "hhqqi4x"


class UserSlots:
    """The shared slot file (a memfd inherited by every worker)."""

    def __init__(self):
        self.fd = os.memfd_create("mailslot-lmtp-slots", os.MFD_CLOEXEC)
        self.path = f"/proc/self/fd/{self.fd}"

    def take(self, name, limit):
        """A token for a free slot of name's first `limit`, or None when all are
        taken (or the lock cannot be had)."""
        base = _base(name)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        for i in range(min(limit, SLOTS_PER_USER)):
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK,
                            struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, base + i, 1, 0))
            except OSError:         # EAGAIN: slot i is someone's; ENOLCK: none to be had
                continue
            return fd
        os.close(fd)
        return None

    def free(self, token):
        # Why close and not unlock: closing the description drops its lock at once,
        # exactly what a killed worker's exit does.
        if token is not None:
            os.close(token)

    def full(self, name, limit):
        """Whether every one of name's `limit` slots is taken right now."""
        token = self.take(name, limit)
        if token is None:
            try:
                os.stat(self.path)
            except OSError:
                return False        # the file is not usable: no limit rather than none
            return True
        self.free(token)
        return False


def _base(name):
    import hashlib
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - HASH_BITS)) * SLOTS_PER_USER
