"""Directories of a mail store: opened one entry at a time, never through a symlink.

Both formats reach a mailbox the same way, and this module is that way:

    opener = DirOpener(umask=current_umask(), fsync=True)
    with Fds() as fds:
        fd, path, perm = opener.walk("/home/bob/Maildir", [".box", "tmp"], fds,
                                     create=True, create_base=True)

  - open_root() opens a configured root by its path (the mail root, INBOX=,
    CONTROL=, INDEX=), and creates it, with its parents, when asked;
  - open_child() opens parent_fd/entry as a directory, and creates it when asked
    with the mode and group Perm derives from the root, as Dovecot derives them
    (src/lib-storage/mailbox-list.c, mailbox_list_get_permissions_stat():
    directories (root mode & 0777) | 0700, files (root mode & 0666) | 0600, the
    root's group unless the root is setgid, is in our group, or grants its group
    no more than others); a created directory is fsync()ed into its parent;
  - walk() is open_root() and then open_child() for each entry, returning the fd,
    the path (for messages) and the Perm of the root.
sync_directory() is a directory fsync shared by the threads committing into that
directory at the same moment (group commit, at the end of this file). Fds closes
every fd it was given; storage_error() turns an OSError into a
StorageError naming the action, the path and the reason (ENOSPC, EDQUOT, EFBIG and
its RLIMIT_FSIZE cause named). NAME_MAX is the longest directory entry.

Errors: open_child() refuses anything but a directory -- a symlink (even to a
directory), a regular file, a FIFO -- with RefusedError ("<path>: not a directory
(or a symlink), refused"), a StorageError subclass so that a caller can tell a
planted link from a merely unusable place. A format words its own cases through
DirOpener's two hooks: root_file_error(path) for a root that is not a directory
(mbox: Dovecot's "mbox root directory can't be a file"), child_file_error(path,
create) for a regular file where a directory belongs (mbox: the name is an mbox,
which holds mail, not folders). A missing entry without create is a
FileNotFoundError naming the whole path (open_child) or a MailboxNotFoundError
(a missing root in walk); the caller words "no such mailbox" its own way. Any
other OSError is a StorageError from storage_error(); open_root() passes
OSErrors other than these through, for its caller to name.

Security notes:
  - Why O_NOFOLLOW|O_DIRECTORY on every entry below a root: the mail store is
    writable by its user (or a shared group), who may plant a symlink where a
    folder, tmp/ or .imap/ belongs; following it would write mail, locks or
    journals wherever the link points, with the delivering uid's rights. The
    pair refuses a symlink whatever it points to (Linux reports ENOTDIR for
    it, so the refusal cannot say which of the two it was).
  - Why relative to the parent's fd (openat, mkdirat): a path is looked up again
    at each use, so someone renaming a directory between our check and our use
    could swap a symlink in above it; an fd stays the directory we checked.
  - The roots themselves are opened by path and may be symlinks: they come from
    the administrator's mail_location, not from the mailbox's owner.
  - Why 0700 for a new root: nothing says who else may read this user's mail,
    and a root's mode is what every directory and file below it inherits (Perm),
    so a new store starts private -- Dovecot's own default when it has nothing
    to copy a mode from. An administrator who wants a shared store creates its
    root with the mode and group it should have. (os.makedirs gives missing
    parents of the root the umask's default mode, not 0700.)
  - Nothing here imports more than os, stat and errno (and resource, only to
    explain an EFBIG): it is on the plain delivery path, whose start-up is the
    product's speed (docs/architecture.md, "Start-up is the speed").
"""

import _thread     # not threading: nothing more on the pipe path (sync_directory)
import errno
import os
import stat

from ..errors import MailboxNotFoundError, StorageError

# Linux NAME_MAX: the longest directory entry, e.g. a whole Maildir++ folder name.
NAME_MAX = 255
# A new root's mode (see the security notes): private to its user.
NEW_ROOT_MODE = 0o700

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class RefusedError(StorageError):
    """A symlink or a non-directory stands where a directory belongs."""


# A long-lived process that never changes its umask (mailslot-lmtpd) sets it here
# once; None: current_umask() reads it at each call (the pipe calls it once).
PROCESS_UMASK = None


