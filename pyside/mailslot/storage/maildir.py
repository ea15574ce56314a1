"""Maildir storage, byte-compatible with Dovecot 2.3's maildir saving.

One save, in this order (src/lib-storage/index/maildir/maildir-save.c):
  1. tmp/<sec>.M<usec>P<pid>.<host>, opened O_CREAT|O_EXCL|O_NOFOLLOW, mode derived
     from the mailbox directory as Dovecot derives it ((dir mode & 0666) | 0600);
  2. the message is written (or hard-linked from a copy this delivery already
     saved), then fsync()ed unless mail_fsync=never;
  3. dovecot-uidlist.lock is tried once (a stale lock is broken, a live one is not);
  4. with keywords (non-system flags), their letters are found or added in
     dovecot-keywords (maildir_keywords.py: new ones only with the lock, that file
     made durable first); rename into new/<base>,S=<size>,W=<vsize> -- or
     cur/<...>:2,<flags> when the message has flags: system letters (DFRST) and
     keyword letters (a-z), sorted by ASCII -- and fsync the directory unless
     mail_fsync=never;
  5. with the lock: the next UID is appended to dovecot-uidlist (created as
     Dovecot would when missing) and fdatasync()ed, as Dovecot does with
     mail_fsync=optimized (a UID an IMAP reader may already have seen must survive
     a crash, or the next delivery could reuse it for another message); without
     the lock the file stays in new/ without a UID, and Dovecot assigns one at
     its next sync -- as dovecot-lda does. In a long-lived process that sets
     PARALLEL_SYNC (mailslot-lmtpd) the directory fsync of step 4 runs in another
     thread while this one writes and syncs the uidlist, so the two flushes
     overlap (the server hands it off only while no other delivery of its process
     is in flight); the save still returns only once both are done, and a failed
     directory fsync still fails it (the uidlist's record of a name that is then
     removed is what Dovecot sees after any expunge: the UID is simply unused).
Any failure before the message is durable in new/ or cur/ removes what was
written: there is never a partial file in new/ or cur/. After that point nothing
fails the save (the MTA would deliver it twice): a uidlist that could not be
updated (its partial record truncated back), a failing close or lock release are
SaveResult.warnings, and a save without a UID is always named there.

Layouts: Maildir++ (INBOX is the root; folder a/b is the directory ".a.b" with
tmp/ new/ cur/ and an empty maildirfolder file) and LAYOUT=fs (folder a/b is
a/b/, parents are plain directories; a component may not be cur/new/tmp nor the
name of a file Dovecot keeps beside them, FS_RESERVED_NAMES: dovecot-uidlist,
subscriptions at the top, maildirsize, dovecot.index*, ...). Dovecot's LDA also leaves a maildirfolder
in an INBOX directory it had to create; mailslot does not, because Maildir++
quota readers (maildirsize, Courier's deliverquota) take that file to mean "a
subfolder: the quota file is in the parent". Components are stored in modified UTF-7
(or UTF-8 with the UTF-8 option). CONTROL= moves dovecot-uidlist,
dovecot-uidvalidity and subscriptions into a separate tree exactly as Dovecot
lays it out (".INBOX" or "INBOX" for the inbox there).

The subscriptions file is Dovecot's list-level file (subscriptions.py, shared with mbox).

Errors: MailboxNameError (a name the layout cannot store), MailboxNotFoundError,
StorageError for every OSError, naming the path and the errno (dirs.storage_error;
a symlink or non-directory where a directory belongs is its RefusedError); EFBIG
explains the RLIMIT_FSIZE limit (Postfix's mailbox_size_limit, applied through ulimit -f).
Keywords that cannot be stored (not a valid IMAP keyword, all 26 letters taken,
a new one while dovecot-uidlist is locked by someone else, an unusable
dovecot-keywords) are dropped, never fail the save, and are named in
SaveResult.warnings (keywords.py, maildir_keywords.py).

Security: below the configured roots every directory is opened relative to its
parent's fd with O_NOFOLLOW|O_DIRECTORY (dirs.py, shared with mbox: why, and how
new directories get their mode and group) and every file with O_NOFOLLOW, so a
symlink planted in the Maildir (a folder, tmp/, new/, the uidlist) is refused
with a StorageError instead of being followed out of the mail root.
"""

