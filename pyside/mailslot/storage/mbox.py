"""mbox storage: appends that never corrupt, locked the way Dovecot locks.

One save, in this order (Dovecot's mbox-save.c and mbox-lock.c, 2.3):
  1. the message is spooled once, before any lock is taken (the delivery's own
     spool, message.Spool, when the source is a spooled message; else an O_TMPFILE in
     mail_temp_dir, else a memfd), so a slow MTA never holds the mailbox;
  2. the mbox is opened O_NOFOLLOW|O_APPEND and fstat()ed: a regular file owned
     by the delivering user with one link, or refused (the classic spool attacks:
     a symlink or hard link planted in /var/mail, a FIFO, someone else's file);
  3. the locks of mbox_write_locks are taken in their order ("fcntl dotlock" by
     default, Debian's Dovecot's; also flock, lockf, dotlock_try) within
     mbox_lock_timeout. A later lock is waited for only while readers hold it (a
     later dotlock briefly); held by a writer (who may be waiting for our first
     lock, when it locks in the other order) all are let go and the busy one is
     waited for first next round, so neither order deadlocks (mbox_lock.py). A dotlock
     is stale when its pid is dead on this host, or when it has been untouched
     for mbox_dotlock_change_timeout and its holder does not hold the next lock
     either. When the dotlock cannot be created because the directory belongs to
     the mail group (/var/mail, root:mail 2775), the INBOX is locked through
     mailslot-dotlock (root:mail 2755) if mail_privileged_group is set: the
     engine never holds that group itself. A missing INBOX there is created
     through the helper too;
  4. the journal (mbox_journal.py) settles what an interrupted earlier delivery
     left, then records this append; the message is appended (mbox_format.py:
     From_ line, headers without forged mbox metadata, quoted lines, blank line,
     after a missing final newline of the mbox is repaired) and fdatasync()ed;
  5. the journal is cleared, the mbox's atime put back (so that mail readers and
     shells still see new mail), the locks released.
Any failure -- an OSError, an exception, SIGTERM, SIGINT, SIGHUP or SIGPIPE while
it runs -- truncates the mbox back to its length before the append, fsync()s it
and releases every lock; a signal is then re-raised with its own disposition.
SIGKILL, a crash or a power loss leave the journal, and the next delivery to that
mbox rolls the unfinished append back. ENOSPC, EDQUOT and EFBIG are named.

Layout (Dovecot's, LAYOUT=fs): folder "a/b" is the mbox file <root>/a/b below the
plain directory <root>/a; INBOX is the INBOX= file (default <root>/inbox); a name
is either an mbox file or a directory of mailboxes, never both. Names are stored
in modified UTF-7 (UTF-8 with the UTF-8 option); "*.lock" and ".imap" are
Dovecot's own names and refused. Subscriptions: <root>/.subscriptions, Dovecot's
version 2 file, written as for Maildir.

IMAP UIDs: an mbox's UIDs live in Dovecot's index and in X-UID headers that only
the IMAP server may assign (a guessed X-UID makes Dovecot report "Expunged message
reappeared"), so saves return uid None and Dovecot numbers the new mail at its next
sync, as it does for mail that procmail or Postfix's local(8) appended.

Keywords (non-system flags) are written as an "X-Keywords: kw1 kw2" header field,
as Dovecot writes them (mbox_format.py; invalid names are dropped with a warning,
keywords.py); mutt, neomutt and other mbox readers read it too. Dovecot 2.3,
though, takes X-Keywords only if it knows every name in it: the keywords declared
in the X-IMAPbase field of the mbox's first message, where Dovecot lists the ones
used in that mailbox through it before. One unknown name and Dovecot ignores the
whole field (and drops it when it next rewrites the message), losing the known
names with it (mbox-sync-parse.c, verified with Debian's 2.3.19). So, under the
mbox's locks, the first message's header is read (IMAPBASE_READ_MAX bytes):
  - it has X-IMAPbase: X-Keywords gets only the keywords declared there
    (case-insensitively, as Dovecot looks them up); the others are dropped with a
    warning naming them -- Dovecot shows the message with the declared ones;
  - it has none (a new mbox, or one Dovecot never synced): X-Keywords gets them
    all, for mbox readers; Dovecot shows none of them.
A keyword new to a mailbox cannot be shown by Dovecot after a mailslot delivery:
declaring it means rewriting the first message, which is not an append and not
crash-safe, so mailslot never does it.

The save is split by job: mbox_lock.py (the locks, the signal guard),
mbox_helper.py (the set-group-id helper, imported only when it is needed),
mbox_append.py (step 4's append and its rollback), mbox_journal.py (its replay after
a crash in mbox_recover.py and mbox_heal.py, imported only then),
mbox_format.py, message.Spool (step 1) and subscriptions.py (shared with Maildir); this
module holds the layout, the mailbox operations and the order of the steps.

Errors: ConfigError (bad lock lists, unknown mail_privileged_group),
MailboxNameError, MailboxNotFoundError, StorageError naming the path and the errno
(and the helper's own diagnostic when it refused).

Security: below the configured roots every directory is opened relative to its
parent's fd with O_NOFOLLOW|O_DIRECTORY (dirs.py, shared with Maildir: why, and
how new directories get their mode and group); a symlink planted there is refused
(RefusedError), in the journal's .imap/ path too, where it fails the save instead
of being skipped like a merely unwritable journal place. The INBOX file is opened
O_NOFOLLOW in its directory; nothing but the INBOX is ever locked or created
through the set-group-id helper, which itself accepts only <spool dir>/<caller's
login>.
"""