def current_umask():
    """The process umask, read from /proc/self/status (Linux 4.7+) where it can be:
    setting it to read it would, for that instant, change it for every thread (the
    LMTP server's deliveries run side by side). Elsewhere: set and put straight back.
    PROCESS_UMASK when a long-lived process has set it."""
    if PROCESS_UMASK is not None:
        return PROCESS_UMASK
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _reason(err):
    names = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT", errno.EFBIG: "EFBIG"}
    text = err.strerror or str(err)
    name = names.get(err.errno) or errno.errorcode.get(err.errno)
    return f"{text} ({name})" if name else text


def _efbig_message(path):
    import resource             # only here: an EFBIG is rare, start-up is not
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = "unknown" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    return (f"writing {path}: the file size limit (RLIMIT_FSIZE) of {limit} was hit "
            f"(EFBIG): the MTA limits the size of mailbox files, e.g. Postfix's "
            f"mailbox_size_limit applied through ulimit -f")


def storage_error(action, path, err):
    """A StorageError for an OSError during action on path, with the reason named."""
    if err.errno == errno.EFBIG:
        return StorageError(_efbig_message(path))
    if err.errno == errno.ELOOP:
        return StorageError(f"{action} {path}: refusing to follow a symlink")
    return StorageError(f"{action} {path}: {_reason(err)}")


class Perm:
    """Modes for new files/dirs in a mailbox, derived from its directory (Dovecot)."""

    __slots__ = ("file_mode", "dir_mode", "gid", "umask")

    def __init__(self, st, umask):
        self.umask = umask
        self.file_mode = (st.st_mode & 0o666) | 0o600
        self.dir_mode = (st.st_mode & 0o777) | 0o700
        mode = st.st_mode
        if mode & 0o2000 or (mode & 0o070) >> 3 == mode & 0o007 or os.getegid() == st.st_gid:
            self.gid = -1       # nothing to change
        else:
            self.gid = st.st_gid

    def apply(self, fd, mode):
        """Give a freshly created fd its exact mode and group despite the umask."""
        if mode & self.umask:
            # Keep a setgid bit the kernel gave a new directory in a setgid
            # parent: shared mailboxes depend on it.
            os.fchmod(fd, mode | (os.fstat(fd).st_mode & 0o2000))
        if self.gid != -1:
            try:
                os.fchown(fd, -1, self.gid)
            except PermissionError:
                pass            # not a member: the file keeps our group, as in Dovecot


class Fds:
    """Closes every fd it was given, in reverse order."""

    def __init__(self):
        self.fds = []

    def add(self, fd):
        self.fds.append(fd)
        return fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        while self.fds:
            try:
                os.close(self.fds.pop())
            except OSError:
                pass


