"""mbox storage: appends that never corrupt, locked the way Dovecot locks.

One save, in this order (Dovecot's mbox-save.c and mbox-lock.c, 2.3):
  1. the message is spooled once, before any lock is taken (an O_TMPFILE in
     mail_temp_dir, else a memfd), so a slow MTA never holds the mailbox;
  2. the mbox is opened O_NOFOLLOW|O_APPEND and fstat()ed: a regular file owned
     by the delivering user with one link, or refused (the classic spool attacks:
     a symlink or hard link planted in /var/mail, a FIFO, someone else's file);
  3. the locks of mbox_write_locks are taken in their order ("dotlock fcntl" by
     default; also flock, lockf, dotlock_try) within mbox_lock_timeout. A later
     lock is waited for only while readers hold it; held by a writer (who may be
     waiting for our first lock: Debian's Dovecot locks "fcntl dotlock") all are
     let go and the round starts again, so neither order deadlocks. A dotlock
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
import time

from ..errors import ConfigError, MailboxNameError, MailboxNotFoundError, StorageError
from ..mailbox_name import INBOX, check_components, encode_mutf7
from ..locking import (DOTLOCK_SUFFIX, FILE_LOCK_METHODS, acquire_dotlock,
                       file_lock_blocker, lock_file, read_lock_pid, unlock_file)
from . import SaveResult, Storage
from .dirs import NAME_MAX, DirOpener, Fds, RefusedError, current_umask, storage_error
from .mbox_format import VARIANTS, MboxEncoder, flag_headers, from_line
from .mbox_journal import PREFIX_MAX, MboxJournal

LOCK_METHODS = ("dotlock", "dotlock_try") + FILE_LOCK_METHODS
# Dovecot's MBOX_INDEX_DIR_NAME: per-mailbox state, never listed as a mailbox.
INDEX_DIR_NAME = ".imap"
INBOX_INDEX_NAME = "INBOX"
LOCK_NAME_SUFFIX = ".lock"
# Dovecot's MBOX_LOCK_TOUCH_MSECS: a held dotlock is refreshed this often while we
# wait for the next lock or write a long message.
DOTLOCK_TOUCH_SECS = 10
# A spool file's mode; an INBOX is private to its user whatever its directory says.
SPOOL_MODE = 0o600
INBOX_MODE = 0o600
COPY_CHUNK = 256 * 1024
# Messages up to this size are encoded into memory before the append (see
# MboxStorage._append); larger ones are streamed.
IN_MEMORY_MAX = 1024 * 1024
HELPER_NAME = "mailslot-dotlock"
# The most of the helper's stderr kept for an error message.
HELPER_ERROR_MAX = 2048
# How often the mbox is reopened when it was replaced while we waited for locks.
REOPEN_ATTEMPTS = 3
# The pause (doubling, with jitter) after a later lock of the list was busy and all
# were let go, so that a program locking in the other order gets through.
LOCK_BACKOFF_MIN_SECS = 0.01
LOCK_BACKOFF_MAX_SECS = 0.5
# How long one wait for readers lasts before the holders are looked at again.
READER_WAIT_SECS = 0.2
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


def default_helper_path():
    """mailslot-dotlock beside the installed engine (<libdir>/python/mailslot/...)."""
    here = os.path.dirname(os.path.abspath(__file__))           # .../mailslot/storage
    libdir = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    return os.path.join(libdir, HELPER_NAME)


def parse_lock_methods(text, key):
    """Dovecot's lock list ("dotlock fcntl") as a tuple; ConfigError if invalid."""
    methods = []
    for word in str(text).split():
        method = word.lower()
        if method not in LOCK_METHODS:
            raise ConfigError(f"invalid value {word!r} (use {', '.join(LOCK_METHODS)})",
                              key=key)
        if method in methods:
            raise ConfigError(f"duplicated value {word!r}", key=key)
        methods.append(method)
    if not methods:
        raise ConfigError("no lock method given", key=key)
    return tuple(methods)


