"""dovecot-keywords: the letters a Maildir file name uses for IMAP keywords.

    letters, warnings = keyword_letters(ctl_fd, ctl_path, ["Junk", "$label1"],
                                        may_create=True, perm=perm, fsync=True)
    # letters == "ab": the file name ends ":2,<system letters>ab" (sorted by ASCII)

The file (Dovecot 2.3, src/lib-storage/index/maildir/maildir-keywords.c) lives in
the mailbox's control directory, beside dovecot-uidlist (so CONTROL= moves it
too). Each line is "<index> <name>\\n", index 0..25, and the keyword's letter in a
file name is 'a' + index (MAILDIR_MAX_KEYWORDS = 26). When reading, as Dovecot
does, lines without a space, with an index that is not a plain decimal number
below 26, with an empty name, or without a final newline are ignored; names are
looked up case-insensitively (ASCII).

Rules for a save (Dovecot's maildir_keywords_lookup_or_create):
  - a keyword already in the file gets its letter;
  - a new keyword takes the first free index, but only while this process holds
    dovecot-uidlist.lock (may_create): the uidlist lock is what serialises every
    writer of dovecot-keywords. Without it only keywords already in the file are
    stored, the others are dropped with a warning;
  - with all 26 indexes taken a new keyword is dropped with a warning.
Keyword names are first checked by keywords.split_keywords() (Dovecot's rules for
a valid keyword): a name that could add a line (LF, NUL, ...) never gets here.

Writing (only when a keyword was added), in this order:
  1. a leftover dovecot-keywords.lock is unlinked (the uidlist lock we hold
     proves nobody is writing it), then created O_CREAT|O_EXCL|O_NOFOLLOW with
     the mailbox's file mode and group (as the mailbox's other files);
  2. all lines are written; the file's mtime must be later than the old file's,
     since Dovecot re-reads the file only when its mtime changes: if the clock has
     not moved on, the mtime is set to the old one + 1 (as Dovecot's utime());
  3. fsync, rename over dovecot-keywords, fsync the directory (unless
     mail_fsync=never) -- all before the message that uses the new letter is
     renamed into cur/, so that no file name ever carries a letter whose name a
     crash lost (Dovecot would show it as "unknown-<n>").

Errors: keyword_letters() never raises for what it finds on disk: an unreadable,
oversized, non-regular or symlinked dovecot-keywords (O_NOFOLLOW: a planted
symlink is refused, not followed), or a failed write, drops the keywords it
could not give a letter to and says why in the warnings. A planted symlink at
dovecot-keywords.lock is unlinked like any leftover lock, never written through.

Security: every name is opened relative to the control directory's fd with
O_NOFOLLOW; the file is read only up to KEYWORDS_FILE_MAX bytes.
"""

import errno
import os
import time

KEYWORDS_NAME = "dovecot-keywords"
KEYWORDS_LOCK_NAME = KEYWORDS_NAME + ".lock"
# Dovecot's MAILDIR_MAX_KEYWORDS: one letter a..z each.
MAILDIR_MAX_KEYWORDS = 26
MAILDIR_KEYWORD_FIRST = "a"
# A dovecot-keywords larger than this is not ours to rewrite (26 lines of names up
# to Dovecot's mail_max_keyword_length fit in a few KiB even when it is raised).
KEYWORDS_FILE_MAX = 1 << 20

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class KeywordsFileError(Exception):
    """dovecot-keywords cannot be used (the reason is the message)."""


def parse_keywords(data):
    """The 26 slots (bytes name or None) of a dovecot-keywords file's bytes."""
    slots = [None] * MAILDIR_MAX_KEYWORDS
    lines = data.split(b"\n")
    lines.pop()                         # an unterminated last line is not read
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        index, space, name = line.partition(b" ")
        if not space or not name or not index.isdigit():
            continue
        idx = int(index)
        if idx < MAILDIR_MAX_KEYWORDS:
            slots[idx] = name
    return slots


def format_keywords(slots):
    """The bytes of a dovecot-keywords file holding slots."""
    return b"".join(b"%d %s\n" % (i, name) for i, name in enumerate(slots) if name)