class DirOpener:
    """Opens a format's roots and the directories below them (see the docstring).

    umask: the process umask (current_umask()), for Perm. fsync: whether a created
    directory is made durable in its parent (mail_fsync != never).
    root_file_error(path) -> exception: raised for a root that is not a directory;
    None lets the NotADirectoryError through. child_file_error(path, create) ->
    exception: raised for a regular file where a directory belongs; None refuses it
    as any other non-directory (RefusedError).
    """

    __slots__ = ("umask", "fsync", "root_file_error", "child_file_error")

    def __init__(self, *, umask, fsync, root_file_error=None, child_file_error=None):
        self.umask = umask
        self.fsync = fsync
        self.root_file_error = root_file_error
        self.child_file_error = child_file_error

    def perm_of(self, fd):
        """The Perm for new files and directories below the directory fd."""
        return Perm(os.fstat(fd), self.umask)

    def open_root(self, path, *, create):
        """Open a configured root (symlinks in it are the administrator's choice)."""
        try:
            return os.open(path, _ROOT_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
        except NotADirectoryError:
            if self.root_file_error is None:
                raise
            raise self.root_file_error(path) from None
        try:
            # Why NEW_ROOT_MODE: a new mail root must not be readable by others;
            # its mode then governs everything created below it.
            os.makedirs(path, mode=NEW_ROOT_MODE, exist_ok=True)
            return os.open(path, _ROOT_FLAGS)
        except OSError as err:
            raise storage_error("creating", path, err) from None

    def open_child(self, parent_fd, entry, path, *, create, perm):
        """Open parent_fd/entry as a directory without following a symlink.

        path names parent_fd/entry in messages. Missing and not create: a
        FileNotFoundError naming path. create: made with perm's mode and group.
        """
        try:
            # Why relative to parent_fd with O_NOFOLLOW: see the security notes.
            return os.open(entry, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError as err:
            if not create:
                raise FileNotFoundError(err.errno, err.strerror, path) from None
        except OSError as err:
            raise self._refusal(parent_fd, entry, path, err, create) from None
        try:
            os.mkdir(entry, perm.dir_mode, dir_fd=parent_fd)
            created = True
        except FileExistsError:
            created = False     # made meanwhile by someone else: opened below
        except OSError as err:
            raise storage_error("creating", path, err) from None
        try:
            # Opened again, not trusted from the mkdir: whoever won a race may
            # have put anything there.
            fd = os.open(entry, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as err:
            raise self._refusal(parent_fd, entry, path, err, create) from None
        if created:
            try:
                perm.apply(fd, perm.dir_mode)
                if self.fsync:
                    # Why: the new directory entry must survive a crash, or a
                    # mailbox or message saved below it would vanish with it.
                    os.fsync(parent_fd)
            except OSError as err:
                os.close(fd)
                raise storage_error("creating", path, err) from None
        return fd

    def _refusal(self, parent_fd, entry, path, err, create):
        """The exception for an entry that could not be opened as a directory."""
        if err.errno not in (errno.ENOTDIR, errno.ELOOP):
            return storage_error("opening", path, err)
        if self.child_file_error is not None:
            try:
                st = os.stat(entry, dir_fd=parent_fd, follow_symlinks=False)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                return self.child_file_error(path, create)
        return RefusedError(f"{path}: not a directory (or a symlink), refused")

    def walk(self, base, parts, fds, *, create, create_base):
        """Open base/parts... one level at a time; return (fd, path, perm of base).

        Every fd opened goes into fds. A missing base (not create_base) is a
        MailboxNotFoundError; a missing entry (not create) a FileNotFoundError
        naming its path.
        """
        try:
            fd = fds.add(self.open_root(base, create=create_base))
        except FileNotFoundError:
            raise MailboxNotFoundError(f"{base}: mail root does not exist") from None
        except OSError as err:
            raise storage_error("opening", base, err) from None
        perm = self.perm_of(fd)
        path = base
        for entry in parts:
            path = f"{path}/{entry}"
            fd = fds.add(self.open_child(fd, entry, path, create=create, perm=perm))
        return fd, path, perm


# -- group commit: sync_directory ------------------------------------------------------
# A directory fsync shared by the threads that ask for it at the same moment.
#
#     sync_directory(dir_fd)      # returns once every entry made before the call is durable
#
# Group commit for the LMTP server, whose deliveries run in threads: when several
# messages are renamed into the same directory at about the same time, one fsync of
# that directory makes all their names durable. Each caller registers (after its
# rename) and waits for an fsync that *started* after its registration: if another
# thread's fsync began later, it covers this caller too and no second fsync is made.
# "250 means on disk" is not weakened: no caller returns before an fsync that began
# after its own rename has finished without error. A failing fsync raises in the
# thread that made it; the others then make their own.
#
# Directories are told apart by (st_dev, st_ino) of the opened fd, never by path, and
# an fsync of one directory never counts for another. The registry holds only the
# directories being synced right now. In a process with one delivery (the pipe) it
# costs an fstat and two uncontended locks.
#
# Errors: OSError from fstat or fsync, as os.fsync would raise it.

_registry_lock = _thread.allocate_lock()
_registry = {}         # (st_dev, st_ino) -> _DirSync while anyone syncs it


class _DirSync:
    __slots__ = ("users", "requested", "completed", "lock")

    def __init__(self):
        self.users = 0          # threads in sync_directory for this directory
        self.requested = 0      # registrations so far (each after its rename)
        self.completed = 0      # every registration up to this one is durable
        self.lock = _thread.allocate_lock()     # one fsync of it at a time


def sync_directory(fd):
    """fsync directory fd, or wait for one that began after this call (see above)."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _registry_lock:
        state = _registry.get(key)
        if state is None:
            state = _registry[key] = _DirSync()
        state.users += 1
        state.requested += 1
        mine = state.requested
    try:
        with state.lock:
            if state.completed < mine:
                # Every registration up to now came after its rename: this fsync,
                # which starts after them, makes all of them durable.
                with _registry_lock:
                    target = state.requested
                os.fsync(fd)
                state.completed = target
    finally:
        with _registry_lock:
            state.users -= 1
            if not state.users:
                del _registry[key]