def check_lock_order(read_locks, write_locks):
    """Dovecot's rule: write locks contain the read locks, in the same order."""
    r = 0
    for method in write_locks:
        if r < len(read_locks) and read_locks[r] == method:
            r += 1
    if r != len(read_locks):
        raise ConfigError("mbox read/write lock list settings are invalid: lock ordering "
                          "must be the same with both, and write locks must contain all "
                          "read locks (and possibly more)", key="mbox_read_locks")


def mbox_settings(settings):
    """The settings the mbox storage reads, defaults from config.SCHEMA."""
    from ..config import SCHEMA
    return {key: settings[key] if settings is not None and key in settings else SCHEMA[key][1]
            for key in SETTING_NAMES}


class _Interrupted(BaseException):
    """A guarded signal arrived: unwind, roll back, unlock, then re-raise it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _SignalGuard:
    """While a save runs, SIGTERM/SIGINT/SIGHUP/SIGPIPE unwind it instead of killing it.

    The handler raises _Interrupted once while armed; hold() disarms it for the
    clean-up (a second signal must not interrupt a rollback), the signal is then
    only recorded. On exit the old handlers come back and a recorded signal is
    sent again, so it has its usual effect once nothing is held. Signals that are
    ignored (SIGPIPE is, in Python) stay ignored: they cannot stop a save.
    """

    def __init__(self):
        self.saved = {}
        self.pending = None
        self.armed = False

    def __enter__(self):
        import _signal      # not "signal": its enum import costs the pipe path ~8 ms
        for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
            old = _signal.getsignal(signum)
            if old is None or old == _signal.SIG_IGN:
                continue    # ignored, or set outside Python: left alone
            try:
                _signal.signal(signum, self._handle)
            except ValueError:
                break       # not the main thread: no handlers can be set
            self.saved[signum] = old
        self.armed = True
        return self

    def _handle(self, signum, frame):
        if self.pending is None:
            self.pending = signum
        if self.armed:
            self.armed = False
            raise _Interrupted(signum)

    def hold(self):
        """From now on a signal is only recorded (clean-up runs to its end)."""
        self.armed = False

    def run_held(self, call, *args):
        """call(*args) with signals only recorded; then act on one that came.

        For steps whose outcome must be known even if a signal comes meanwhile
        (the helper taking a lock): the caller records the outcome and then calls
        checkpoint().
        """
        armed, self.armed = self.armed, False
        try:
            return call(*args)
        finally:
            self.armed = armed

    def checkpoint(self):
        """Raise _Interrupted now if a signal came while it was held."""
        if self.armed and self.pending is not None:
            self.armed = False
            raise _Interrupted(self.pending)

    def __exit__(self, exc_type, exc, tb):
        import _signal
        self.armed = False
        for signum, old in self.saved.items():
            _signal.signal(signum, old)
        if self.pending is not None:
            # Why send it again: the caller asked us to stop; now that the mbox is
            # rolled back and unlocked the signal may do what it normally does.
            os.kill(os.getpid(), self.pending)
            raise StorageError(f"delivery interrupted by signal {self.pending}") from None
        return False


class _Spool:
    """The message once, as the source wrote it, readable any number of times."""

    def __init__(self, source, temp_dir):
        self.fd = _open_spool(temp_dir)
        try:
            self.size, self.vsize = self._fill(source, temp_dir)
        except BaseException:
            self.close()
            raise

    def _fill(self, source, temp_dir):
        try:
            size, vsize = source.write_to(self.fd)
            real = os.fstat(self.fd).st_size
        except OSError as err:
            raise storage_error("spooling the message in", temp_dir, err) from None
        if real != size:
            raise StorageError(f"message source reported {size} bytes but the spool "
                               f"file has {real}")
        return size, vsize

    def chunks(self):
        offset = 0
        while True:
            data = os.pread(self.fd, COPY_CHUNK, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self):
        self.close()


def _open_spool(temp_dir):
    """An unnamed file for the spool: O_TMPFILE in temp_dir, else a memfd."""
    try:
        # Why unnamed: nothing is left behind, whatever kills us.
        return os.open(temp_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, SPOOL_MODE)
    except (OSError, AttributeError):
        return os.memfd_create("mailslot-spool", os.MFD_CLOEXEC)


class MboxStorage(Storage):
    """mbox files below one mail root, INBOX where INBOX= says."""

    default_separator = "/"
    keeps_source_copy = True

    def __init__(self, location, *, user, hostname, mail_fsync, settings=None,
                 dotlock_helper=None):
        self.location = location
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
        self.dotlock_helper = dotlock_helper or default_helper_path()
        # The engine may set its namespace separator here (as for Maildir).
        self.display_separator = None
        self.umask = current_umask()
        # Directories below the roots (dirs.py, shared with Maildir), refused in
        # Dovecot's mbox words where the format has its own.
        self.dirs = DirOpener(umask=self.umask, fsync=self.fsync,
                              root_file_error=_root_is_a_file,
                              child_file_error=_folder_is_an_mbox)
        self._spools = []
        self._guard = None          # the _SignalGuard of the save running now

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
        name = check_components(name)
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
        try:
            self._create_file(dir_fd, fname, path, INBOX_MODE, None)
            return
        except PermissionError as err:
            denied = err
        except OSError as err:
            raise storage_error("creating", path, err) from None
        # The spool directory is the mail group's: the helper creates the file.
        self._check_helper(path, denied, "create the INBOX")
        code, message = self._run_helper("create", path)
        if self._guard is not None:
            self._guard.checkpoint()
        if code != 0:
            raise StorageError(f"{self.dotlock_helper} create {path} failed: {message}")
        if self.fsync:
            try:
                os.fsync(dir_fd)
            except OSError:
                pass

    def subscribe(self, name):
        name = self._check(name)
        # The subscriptions file is Dovecot's list-level file, the same for every
        # format (subscription-file.c): the Maildir storage writes it, at the
        # mbox's root and under the mbox's name (.subscriptions).
        from .maildir import MaildirStorage
        MaildirStorage(self.location, user=self.user, hostname=self.hostname,
                       mail_fsync=self.mail_fsync).subscribe(name)

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
        with _SignalGuard() as guard:
            self._guard = guard
            try:
                path, offset, notes = self._save(name, spool, sender, extra, guard, keywords)
            finally:
                self._guard = None
        return SaveResult(self.display_name(name), None, None, spool.size, spool.vsize,
                          UID_NOTE, mbox_path=path, offset=offset,
                          warnings=tuple(refused) + tuple(notes))

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
        """The spooled copy of source: written once, kept for further saves."""
        for known, spool in self._spools:
            if known is source:
                return spool
        spool = _Spool(source, self.temp_dir)
        self._spools.append((source, spool))
        return spool

    def _save(self, name, spool, sender, extra, guard, keywords):
        with Fds() as fds:
            dir_fd, dir_path, fname, perm, is_inbox = self._mbox_place(
                name, fds, create=False)
            path = f"{dir_path}/{fname}"
            journal, notes = self._open_journal(name, fds)
            locks = None
            try:
                locks = _MboxLocks(self, dir_fd, dir_path, fname, is_inbox,
                                   self._open_mbox(dir_fd, dir_path, fname, is_inbox, name))
                locks.acquire(guard)
                if journal is not None:
                    try:
                        notes.extend(journal.recover(locks.mbox_fd))
                    except OSError as err:
                        raise storage_error("repairing", path, err) from None
                if keywords:
                    extra += self._keywords_field(locks.mbox_fd, path, keywords, notes)
                offset = self._append(locks, path, journal, spool, sender, extra, guard)
                return path, offset, notes
            finally:
                guard.hold()
                if locks is not None:
                    locks.release()
                    locks.close()
                if journal is not None:
                    journal.close()

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

    def _append(self, locks, path, journal, spool, sender, extra, guard):
        """Append the message; return the offset of its From_ line.

        The message is encoded once. Up to IN_MEMORY_MAX it is encoded into memory
        first, so that the journal records the append's total length and a whole
        append survives any crash (mbox_journal). A larger one is streamed: the
        journal records no total, and its clear is made durable before the save
        counts as done -- one more fdatasync instead of a second encoding pass.
        """
        fd = locks.mbox_fd
        try:
            st = os.fstat(fd)
            length = st.st_size
            fix = self._separator_fix(fd, length, path)
        except OSError as err:
            raise storage_error("reading", path, err) from None
        head = from_line(sender)
        pieces = self._encoded(spool, extra)
        if spool.size <= IN_MEMORY_MAX:
            taken = list(pieces)
            total = len(fix) + len(head) + sum(len(p) for p in taken)
        else:
            taken, got, total = [], len(head), None
            for piece in pieces:            # just enough for the journal's prefix
                taken.append(piece)
                got += len(piece)
                if got >= PREFIX_MAX:
                    break
        prefix = (head + b"".join(taken[:PREFIX_MAX]))[:PREFIX_MAX]
        from_offset = length + len(fix)
        try:
            if journal is not None:
                journal.begin(fd, length, from_offset, total, prefix)
            writer = _Writer(fd, locks)
            writer.write(fix + head)
            for piece in taken:
                writer.write(piece)
            for piece in pieces:
                writer.write(piece)
            written = writer.flush()
            if total is not None and written != total:
                raise StorageError(f"{path}: wrote {written} bytes of {total} (internal error)")
            if self.fsync:
                # Why: the MTA hears "delivered" only once the mail is on disk.
                os.fdatasync(fd)
            if journal is not None and total is None:
                # Why durable: a record without a total would take this message
                # back after a crash, and it is about to be confirmed.
                journal.end(durable=True)
        except BaseException as exc:
            guard.hold()
            self._roll_back(fd, length, journal)
            if isinstance(exc, OSError):
                raise storage_error("writing", path, exc) from None
            raise
        # Committed: from here on a signal no longer takes the message back.
        guard.hold()
        if journal is not None and total is not None:
            try:
                journal.end()
            except OSError:
                pass        # a record of a whole append is harmless (mbox_journal)
        try:
            # Why: mail readers and shells announce new mail when mtime > atime.
            now = os.fstat(fd)
            os.utime(fd, ns=(st.st_atime_ns, now.st_mtime_ns))
        except OSError:
            pass
        return from_offset

    def _encoded(self, spool, extra):
        """The message's mbox form, piece by piece, ending with the blank line."""
        encoder = MboxEncoder(self.variant, extra)
        for chunk in spool.chunks():
            out = encoder.feed(chunk)
            if out:
                yield out
        yield encoder.finish() + b"\n"

    def _separator_fix(self, fd, length, path):
        """What must precede our From_ line: the mbox must end with a blank line."""
        if length == 0:
            return b""
        if os.pread(fd, 5, 0) != b"From ":
            raise StorageError(f"{path} is not an mbox file (it does not begin with a "
                               "From_ line): refusing to append to it")
        tail = os.pread(fd, 2, length - 2) if length >= 2 else b""
        if tail == b"\n\n":
            return b""
        return b"\n" if tail.endswith(b"\n") else b"\n\n"

    def _roll_back(self, fd, length, journal):
        """Truncate back to length and make it durable; the journal follows."""
        try:
            # Why: nothing of a failed append may stay, and the cut must be on disk
            # before the journal forgets it.
            os.ftruncate(fd, length)
            if self.fsync:
                os.fsync(fd)
        except OSError:
            return          # the journal keeps the record: the next delivery cuts it
        if journal is not None:
            try:
                journal.clear()
            except OSError:
                pass

    # --- the lock group helper ------------------------------------------------------

    def _check_helper(self, path, err, purpose):
        """Make sure mailslot-dotlock may be used for path; StorageError if not."""
        head = path.rpartition("/")[0] or "/"
        if path != self.location.inbox:
            raise storage_error(f"trying to {purpose}: not INBOX, so no privileged "
                                "locking for", path, err)
        if not self.privileged_group:
            group = _group_name_of(head)
            hint = f"set mail_privileged_group={group}" if group else \
                "nonstandard permissions"
            raise StorageError(f"{path}: cannot {purpose}: {_errno_text(err)} in {head} "
                               f"({hint})")
        import grp
        try:
            gid = grp.getgrnam(self.privileged_group).gr_gid
        except KeyError:
            raise ConfigError(f"unknown group {self.privileged_group!r}",
                              key="mail_privileged_group") from None
        try:
            st = os.stat(self.dotlock_helper)
        except OSError as exc:
            raise StorageError(f"{path}: cannot {purpose} ({_errno_text(err)} in {head}) "
                               f"and {self.dotlock_helper} is missing: "
                               f"{_errno_text(exc)}") from None
        if (st.st_mode & 0o170000) != 0o100000 or not st.st_mode & 0o2000 \
                or st.st_gid != gid or st.st_uid != 0:
            raise StorageError(f"{path}: cannot {purpose} ({_errno_text(err)} in {head}) "
                               f"and {self.dotlock_helper} is not root-owned set-group-id "
                               f"{self.privileged_group} (reinstall it)")

    def _run_helper(self, command, path):
        """Run mailslot-dotlock command path; return (exit code, its diagnostic).

        During a save it runs with signals held (see _SignalGuard.run_held): the
        helper is bounded by its own attempts, and whether it took a lock must be
        known before a signal may unwind the save.
        """
        guard = self._guard
        if guard is not None:
            return guard.run_held(self._spawn_helper, command, path)
        return self._spawn_helper(command, path)

    def _spawn_helper(self, command, path):
        r, w = os.pipe()
        try:
            pid = os.posix_spawn(self.dotlock_helper, [self.dotlock_helper, command, path],
                                 {"PATH": "/usr/bin:/bin"}, file_actions=[
                                     (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                                     (os.POSIX_SPAWN_DUP2, w, 2)])
        except OSError as err:
            os.close(r)
            os.close(w)
            raise storage_error("running", self.dotlock_helper, err) from None
        os.close(w)
        chunks = []
        try:
            while True:
                data = os.read(r, 4096)
                if not data:
                    break
                if sum(len(c) for c in chunks) < HELPER_ERROR_MAX:
                    chunks.append(data)
        finally:
            os.close(r)
            _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        message = b"".join(chunks)[:HELPER_ERROR_MAX].decode("utf-8", "replace").strip()
        return code, message or f"exit status {code}"


class _Writer:
    """Buffered appends to the mbox; refreshes a dotlock on long writes."""

    def __init__(self, fd, locks):
        self.fd, self.locks = fd, locks
        self.pieces, self.pending, self.written = [], 0, 0

    def write(self, data):
        if data:
            self.pieces.append(data)
            self.pending += len(data)
            if self.pending >= COPY_CHUNK:
                self._drain()

    def _drain(self):
        data = b"".join(self.pieces)
        self.pieces, self.pending = [], 0
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n
        self.locks.touch_if_due()

    def flush(self):
        if self.pieces:
            self._drain()
        return self.written


class _MboxLocks:
    """The locks of mbox_write_locks on one mbox, taken in order, released reversed."""

    def __init__(self, storage, dir_fd, dir_path, fname, is_inbox, mbox_fd):
        self.storage = storage
        self.dir_fd, self.dir_path, self.fname = dir_fd, dir_path, fname
        self.path = f"{dir_path}/{fname}"
        self.is_inbox = is_inbox
        self.mbox_fd = mbox_fd
        self.dotlock = None             # a locking.Dotlock we made ourselves
        self.helper_locked = False      # a dotlock made by mailslot-dotlock
        self.dotlock_tried = False
        self.fd_locks = []              # methods held on mbox_fd
        self.last_touch = time.monotonic()
        self.guard = None

    def acquire(self, guard):
        """Take every lock within mbox_lock_timeout; reopen a replaced mbox.

        The first lock is waited for (nothing else is held then). A later one is
        waited for only while readers alone hold it (fcntl read locks: a reader
        never waits for a dotlock); if a writer holds it, or it is a busy dotlock
        or flock, everything is released and the round starts again after a
        pause. Why: another program may take the same locks in the other order --
        Debian's Dovecot defaults to "fcntl dotlock", upstream's and ours is
        "dotlock fcntl" -- holding its first lock while it waits for its second,
        and if we did the same both would wait for ever.
        """
        self.guard = guard
        deadline = time.monotonic() + self.storage.lock_timeout
        pause = LOCK_BACKOFF_MIN_SECS
        reopened = 0
        while True:
            held = True
            for i, method in enumerate(self.storage.write_locks):
                wait = i == 0
                if method.startswith("dotlock"):
                    held = self._dotlock(method, deadline, wait)
                else:
                    held = self._fd_lock(method, deadline, wait)
                if not held:
                    break
            if held:
                if self._still_same_file():
                    return
                self.release()
                reopened += 1
                if reopened >= REOPEN_ATTEMPTS:
                    raise StorageError(f"{self.path}: the mbox keeps being replaced while "
                                       "we lock it")
                self._reopen()
                continue
            self.release()
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise self._timeout()
            time.sleep(min(remaining, pause + os.urandom(1)[0] / 255 * pause))
            pause = min(pause * 2, LOCK_BACKOFF_MAX_SECS)

    def _remaining(self, deadline):
        return max(0.0, deadline - time.monotonic())

    def _timeout(self):
        return StorageError(f"{self.path}: Timeout while waiting for lock "
                            f"(mbox_lock_timeout={self.storage.lock_timeout}s)")

    def _next_fd_method(self):
        methods = self.storage.write_locks
        for method in methods[methods.index("dotlock" if "dotlock" in methods
                                            else "dotlock_try") + 1:]:
            if not method.startswith("dotlock"):
                return method
        return None

    def _may_override(self):
        """Dovecot's dotlock callback: a dotlock looks stale by age; is it?"""
        method = self._next_fd_method()
        if method is None:
            return True
        try:
            if not lock_file(self.mbox_fd, method, timeout=0):
                return False        # its holder still holds the next lock
        except OSError:
            return True
        unlock_file(self.mbox_fd, method)
        return True

    def _dotlock(self, method, deadline, wait):
        """Take the dotlock (waiting only if wait); True if held or not needed."""
        import errno
        storage = self.storage
        self.dotlock_tried = True
        try:
            st = os.fstat(self.mbox_fd)
            lock = acquire_dotlock(self.dir_fd, self.fname, hostname=storage.hostname,
                                   stale_timeout=storage.change_timeout,
                                   timeout=self._remaining(deadline) if wait else 0,
                                   mode=(st.st_mode & 0o666) | 0o600,
                                   may_override=self._may_override)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                if method == "dotlock_try":
                    return True     # Dovecot: dotlock_try gives up quietly
                storage._check_helper(self.path, err, "create a dotlock")
                return self._helper_lock(deadline, wait)
            if method == "dotlock_try" and err.errno in (errno.ENOSPC, errno.EDQUOT):
                return True
            raise storage_error("dotlocking", self.path, err) from None
        if lock is None:
            if wait:
                raise self._timeout()
            return False
        self.dotlock = lock
        return True

    def _helper_lock(self, deadline, wait):
        """Dotlock through mailslot-dotlock: "lock" (one run tries for about 20 s)
        when this is the lock to wait for, else "trylock" (one check), so that the
        locks already held are never kept while the helper waits."""
        storage = self.storage
        command = "lock" if wait else "trylock"
        while True:
            code, message = storage._run_helper(command, self.path)
            if code == 0:
                self.helper_locked = True           # released by release()
                self.last_touch = time.monotonic()
                self.guard.checkpoint()
                return True
            self.guard.checkpoint()
            if code == 75 and "lock-timeout" in message:
                if not wait:
                    return False
                if self._remaining(deadline) > 0:
                    continue        # keep asking until our own mbox_lock_timeout
                raise self._timeout()
            raise StorageError(f"{self.path}: {storage.dotlock_helper} refused to lock it: "
                               f"{message}")

    def _fd_lock(self, method, deadline, wait):
        """Take an fcntl/flock/lockf lock (see acquire() for the waiting); True if
        held, False if it is for a writer who may be waiting for us."""
        try:
            if wait:
                ok = lock_file(self.mbox_fd, method, timeout=self._remaining(deadline),
                               tick=self.touch_if_due, tick_secs=DOTLOCK_TOUCH_SECS)
                if not ok:
                    raise self._timeout()
            else:
                ok = self._fd_lock_after_others(method, deadline)
                if not ok:
                    return False
        except OSError as err:
            raise storage_error(f"{method} locking", self.path, err) from None
        self.fd_locks.append(method)
        return True

    def _fd_lock_after_others(self, method, deadline):
        while True:
            if lock_file(self.mbox_fd, method, timeout=0):
                return True
            blocker = file_lock_blocker(self.mbox_fd, method)
            if blocker is None:
                continue            # let go meanwhile: try again at once
            if blocker != "shared":
                return False
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise self._timeout()
            # Readers only: wait for them, in slices, so that a writer that slips
            # in meanwhile (and may wait for our dotlock) is noticed.
            if lock_file(self.mbox_fd, method, timeout=min(READER_WAIT_SECS, remaining),
                         tick=self.touch_if_due, tick_secs=DOTLOCK_TOUCH_SECS):
                return True

    def touch_if_due(self):
        """Refresh our dotlock's mtime every DOTLOCK_TOUCH_SECS (long waits, writes)."""
        if time.monotonic() - self.last_touch < DOTLOCK_TOUCH_SECS:
            return
        self.last_touch = time.monotonic()
        if self.dotlock is not None:
            if not self.dotlock.is_ours():
                raise StorageError(f"{self.path}: our dotlock was overridden")
            try:
                self.dotlock.touch()
            except OSError:
                pass
        elif self.helper_locked:
            code, message = self.storage._run_helper("touch", self.path)
            self.guard.checkpoint()
            if code != 0:
                raise StorageError(f"{self.path}: our dotlock could not be refreshed: "
                                   f"{message}")

    def _still_same_file(self):
        try:
            now = os.stat(self.fname, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        held = os.fstat(self.mbox_fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def _reopen(self):
        old, self.mbox_fd = self.mbox_fd, None
        os.close(old)
        self.mbox_fd = self.storage._open_mbox(self.dir_fd, self.dir_path, self.fname,
                                               self.is_inbox, (self.fname,))

    def release(self):
        """Release everything held, in reverse order; never raises for a lost lock."""
        while self.fd_locks:
            method = self.fd_locks.pop()
            try:
                unlock_file(self.mbox_fd, method)
            except OSError:
                pass        # closing the fd releases it anyway
        if self.helper_locked:
            self.helper_locked = False
            try:
                self.storage._run_helper("unlock", self.path)
            except (OSError, StorageError):
                pass
        if self.dotlock is not None:
            lock, self.dotlock = self.dotlock, None
            try:
                lock.release()
            except OSError:
                pass
        elif self.dotlock_tried:
            self._remove_orphan_dotlock()
        self.dotlock_tried = False

    def _remove_orphan_dotlock(self):
        """An interrupted acquire may have made the lock file: ours names our pid.

        A signal acted on just after mailslot-dotlock made the lock, before we
        noted it, leaves one in a directory we cannot write (the spool): the
        helper made it with our pid, so the helper's unlock (which removes only a
        lock naming its caller's process) takes it away.
        """
        lock_name = self.fname + DOTLOCK_SUFFIX
        if read_lock_pid(self.dir_fd, lock_name, self.storage.hostname) == os.getpid():
            try:
                os.unlink(lock_name, dir_fd=self.dir_fd)
            except PermissionError:
                if self.storage.dotlock_helper:
                    try:
                        self.storage._run_helper("unlock", self.path)
                    except (OSError, StorageError):
                        pass
            except OSError:
                pass

    def close(self):
        if self.mbox_fd is not None:
            fd, self.mbox_fd = self.mbox_fd, None
            os.close(fd)


def check_mbox_file(st, path):
    """Refuse anything but a regular file of ours with one link (StorageError)."""
    if (st.st_mode & 0o170000) != 0o100000:
        raise StorageError(f"{path}: not a regular file, refused")
    if st.st_uid != os.geteuid():
        raise StorageError(f"{path}: owned by uid {st.st_uid}, not by the delivering user "
                           f"(uid {os.geteuid()}), refused")
    if st.st_nlink != 1:
        raise StorageError(f"{path}: has {st.st_nlink} hard links, refused (a link could "
                           "point the delivery at another file)")


def _errno_text(err):
    import errno
    name = errno.errorcode.get(getattr(err, "errno", None) or 0)
    text = getattr(err, "strerror", None) or str(err)
    return f"{text} ({name})" if name else text


def _group_name_of(path):
    """The group of a group-writable, not world-writable directory (Dovecot's hint)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_mode & 0o002 or not st.st_mode & 0o020:
        return None
    import grp
    try:
        return grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        return str(st.st_gid)