import os

from ..errors import ConfigError, MailboxNameError, MailboxNotFoundError, StorageError
from ..message import Spool
from .base import INBOX, SaveResult, Storage, checked_name, encode_mutf7
from .dirs import NAME_MAX, DirOpener, Fds, RefusedError, current_umask, storage_error
from .mbox_append import append
from .mbox_format import VARIANTS, flag_headers
from .mbox_journal import MboxJournal
from .mbox_lock import (MboxLocks, SignalGuard, check_lock_order, check_mbox_file,
                        parse_lock_methods)

# Dovecot's MBOX_INDEX_DIR_NAME: per-mailbox state, never listed as a mailbox.
INDEX_DIR_NAME = ".imap"
INBOX_INDEX_NAME = "INBOX"
LOCK_NAME_SUFFIX = ".lock"
# An INBOX is private to its user whatever its directory says.
INBOX_MODE = 0o600
UID_NOTE = "mbox: the IMAP server numbers new mail when it next reads the mailbox"
SETTING_NAMES = ("mbox_write_locks", "mbox_read_locks", "mbox_lock_timeout",
                 "mbox_dotlock_change_timeout", "mbox_variant", "mail_privileged_group",
                 "mail_temp_dir")

_MBOX_FLAGS = (os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK
               | os.O_CLOEXEC)


def _root_is_a_file(path):
    """dirs.DirOpener's root_file_error: Dovecot's wording (mbox-storage.c)."""
    return StorageError(f"mbox root directory can't be a file: {path}")


def _folder_is_an_mbox(path, create):
    """dirs.DirOpener's child_file_error: an mbox where a folder of mailboxes is
    wanted holds mail, not mailboxes (Dovecot's "Mailbox doesn't allow inferior
    mailboxes"); when only looking, the folder simply does not exist."""
    if not create:
        return MailboxNotFoundError(f"{path} is an mbox file, not a folder")
    return StorageError(f"{path} is an mbox file: mailbox doesn't allow inferior mailboxes")


def mbox_settings(settings):
    """The settings the mbox storage reads, defaults from config.SCHEMA."""
    from ..config import SCHEMA
    return {key: settings[key] if settings is not None and key in settings else SCHEMA[key][1]
            for key in SETTING_NAMES}