import os
import time

from ..errors import MailboxNameError, MailboxNotFoundError, StorageError
from . import index
from .locking import acquire_dotlock
from .base import INBOX, SaveResult, Storage, checked_name, encode_mutf7
from .dirs import NAME_MAX, DirOpener, Fds, current_umask, storage_error, sync_directory

# submit(fn, *args) -> a future, set by a long-lived process with threads
# (mailslot-lmtpd): the new name's directory fsync then overlaps the uidlist's
# (step 5). It may answer None (the server does when other deliveries are in
# flight): the save then makes that fsync itself, in turn. None in the pipe: one
# thread, both in turn.
PARALLEL_SYNC = None

SUBDIRS = ("cur", "new", "tmp")          # the order Dovecot creates them in
MAILDIRFOLDER_NAME = "maildirfolder"
# With LAYOUT=fs a folder is a directory beside a mailbox's own files, so a folder
# may not take the name of one of them (issue 12.6): Dovecot's control and index
# files (maildir-uidlist.c, maildir-keywords.c, mailbox-uidvalidity.c, the index
# files, ACLs, the shared-folder marker), the Maildir++ quota and folder markers,
# and the temp files of the link()ed dotlocks (locking.py).
FS_RESERVED_NAMES = frozenset((
    index.UIDLIST_NAME, index.UIDLIST_TEMP_NAME, index.UIDLIST_NAME + ".lock",
    "dovecot-keywords", "dovecot-keywords.lock", "dovecot-shared", "dovecot-acl",
    "dovecot-acl-list", "dovecot.mailbox.log", "maildirsize", MAILDIRFOLDER_NAME))
FS_RESERVED_PREFIXES = (index.UIDVALIDITY_NAME, "dovecot.index", "dovecot.list.index",
                        "dovecot-uidlist.", "dovecot-keywords.", ".temp.")
# IMAP system flags -> Maildir info letters (maildir-filename-flags.c).
FLAG_LETTERS = {"\\answered": "R", "\\seen": "S", "\\deleted": "T",
                "\\draft": "D", "\\flagged": "F"}

_last_stamp = (0, 0)