def read_keywords(ctl_fd, ctl_path):
    """(slots, mtime) of dovecot-keywords; mtime None when there is no file."""
    path = f"{ctl_path}/{KEYWORDS_NAME}"
    try:
        fd = os.open(KEYWORDS_NAME, _READ_FLAGS, dir_fd=ctl_fd)
    except FileNotFoundError:
        return [None] * MAILDIR_MAX_KEYWORDS, None
    except OSError as err:
        if err.errno == errno.ELOOP:    # O_NOFOLLOW met a symlink
            raise KeywordsFileError(f"{path} is a symlink, refused") from None
        raise KeywordsFileError(f"opening {path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000:
            raise KeywordsFileError(f"{path} is not a regular file, refused")
        if st.st_size > KEYWORDS_FILE_MAX:
            raise KeywordsFileError(f"{path} is larger than {KEYWORDS_FILE_MAX} bytes")
        chunks, total = [], 0
        while total <= KEYWORDS_FILE_MAX:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > KEYWORDS_FILE_MAX:
            raise KeywordsFileError(f"{path} is larger than {KEYWORDS_FILE_MAX} bytes")
    except OSError as err:
        raise KeywordsFileError(f"reading {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    return parse_keywords(b"".join(chunks)), int(st.st_mtime)


def write_keywords(ctl_fd, slots, old_mtime, *, perm, fsync):
    """Replace dovecot-keywords with slots (the caller holds dovecot-uidlist.lock)."""
    # Why unlink first: a lock left by a writer that died would block us forever;
    # the uidlist lock we hold proves that no live writer owns it (Dovecot does
    # the same). unlink() removes a planted symlink itself, never its target.
    try:
        os.unlink(KEYWORDS_LOCK_NAME, dir_fd=ctl_fd)
    except FileNotFoundError:
        pass
    fd = os.open(KEYWORDS_LOCK_NAME, _CREATE_FLAGS, perm.file_mode, dir_fd=ctl_fd)
    try:
        perm.apply(fd, perm.file_mode)
        view = memoryview(format_keywords(slots))
        while view:
            view = view[os.write(fd, view):]
        # Why: Dovecot re-reads dovecot-keywords only when its mtime changed, so
        # a change within the same second must still move the mtime forward.
        if old_mtime is not None and int(os.fstat(fd).st_mtime) <= old_mtime:
            now = int(time.time())
            os.utime(fd, (now, max(now, old_mtime + 1)))
        if fsync:
            # Why: the new letter must be on disk before a file name uses it.
            os.fsync(fd)
        os.rename(KEYWORDS_LOCK_NAME, KEYWORDS_NAME, src_dir_fd=ctl_fd, dst_dir_fd=ctl_fd)
    except BaseException:
        try:
            os.unlink(KEYWORDS_LOCK_NAME, dir_fd=ctl_fd)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)
    if fsync:
        # Why: the rename is what makes the new name durable.
        os.fsync(ctl_fd)


def keyword_letters(ctl_fd, ctl_path, keywords, *, may_create, perm, fsync):
    """(letters, warnings) for keywords (already validated names) of one save.

    ctl_fd: the control directory's fd, or None when it could not be opened (then
    no keyword is stored). may_create: this process holds dovecot-uidlist.lock.
    """
    if ctl_fd is None:
        return "", [f"keywords {' '.join(keywords)} not stored: the control directory "
                    "(dovecot-uidlist) could not be opened"]
    try:
        slots, mtime = read_keywords(ctl_fd, ctl_path)
    except KeywordsFileError as err:
        return "", [f"keywords {' '.join(keywords)} not stored: {err}"]
    lookup = {}
    for idx, name in enumerate(slots):
        if name is not None:
            lookup.setdefault(name.lower(), idx)
    old_letters, new_letters, warnings = [], [], []
    for keyword in keywords:
        raw = keyword.encode("ascii")
        idx = lookup.get(raw.lower())
        if idx is not None:
            if idx not in old_letters and idx not in new_letters:
                old_letters.append(idx)
            continue
        if not may_create:
            warnings.append(f"keyword {keyword} not stored: dovecot-uidlist is locked by "
                            f"another process, so {KEYWORDS_NAME} cannot get a new "
                            "keyword now")
            continue
        try:
            idx = slots.index(None)
        except ValueError:
            warnings.append(f"keyword {keyword} not stored: all {MAILDIR_MAX_KEYWORDS} "
                            f"Maildir keyword letters are in use ({ctl_path}/"
                            f"{KEYWORDS_NAME})")
            continue
        slots[idx] = raw
        lookup[raw.lower()] = idx
        new_letters.append(idx)
    if new_letters:
        try:
            write_keywords(ctl_fd, slots, mtime, perm=perm, fsync=fsync)
        except OSError as err:
            added = " ".join(slots[i].decode("ascii") for i in new_letters)
            warnings.append(f"keywords {added} not stored: writing {ctl_path}/"
                            f"{KEYWORDS_NAME}: {err.strerror or err}")
            new_letters = []
    return "".join(sorted(chr(ord(MAILDIR_KEYWORD_FIRST) + i)
                          for i in old_letters + new_letters)), warnings
