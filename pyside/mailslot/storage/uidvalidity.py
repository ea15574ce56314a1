"""dovecot-uidvalidity: UIDVALIDITY values that never repeat for an account.

    value = next_uid_validity(root_fd, mode=0o600, clock=time.time)

The file, in the root control directory (CONTROL=, else the mail root), holds the
last value handed out, in hex; an empty marker file dovecot-uidvalidity.<hex> is
renamed to the next value, which makes the increment atomic between deliveries
(Dovecot's src/lib-storage/mailbox-uidvalidity.c, same files, same steps). A new
dovecot-uidlist takes its V from here; nothing else does, so the plain delivery
into an existing mailbox never imports this module.

Errors: none reach the caller: a file that cannot be read or advanced falls back
to the current time (never repeating within this process), as Dovecot does not
fail a mailbox creation over it.

Security: every file is opened relative to the directory fd with O_NOFOLLOW; the
marker and the counter get the root's file mode, never the umask's.
"""

import os
import time

from .index import UIDVALIDITY_NAME

# Dovecot's RETRY_COUNT in mailbox-uidvalidity.c.
UIDVALIDITY_RETRY_COUNT = 10
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


_fallback_uid_validity = 0


def _uid_validity_fallback(clock=time.time):
    """The current time, never repeating within this process (Dovecot's fallback)."""
    global _fallback_uid_validity
    now = int(clock()) & 0xFFFFFFFF
    if _fallback_uid_validity < now:
        _fallback_uid_validity = now
    else:
        _fallback_uid_validity = (_fallback_uid_validity + 1) & 0xFFFFFFFF
    if _fallback_uid_validity == 0:
        _fallback_uid_validity = 1
    return _fallback_uid_validity


def _write_uid_validity(root_fd, value, mode):
    fd = os.open(UIDVALIDITY_NAME, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, mode & 0o666,
                 dir_fd=root_fd)
    try:
        st = os.fstat(fd)
        if st.st_size == 0 and (st.st_mode & 0o777) != mode & 0o666:
            os.fchmod(fd, mode & 0o666)     # new: its mode, not the umask's
        os.pwrite(fd, b"%08x" % value, 0)
    finally:
        os.close(fd)


def _rename_marker(root_fd, value):
    """Advance the marker file from value; return the new value, or None (ENOENT)."""
    for _ in range(UIDVALIDITY_RETRY_COUNT):
        nxt = (value + 1) & 0xFFFFFFFF or 1
        try:
            os.rename(f"{UIDVALIDITY_NAME}.{value:08x}", f"{UIDVALIDITY_NAME}.{nxt:08x}",
                      src_dir_fd=root_fd, dst_dir_fd=root_fd)
            return nxt
        except FileNotFoundError:
            value = nxt            # someone else advanced it: try the next value
    return None


def _rescan_uid_validity(root_fd, mode, clock):
    values = []
    prefix = UIDVALIDITY_NAME + "."
    for entry in os.listdir(root_fd):
        digits = entry[len(prefix):]
        if entry.startswith(prefix) and 0 < len(digits) <= 8 and all(
                c in "0123456789abcdefABCDEF" for c in digits):
            values.append(int(digits, 16))
    if not values:
        for _ in range(UIDVALIDITY_RETRY_COUNT):
            value = _uid_validity_fallback(clock)
            try:
                marker = os.open(f"{prefix}{value:08x}",
                                 os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o444,
                                 dir_fd=root_fd)
            except FileExistsError:
                continue
            os.fchmod(marker, 0o444)
            os.close(marker)
            break
        _write_uid_validity(root_fd, value, mode)
        return value
    lo, hi = min(values), max(values)
    if lo != hi:
        try:
            os.unlink(f"{prefix}{lo:08x}", dir_fd=root_fd)
        except FileNotFoundError:
            pass
    value = _rename_marker(root_fd, hi)
    if value is None:
        return _uid_validity_fallback(clock)
    _write_uid_validity(root_fd, value, mode)
    return value


def next_uid_validity(root_fd, *, mode=0o600, clock=time.time):
    """Return the next UIDVALIDITY for a new mailbox (Dovecot's mailbox_uidvalidity_next).

    root_fd is the root control directory (CONTROL=, else the mail root). mode is
    the root's file creation mode. Falls back to the current time if the files
    cannot be used, as Dovecot does; clock (seconds since the epoch) is that time,
    injected by tests.
    """
    try:
        try:
            fd = os.open(UIDVALIDITY_NAME, os.O_RDWR | _OPEN_FLAGS, dir_fd=root_fd)
        except FileNotFoundError:
            return _rescan_uid_validity(root_fd, mode, clock)
        try:
            raw = os.read(fd, 8)
            try:
                cur = int(raw.decode("ascii"), 16) if raw else 0
            except ValueError:
                cur = 0
            if cur == 0:
                return _rescan_uid_validity(root_fd, mode, clock)
            value = _rename_marker(root_fd, cur)
            if value is None:
                return _rescan_uid_validity(root_fd, mode, clock)
            os.pwrite(fd, b"%08x" % value, 0)
            return value
        finally:
            os.close(fd)
    except OSError:
        # Dovecot does not fail a mailbox creation over this file either.
        return _uid_validity_fallback(clock)