class MboxStorage(Storage):
    """mbox files below one mail root, INBOX where INBOX= says."""

    default_separator = "/"
    keeps_source_copy = True

    def __init__(self, location, *, user, hostname, mail_fsync, settings=None,
                 dotlock_helper=None, clock=None):
        self.location = location
        # Seconds since the epoch for the From_ line's date (None: now); tests fix it.
        self.clock = clock
        self.user = user
        self.hostname = hostname
        self.mail_fsync = mail_fsync
        self.fsync = mail_fsync != "never"
        conf = mbox_settings(settings)
        self.write_locks = parse_lock_methods(conf["mbox_write_locks"], "mbox_write_locks")
        check_lock_order(parse_lock_methods(conf["mbox_read_locks"], "mbox_read_locks"),
                         self.write_locks)
        self.lock_timeout = int(conf["mbox_lock_timeout"])
        self.change_timeout = int(conf["mbox_dotlock_change_timeout"])
        if conf["mbox_variant"] not in VARIANTS:
            raise ConfigError(f"must be one of {', '.join(VARIANTS)}", key="mbox_variant")
        self.variant = conf["mbox_variant"]
        self.privileged_group = conf["mail_privileged_group"]
        self.temp_dir = conf["mail_temp_dir"] or "/tmp"
        self.dotlock_helper = dotlock_helper    # None: the installed one
        self._helper = None         # made when first needed (the helper property)
        # The engine may set its namespace separator here (as for Maildir).
        self.display_separator = None
        self.umask = current_umask()
        # Directories below the roots (dirs.py, shared with Maildir), refused in
        # Dovecot's mbox words where the format has its own.
        self.dirs = DirOpener(umask=self.umask, fsync=self.fsync,
                              root_file_error=_root_is_a_file,
                              child_file_error=_folder_is_an_mbox)
        self._spools = []
        self._guard = None          # the SignalGuard of the save running now

    @property
    def helper(self):
        """mailslot-dotlock's client (mbox_helper.py), made when a dotlock or the
        INBOX could not be created in the spool directory: only then imported."""
        if self._helper is None:
            from .mbox_helper import DotlockHelper, default_helper_path
            self._helper = DotlockHelper(self.dotlock_helper or default_helper_path(),
                                         self.privileged_group, self.location.inbox)
            self._helper.guard = self._guard
        return self._helper

    # --- names and paths ------------------------------------------------------------

    def _encode(self, part):
        return part if self.location.utf8 else encode_mutf7(part)

    def display_name(self, name):
        return (self.display_separator or self.default_separator).join(name)

    def _disk_parts(self, name):
        """The encoded path components of a folder below the root."""
        parts = []
        for i, part in enumerate(name):
            enc = self._encode(part)
            if enc == INDEX_DIR_NAME or (len(enc) > len(LOCK_NAME_SUFFIX)
                                         and enc.endswith(LOCK_NAME_SUFFIX)):
                raise MailboxNameError(f"mailbox name component {part!r} is reserved "
                                       "by the mbox format")
            if i == 0 and enc == self.location.subscriptions_name:
                raise MailboxNameError(f"mailbox name {part!r} is the subscriptions file")
            if len(enc.encode("utf-8")) > NAME_MAX:
                raise MailboxNameError("mailbox name component is too long for the filesystem")
            parts.append(enc)
        if os.path.join(self.location.root, *parts) == self.location.inbox:
            raise MailboxNameError(f"mailbox {'/'.join(name)} is the INBOX file")
        return parts

    def _check(self, name):
        name = checked_name(name)
        if name != (INBOX,):
            self._disk_parts(name)
        return name

    # --- directories ----------------------------------------------------------------

    def _walk(self, base, parts, fds, *, create, create_base):
        """dirs.DirOpener.walk, a missing folder named as one."""
        try:
            return self.dirs.walk(base, parts, fds, create=create, create_base=create_base)
        except FileNotFoundError as err:
            raise MailboxNotFoundError(f"{err.filename}: no such folder") from None

    def _mbox_place(self, name, fds, *, create):
        """(dir fd, dir path, file name, perm, is INBOX) of a mailbox's mbox file."""
        if name == (INBOX,):
            inbox = self.location.inbox
            head, _, fname = inbox.rpartition("/")
            head = head or "/"
            if head == self.location.root:
                fd, path, perm = self._walk(head, [], fds, create=False, create_base=True)
            else:
                try:
                    fd = fds.add(os.open(head, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                except OSError as err:
                    raise storage_error("opening", head, err) from None
                path, perm = head, self.dirs.perm_of(fd)
            return fd, path, fname, perm, True
        parts = self._disk_parts(name)
        fd, path, perm = self._walk(self.location.root, parts[:-1], fds, create=create,
                                    create_base=create)
        return fd, path, parts[-1], perm, False

    def _index_place(self, name, fds):
        """The mailbox's Dovecot index directory (created): where its journal lives."""
        index = self.location.index
        base = index if index and index != "MEMORY" else self.location.root
        if name == (INBOX,):
            parts = [INDEX_DIR_NAME, INBOX_INDEX_NAME]
        else:
            enc = self._disk_parts(name)
            parts = enc[:-1] + [INDEX_DIR_NAME, enc[-1]]
        fd, path, _ = self._walk(base, parts, fds, create=True, create_base=True)
        return fd, path

    # --- the Storage interface ------------------------------------------------------

    def mailbox_exists(self, name):
        name = self._check(name)
        if name == (INBOX,):
            return True         # IMAP's INBOX always exists; saving creates it
        with Fds() as fds:
            try:
                dir_fd, _path, fname, _perm, _ = self._mbox_place(name, fds, create=False)
            except MailboxNotFoundError:
                return False
            try:
                st = os.stat(fname, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            except OSError as err:
                raise storage_error("checking", f"{_path}/{fname}", err) from None
            return (st.st_mode & 0o170000) == 0o100000

    def create_mailbox(self, name):
        name = self._check(name)
        with Fds() as fds:
            dir_fd, dir_path, fname, perm, is_inbox = self._mbox_place(name, fds, create=True)
            path = f"{dir_path}/{fname}"
            if is_inbox:
                self._create_inbox(dir_fd, dir_path, fname)
                return
            try:
                st = os.stat(fname, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            except OSError as err:
                raise storage_error("checking", path, err) from None
            if st is not None:
                kind = st.st_mode & 0o170000
                if kind == 0o100000:
                    return          # already an mbox: nothing to do
                if kind == 0o040000:
                    raise StorageError(f"mailbox {self.display_name(name)} already exists as "
                                       "a folder of mailboxes (an mbox name holds mail or "
                                       "folders, not both)")
                raise StorageError(f"{path}: not a regular file (or a symlink), refused")
            self._create_file(dir_fd, fname, path, perm.file_mode, perm)

    def _create_file(self, dir_fd, fname, path, mode, perm):
        try:
            fd = os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except FileExistsError:
            return False
        try:
            if perm is not None:
                perm.apply(fd, mode)
            elif mode & self.umask:
                os.fchmod(fd, mode)
            if self.fsync:
                # Why: a mailbox that was announced as created must survive a crash.
                os.fsync(dir_fd)
        except OSError as err:
            raise storage_error("creating", path, err) from None
        finally:
            os.close(fd)
        return True

    def _create_inbox(self, dir_fd, dir_path, fname):
        path = f"{dir_path}/{fname}"
        if self.location.is_home_dot_file(path):
            # INBOX=~/.profile would make every delivery write a shell start-up file.
            raise ConfigError(f"refusing to create the mbox INBOX {path}: a dot file in "
                              "the home directory", key="mail_location")
        try:
            self._create_file(dir_fd, fname, path, INBOX_MODE, None)
            return
        except PermissionError as err:
            denied = err
        except OSError as err:
            raise storage_error("creating", path, err) from None
        # The spool directory is the mail group's: the helper creates the file.
        self.helper.check(path, denied, "create the INBOX")
        code, message = self.helper.run("create", path)
        if self._guard is not None:
            self._guard.checkpoint()
        if code != 0:
            raise StorageError(f"{self.helper.path} create {path} failed: {message}")
        if self.fsync:
            try:
                os.fsync(dir_fd)
            except OSError:
                pass

    def subscribe(self, name):
        name = self._check(name)
        # The subscriptions file is Dovecot's list-level file, the same for every
        # format (subscription-file.c), at the mbox's root under the mbox's name
        # (.subscriptions); directories opened without mbox's own refusals.
        from . import subscriptions    # only a subscribing delivery pays for it
        subscriptions.subscribe(DirOpener(umask=self.umask, fsync=self.fsync),
                                self.location.control or self.location.root,
                                self.location.subscriptions_name,
                                [self._encode(p) for p in name], "/",
                                hostname=self.hostname, fsync=self.fsync)

    def save(self, name, source, *, flags=()):
        name = self._check(name)
        keywords, refused = (), []
        if any(flag[:1] != "\\" for flag in flags):
            # Only a save with a keyword pays for the keyword code.
            from .keywords import split_keywords
            keywords, refused = split_keywords(flags)
        extra = flag_headers(flags)
        sender = self._sender_of(source)
        spool = self._spool(source)
        with SignalGuard() as guard:
            self._set_guard(guard)
            try:
                path, offset, notes = self._save(name, spool, sender, extra, guard, keywords)
            except OSError as err:
                # A stray OSError names the mailbox, never a bare "[Errno 5]".
                raise storage_error("saving into", self.display_name(name), err) from None
            finally:
                self._set_guard(None)
        # vsize as a function: counted only if the log shows it (message.Spool.vsize).
        return SaveResult(self.display_name(name), None, None, spool.size,
                          lambda: spool.vsize,
                          UID_NOTE, mbox_path=path, offset=offset,
                          warnings=tuple(refused) + tuple(notes))

    def _set_guard(self, guard):
        """The SignalGuard of the save running now (None after it), the helper's too."""
        self._guard = guard
        if self._helper is not None:
            self._helper.guard = guard

    # --- the steps of a save --------------------------------------------------------

    def _sender_of(self, source):
        sender = getattr(source, "envelope_sender", None)
        if sender is None:
            sender = getattr(source, "from_line_sender", None)
        if sender is None and callable(getattr(source, "get", None)):
            value = source.get("Return-Path")
            if value is not None:
                value = value.strip()
                start, end = value.find("<"), value.rfind(">")
                sender = value[start + 1:end] if 0 <= start < end else value
        if sender is None:
            # Dovecot's choice when it knows no sender: the user, fully qualified.
            sender = self.user if "@" in self.user else f"{self.user}@{self.hostname}"
        return sender

    def _spool(self, source):
        """The spooled copy of source: the delivery's own spool when the source is a
        spooled message (chunks, size, vsize), else written once and kept for
        further saves of the same source."""
        if callable(getattr(source, "chunks", None)):
            # Why size now: it reads the input to its end before any lock is taken.
            source.size
            return source
        for known, spool in self._spools:
            if known is source:
                return spool
        spool = Spool.of(source, self.temp_dir)
        self._spools.append((source, spool))
        return spool

    def _save(self, name, spool, sender, extra, guard, keywords):
        with Fds() as fds:
            dir_fd, dir_path, fname, perm, is_inbox = self._mbox_place(
                name, fds, create=False)
            path = f"{dir_path}/{fname}"
            journal, notes = self._open_journal(name, fds)
            locks = offset = None
            try:
                locks = MboxLocks(self, dir_fd, dir_path, fname, is_inbox,
                                   self._open_mbox(dir_fd, dir_path, fname, is_inbox, name))
                locks.acquire(guard)
                if journal is not None:
                    try:
                        notes.extend(journal.recover(locks.mbox_fd))
                    except OSError as err:
                        raise storage_error("repairing", path, err) from None
                if keywords:
                    extra += self._keywords_field(locks.mbox_fd, path, keywords, notes)
                offset = append(locks, path, journal, spool, sender, extra, guard,
                                variant=self.variant, fsync=self.fsync,
                                when=self.clock() if self.clock else None)
                return path, offset, notes
            finally:
                guard.hold()
                # After the commit (offset set) a failing close must not fail the save:
                # the MTA would deliver it twice (issue 21.4). Before it, the save's
                # own error is the one to report.
                if locks is not None:
                    locks.release()
                    _close_quietly(locks.close, path, notes, offset)
                if journal is not None:
                    _close_quietly(journal.close, journal.path, notes, offset)

    def _keywords_field(self, fd, path, keywords, notes):
        """The X-Keywords: field for keywords (see the docstring); notes gets the
        ones left out. Runs under the mbox's locks: the first message is stable."""
        from .mbox_format import IMAPBASE_READ_MAX, declared_keywords
        try:
            declared = declared_keywords(os.pread(fd, IMAPBASE_READ_MAX, 0))
        except OSError as err:
            raise storage_error("reading", path, err) from None
        if declared is not None:
            left_out = [k for k in keywords if k.lower() not in declared]
            if left_out:
                notes.append(
                    f"keywords {' '.join(left_out)} not stored: the X-IMAPbase field of "
                    f"{path}'s first message does not declare them, and Dovecot ignores "
                    "a message's whole X-Keywords field when one name in it is unknown "
                    "(set the keyword once through Dovecot's IMAP to declare it)")
                keywords = [k for k in keywords if k.lower() in declared]
        return flag_headers((), keywords)

    def _open_journal(self, name, fds):
        """The mailbox's journal, or (None, [why not]) where none can be kept."""
        import errno
        try:
            jdir_fd, jdir_path = self._index_place(name, fds)
            return MboxJournal(jdir_fd, jdir_path, fsync=self.fsync), []
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise storage_error("opening the journal in", self.location.root, err) \
                    from None
            reason = err
        except RefusedError:
            raise
        except StorageError as err:
            reason = err
        # No writable place for it (a system user without a home, a read-only
        # root): deliver without crash protection rather than not at all.
        return None, [f"no append journal for {self.display_name(name)} ({reason}): an "
                      "append killed by SIGKILL or a crash would not be rolled back"]

    def _open_mbox(self, dir_fd, dir_path, fname, is_inbox, name):
        """Open the mbox for appending and check what it is (see the docstring)."""
        path = f"{dir_path}/{fname}"
        try:
            fd = os.open(fname, _MBOX_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not is_inbox:
                raise MailboxNotFoundError(
                    f"mailbox {self.display_name(name)} does not exist") from None
            self._create_inbox(dir_fd, dir_path, fname)
            try:
                fd = os.open(fname, _MBOX_FLAGS, dir_fd=dir_fd)
            except OSError as err:
                raise storage_error("opening", path, err) from None
        except IsADirectoryError:
            raise MailboxNotFoundError(f"mailbox {self.display_name(name)} is a folder of "
                                       "mailboxes, it holds no mail") from None
        except OSError as err:
            raise storage_error("opening", path, err) from None
        try:
            check_mbox_file(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _close_quietly(close, path, notes, offset):
    """close(); an OSError becomes a note once the message is saved (offset set)."""
    try:
        close()
    except OSError as err:
        if offset is not None:
            notes.append(f"{path}: closing failed after the save: {err.strerror or err}")