def _unique_stamp(clock=time.time):
    """(sec, usec) of clock(), strictly increasing within this process (as Dovecot's)."""
    global _last_stamp
    if clock is time.time:
        ns = time.time_ns()         # exact, where a float would round the microseconds
    else:
        ns = round(clock() * 1_000_000) * 1000
    stamp = (ns // 1_000_000_000, (ns // 1000) % 1_000_000)
    if stamp <= _last_stamp:
        sec, usec = _last_stamp
        usec += 1
        if usec == 1_000_000:
            sec, usec = sec + 1, 0
        stamp = (sec, usec)
    _last_stamp = stamp
    return stamp


def maildir_sort_key(fname):
    """Dovecot's maildir_filename_sort_cmp order: seconds, microseconds, name."""
    i = 0
    while i < len(fname) and fname[i].isdigit():
        i += 1
    secs = int(fname[:i]) if i else 0
    usecs = -1
    rest = fname[i:]
    if rest.startswith("."):
        field = rest[1:].split(".", 1)[0].split(":", 1)[0]
        m = field.find("M")
        if m >= 0:
            j = m + 1
            while j < len(field) and field[j].isdigit():
                j += 1
            usecs = int(field[m + 1:j] or 0)
    return (secs, usecs, fname.partition(":")[0])


def sizes_from_name(fname):
    """The ,S=<size> and ,W=<vsize> values of a Maildir file name, or None."""
    base = fname.partition(":")[0]
    found = {}
    for field in base.split(",")[1:]:
        key, eq, value = field.partition("=")
        if eq and key in ("S", "W") and value.isdigit():
            found[key] = int(value)
    if "S" in found and "W" in found:
        return found["S"], found["W"]
    return None


def flag_letters(flags):
    """The sorted Maildir info letters for IMAP system flags (keywords: see save)."""
    letters = set()
    for flag in flags:
        letter = FLAG_LETTERS.get(flag.lower())
        if letter:
            letters.add(letter)
    return "".join(sorted(letters))


class MaildirStorage(Storage):
    """Maildir++ or LAYOUT=fs Maildir below one mail root."""

    def __init__(self, location, *, user, hostname, mail_fsync, clock=time.time):
        self.location = location
        # Seconds since the epoch: file names and a new UIDVALIDITY (tests fix it).
        self.clock = clock
        self.user = user
        self.hostname = hostname
        self.fsync = mail_fsync != "never"
        self.fs_layout = location.layout == "fs"
        self.default_separator = "/" if self.fs_layout else "."
        # The engine may set its namespace separator here so that
        # SaveResult.mailbox reads as the user writes it ("box/sub").
        self.display_separator = None
        # The Maildir spec's escapes: '/' and ':' cannot appear in a file name
        # part (Dovecot refuses such hostnames; for any other it is identical).
        self.name_host = hostname.replace("/", "\\057").replace(":", "\\072")
        # Directories below the roots: dirs.py, shared with mbox; Maildir words
        # no refusal of its own.
        self.dirs = DirOpener(umask=current_umask(), fsync=self.fsync)

    # --- names and paths ------------------------------------------------------------

    def _encode(self, part):
        return part if self.location.utf8 else encode_mutf7(part)

    def _disk_parts(self, name):
        """Directory entries below the mail root for a non-INBOX mailbox."""
        enc = []
        for part in name:
            if not self.fs_layout and "." in part:
                raise MailboxNameError(
                    "'.' cannot be stored in a Maildir++ folder name (use LAYOUT=fs)")
            if self.fs_layout and part in SUBDIRS:
                raise MailboxNameError(f"mailbox name component {part!r} is reserved by Maildir")
            e = self._encode(part)
            if self.fs_layout and (e in FS_RESERVED_NAMES or e.startswith(FS_RESERVED_PREFIXES)
                                   or (not enc and e == self.location.subscriptions_name)):
                raise MailboxNameError(f"mailbox name component {part!r} is the name of a "
                                       "file Dovecot keeps in a Maildir")
            if len(e.encode("utf-8")) > NAME_MAX:
                raise MailboxNameError("mailbox name component is too long for the filesystem")
            enc.append(e)
        if self.fs_layout:
            return enc
        folder = "." + ".".join(enc)
        if len(folder.encode("utf-8")) > NAME_MAX:
            raise MailboxNameError("mailbox name is too long for a Maildir++ folder")
        return [folder]

    def _mail_place(self, name):
        """(base path, entries below it) of a mailbox's directory."""
        if name == (INBOX,):
            return (self.location.inbox or self.location.root), []
        return self.location.root, self._disk_parts(name)

    def _control_place(self, name):
        """(base path, entries) of the directory holding a mailbox's dovecot-uidlist."""
        if self.location.control is None:
            return self._mail_place(name)
        if name == (INBOX,):
            return self.location.control, [INBOX if self.fs_layout else "." + INBOX]
        return self.location.control, self._disk_parts(name)

    def _control_root(self):
        return self.location.control or self.location.root

    def display_name(self, name):
        """The name for the log: components joined with display_separator."""
        return (self.display_separator or self.default_separator).join(name)

    # --- directories ----------------------------------------------------------------

    def _open_mailbox(self, name, fds, *, create):
        """Open a mailbox directory; MailboxNotFoundError unless create."""
        base, parts = self._mail_place(name)
        try:
            return self.dirs.walk(base, parts, fds, create=create,
                                  create_base=create or name == (INBOX,))
        except FileNotFoundError:
            raise MailboxNotFoundError(
                f"mailbox {self.display_name(name)} does not exist") from None

    def _open_subdirs(self, mbox_fd, path, perm, fds, *, create):
        out = {}
        for sub in SUBDIRS:
            try:
                out[sub] = fds.add(self.dirs.open_child(mbox_fd, sub, f"{path}/{sub}",
                                                        create=create, perm=perm))
            except FileNotFoundError:
                raise MailboxNotFoundError(f"{path}: not a Maildir (no {sub}/)") from None
        return out

    def _is_mailbox_dir(self, fd, name):
        if name == (INBOX,) or not self.fs_layout:
            return True
        # In LAYOUT=fs a directory without Maildir subdirectories is only a parent.
        for sub in SUBDIRS:
            try:
                st = os.stat(sub, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (st.st_mode & 0o170000) == 0o040000:
                return True
        return False

    # --- the Storage interface ------------------------------------------------------

    def mailbox_exists(self, name):
        name = checked_name(name)
        if name == (INBOX,):
            return True         # IMAP's INBOX always exists; saving creates it
        with Fds() as fds:
            try:
                fd, _path, _perm = self._open_mailbox(name, fds, create=False)
            except MailboxNotFoundError:
                return False
            return self._is_mailbox_dir(fd, name)

    def create_mailbox(self, name):
        name = checked_name(name)
        with Fds() as fds:
            fd, path, perm = self._open_mailbox(name, fds, create=True)
            perm = self.dirs.perm_of(fd)
            self._open_subdirs(fd, path, perm, fds, create=True)
            if not self.fs_layout and name != (INBOX,):
                self._touch_maildirfolder(fd, path, perm)
            self._create_uidlist_if_missing(name, perm, fds, (fd, path))

    def _touch_maildirfolder(self, fd, path, perm):
        try:
            f = os.open(MAILDIRFOLDER_NAME, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                        perm.file_mode, dir_fd=fd)
        except OSError as err:
            raise storage_error("creating", f"{path}/{MAILDIRFOLDER_NAME}", err) from None
        try:
            perm.apply(f, perm.file_mode)
        finally:
            os.close(f)

    def _open_control(self, name, fds, perm, mailbox=None):
        """The directory of the mailbox's dovecot-uidlist (created in CONTROL=).

        mailbox: the (fd, path) of the mailbox directory, reused without CONTROL=.
        """
        if self.location.control is None and mailbox is not None:
            return mailbox
        base, parts = self._control_place(name)
        fd, path, _ = self.dirs.walk(base, parts, fds, create=True, create_base=True)
        return fd, path

    def _create_uidlist_if_missing(self, name, perm, fds, mailbox):
        """A new mailbox gets its uidlist at once, as Dovecot creates it."""
        ctl_fd, ctl_path = self._open_control(name, fds, perm, mailbox)
        try:
            lock = acquire_dotlock(ctl_fd, index.UIDLIST_NAME, hostname=self.hostname,
                                   stale_timeout=index.UIDLIST_LOCK_STALE_TIMEOUT,
                                   timeout=0, mode=perm.file_mode)
        except OSError as err:
            raise storage_error("locking", f"{ctl_path}/{index.UIDLIST_NAME}", err) from None
        if lock is None:
            return              # busy: whoever holds it creates or keeps the list
        try:
            state = index.inspect_uidlist(ctl_fd)
            state.close()
            if state.status == "missing":
                header = index.UidlistHeader(self._next_uid_validity(fds), 1,
                                             index.new_mailbox_guid())
                index.write_new_uidlist(ctl_fd, header, [], mode=perm.file_mode,
                                        fsync=self.fsync)
        except OSError as err:
            raise storage_error("creating", f"{ctl_path}/{index.UIDLIST_NAME}", err) from None
        finally:
            lock.release()

    def _next_uid_validity(self, fds):
        root = self._control_root()
        root_fd = fds.add(self.dirs.open_root(root, create=True))
        perm = self.dirs.perm_of(root_fd)
        from .uidvalidity import next_uid_validity
        return next_uid_validity(root_fd, mode=perm.file_mode, clock=self.clock)

    def subscribe(self, name):
        name = checked_name(name)
        from . import subscriptions    # only a subscribing delivery pays for it
        subscriptions.subscribe(self.dirs, self._control_root(), self.location.subscriptions_name,
                                [self._encode(p) for p in name], self.default_separator,
                                hostname=self.hostname, fsync=self.fsync)

    def save(self, name, source, *, flags=()):
        name = checked_name(name)
        letters = flag_letters(flags)
        keywords, warnings = (), []
        if any(flag[:1] != "\\" for flag in flags):
            # Only a save with a keyword pays for the keyword code.
            from .keywords import split_keywords
            keywords, warnings = split_keywords(flags)
        mbox_path = self.display_name(name)
        try:
            with Fds() as fds:
                mbox_fd, mbox_path, perm = self._open_mailbox(name, fds,
                                                              create=name == (INBOX,))
                if not self._is_mailbox_dir(mbox_fd, name):
                    raise MailboxNotFoundError(
                        f"mailbox {self.display_name(name)} does not exist")
                if name != (INBOX,):
                    # A folder below the root: its own modes. (INBOX is the walk's
                    # base, whose modes the walk already read: no second fstat.)
                    perm = self.dirs.perm_of(mbox_fd)
                # Dovecot re-creates missing tmp/new/cur of an existing mailbox.
                sub = self._open_subdirs(mbox_fd, mbox_path, perm, fds, create=True)
                base, size, vsize = self._write_tmp(source, sub["tmp"], mbox_path, perm)
                uid, uid_error, path = self._commit(
                    name, fds, sub, base, f"{base},S={size},W={vsize}", letters, keywords,
                    warnings, (mbox_fd, mbox_path), perm)
        except OSError as err:
            # Only before the commit (_commit turns later failures into warnings):
            # the error names the mailbox, never a bare "[Errno 5]".
            raise storage_error("saving into", mbox_path, err) from None
        return SaveResult(self.display_name(name), uid, path, size, vsize, uid_error,
                          warnings=tuple(warnings))

    # --- the steps of a save --------------------------------------------------------

    def _new_tmp(self, tmp_fd, perm, tmp_path):
        """Create a unique tmp file; return (base name, fd)."""
        while True:
            sec, usec = _unique_stamp(self.clock)
            base = f"{sec}.M{usec}P{os.getpid()}.{self.name_host}"
            try:
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, perm.file_mode, dir_fd=tmp_fd)
            except FileExistsError:
                continue        # the clock went backwards: take the next name
            except OSError as err:
                raise storage_error("creating", f"{tmp_path}/{base}", err) from None
            return base, fd

    def _link_tmp(self, source, tmp_fd):
        """Hard-link source.stored_path into tmp/; return (base, size, vsize) or None."""
        stored = getattr(source, "stored_path", None)
        if not stored:
            return None
        # The source knows its sizes (a -p file has no ,S=,W= in its name).
        sizes = getattr(source, "sizes", None) or sizes_from_name(stored.rpartition("/")[2])
        if not (isinstance(sizes, tuple) and len(sizes) == 2
                and all(isinstance(v, int) and v >= 0 for v in sizes)):
            return None
        try:
            st = os.stat(stored, follow_symlinks=False)
        except OSError:
            return None
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size != sizes[0]:
            return None
        sec, usec = _unique_stamp(self.clock)
        base = f"{sec}.M{usec}P{os.getpid()}.{self.name_host}"
        try:
            os.link(stored, base, dst_dir_fd=tmp_fd, follow_symlinks=False)
        except OSError:
            return None         # another filesystem, a name clash, ...: write a copy
        return base, sizes[0], sizes[1]

    def _write_tmp(self, source, tmp_fd, mbox_path, perm):
        """Write the message into tmp/ durably; return (base name, size, vsize)."""
        tmp_path = f"{mbox_path}/tmp"
        linked = self._link_tmp(source, tmp_fd)
        if linked is not None:
            return linked       # already durable: it was fsynced when first saved
        base, fd = self._new_tmp(tmp_fd, perm, tmp_path)
        path = f"{tmp_path}/{base}"
        try:
            perm.apply(fd, perm.file_mode)
            size, vsize = source.write_to(fd)
            real = os.fstat(fd).st_size
            if real != size:
                raise StorageError(f"{path}: message source reported {size} bytes "
                                   f"but the file has {real}")
            if self.fsync:
                # Why: the rename into new/ promises the MTA the mail is safe;
                # the data must be on disk before the name is.
                os.fsync(fd)
            closing, fd = fd, -1
            os.close(closing)
        except BaseException as exc:
            if fd != -1:
                os.close(fd)
            # Never leave a partial message behind, whatever failed.
            try:
                os.unlink(base, dir_fd=tmp_fd)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise storage_error("writing", path, exc) from None
            raise
        return base, size, vsize

    def _commit(self, name, fds, sub, base, final, letters, keywords, warnings, mailbox,
                perm):
        """Move tmp/base into new/ or cur/ (final plus its flags) and assign a UID.

        letters: the system flags' letters; keywords: validated keyword names, whose
        letters are decided under the uidlist lock (warnings gets what was dropped).
        Returns (uid, uid_error, path).
        """
        mbox_path = mailbox[1]
        lock = state = None
        uid_error = None
        existing = None
        ctl_fd = ctl_path = None
        try:
            try:
                ctl_fd, ctl_path = self._open_control(name, fds, perm, mailbox)
                lock = acquire_dotlock(ctl_fd, index.UIDLIST_NAME, hostname=self.hostname,
                                       stale_timeout=index.UIDLIST_LOCK_STALE_TIMEOUT,
                                       timeout=0, mode=perm.file_mode)
                if lock is None:
                    uid_error = "dovecot-uidlist is locked by another process"
                else:
                    state = index.inspect_uidlist(ctl_fd)
                    if state.status == "unusable":
                        uid_error = state.reason
                    elif state.status == "missing":
                        # Dovecot gives the files already there their UIDs first.
                        existing = self._existing_basenames(sub)
            except (OSError, StorageError) as err:
                uid_error = f"dovecot-uidlist not usable: {getattr(err, 'strerror', None) or err}"
                if state is not None:
                    state.close()
                    state = None        # no UID this time; the lock is released below
            if keywords:
                letters = "".join(sorted(letters + self._keyword_letters(
                    ctl_fd, ctl_path, keywords, warnings, lock is not None, perm, sub, base)))
            dest = "cur" if letters else "new"
            if letters:
                final += ":2," + letters
            dest_fd = sub[dest]
            path = f"{mbox_path}/{dest}/{final}"
            try:
                os.rename(base, final, src_dir_fd=sub["tmp"], dst_dir_fd=dest_fd)
            except OSError as err:
                try:
                    os.unlink(base, dir_fd=sub["tmp"])
                except OSError:
                    pass
                raise storage_error("moving into", path, err) from None
            numbered = state is not None and state.status in ("ok", "missing")
            syncing = None
            if self.fsync:
                if numbered and PARALLEL_SYNC is not None:
                    # Why in another thread: this one meanwhile appends and syncs
                    # the uidlist; the two flushes overlap (step 5).
                    syncing = PARALLEL_SYNC(sync_directory, dest_fd)
                if syncing is None:
                    # Why before the uidlist: the record must not name a file
                    # whose name may not survive a crash.
                    self._sync_new_name(dest_fd, final, f"{mbox_path}/{dest}", None)
            uid = None
            try:
                if numbered:
                    try:
                        uid = self._assign_uid(fds, ctl_fd, state, existing, final, perm)
                    except (OSError, ValueError) as err:
                        # The mail is saved; Dovecot will number it at its next sync.
                        uid_error = (f"{ctl_path}/{index.UIDLIST_NAME} not updated: "
                                     f"{getattr(err, 'strerror', None) or err}")
            finally:
                if syncing is not None:
                    # Always waited for: dest_fd stays open until that fsync is over.
                    self._sync_new_name(dest_fd, final, f"{mbox_path}/{dest}", syncing)
            # The message is committed: from here on nothing may fail the save (the
            # MTA would deliver it twice); what goes wrong is a warning.
            if uid is None:
                warnings.append(f"{path}: saved without a UID ({uid_error}); Dovecot "
                                "numbers it at its next sync")
            if state is not None:
                closing, state = state, None
                try:
                    closing.close()
                except OSError as err:
                    warnings.append(f"{ctl_path}/{index.UIDLIST_NAME}: close failed "
                                    f"after the save: {err.strerror or err}")
            return uid, uid_error, path
        finally:
            if state is not None:
                try:
                    state.close()
                except OSError:
                    pass
            if lock is not None:
                try:
                    lock.release()
                except OSError as err:
                    warnings.append(f"{ctl_path}/{index.UIDLIST_NAME}.lock: releasing "
                                    f"failed: {err.strerror or err}")

    def _sync_new_name(self, dest_fd, final, dest_path, syncing):
        """fsync the directory of the new name (or wait for syncing, that fsync
        running in another thread); on failure remove the name and fail the save."""
        try:
            # Why: the message is delivered only once its name is durable.
            # (Shared with the other threads committing into this directory
            # at the same moment: group commit, storage/dirs.py, sync_directory.)
            if syncing is None:
                sync_directory(dest_fd)
            else:
                syncing.result()
        except OSError as err:
            # Not durable means not delivered: take it back, as Dovecot's
            # rollback does, so that the MTA's retry makes no duplicate.
            try:
                os.unlink(final, dir_fd=dest_fd)
            except OSError:
                pass
            raise storage_error("syncing", dest_path, err) from None

    def _keyword_letters(self, ctl_fd, ctl_path, keywords, warnings, locked, perm, sub,
                         base):
        """The letters of keywords (maildir_keywords.py); tmp/base goes on failure."""
        try:
            from .maildir_keywords import keyword_letters
            found, dropped = keyword_letters(ctl_fd, ctl_path, keywords, may_create=locked,
                                             perm=perm, fsync=self.fsync)
        except BaseException:
            # Never leave the written message behind in tmp/, whatever failed.
            try:
                os.unlink(base, dir_fd=sub["tmp"])
            except OSError:
                pass
            raise
        warnings.extend(dropped)
        return found

    def _assign_uid(self, fds, ctl_fd, state, existing, final, perm):
        if state.status == "ok":
            return index.append_records(state, [final], fsync=self.fsync)
        header = index.UidlistHeader(self._next_uid_validity(fds), 1, index.new_mailbox_guid())
        names = list(existing) + [final]
        first = index.write_new_uidlist(ctl_fd, header, names, mode=perm.file_mode,
                                        fsync=self.fsync)
        return first + len(existing)

    def _existing_basenames(self, sub):
        names = []
        for d in ("new", "cur"):
            for entry in os.listdir(sub[d]):
                if not entry.startswith("."):
                    names.append(entry.partition(":")[0])
        names.sort(key=maildir_sort_key)
        return names
