"""Writing a compiled Sieve file atomically, and safely when root does it.

write_file(target, data, mode, create_dir) replaces target with data: a temp
file is created with O_EXCL|O_NOFOLLOW in the opened target directory, written,
given mode, and renamed over target in that same directory (renameat), so a
symlink planted at the target name is replaced, never followed, and a reader
never sees a partial file. open_append(path) opens a file for appending (the
sieve-test trace) under the same rules.

As root (an administrator running `mailslot sievec` or `mailslot sieve-test`),
the target directory's path -- made absolute and normalised as written, so a
".." removes the component before it, not a symlink's target -- is walked from
"/" one component at a time, each opened with O_NOFOLLOW and checked from what
was opened (fstat):

  * a directory owned by another user (or a symlink owned by one in a sticky
    directory) means that user can change everything below it: the write is
    done as that user (effective uid, gid and groups dropped to the owner), so
    the kernel checks their rights, not root's, and root's privilege cannot be
    steered into a directory they could not write themselves;
  * a directory writable by its group or by others (without the sticky bit)
    has no single owner to drop to: refused (RefusedPathError);
  * a symlink is followed only when it sits in a directory no other user can
    change (at most MAX_SYMLINKS of them);
  * the temp file and the rename happen in the directory the walk opened, so a
    component swapped after the walk changes nothing.

Errors: OSError from the system calls (EACCES when the dropped-to user may not
write there, ELOOP, ENOENT); RefusedPathError (an OSError) for a path root must
not write into. The caller turns them into a warning; nothing here exits.

Security: the privilege drop is of the effective ids only, restored before
returning; it runs in the administrator's tool process, never in a delivery
(the delivery engine never runs as root).
"""

import errno
import os
import stat

MAX_SYMLINKS = 40           # as the kernel's MAXSYMLINKS (path_resolution(7))
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Test seam: _HOOKS["before_write"](target) runs after the compile, before the
# target's directory is looked up -- where a racing user would swap a symlink.
_HOOKS = {}


class RefusedPathError(OSError):
    """Root will not write into a path that several other users can change."""


def write_file(target, data, mode, create_dir=False):
    """Atomically replace target with data (file mode `mode`); see the docstring."""
    hook = _HOOKS.get("before_write")
    if hook is not None:
        hook(target)
    directory, name = os.path.split(target)
    if not name or name in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, "not a file name", target)
    directory = directory or "."
    if os.geteuid() == 0:
        dfd, owner = _walk_as_root(os.path.abspath(directory), create_dir)
        if dfd is None:
            # why: another user controls the path; write with their rights only.
            with _dropped_to(*owner):
                _write_at(_open_dir(directory, create_dir), name, data, mode)
            return
    else:
        dfd = _open_dir(directory, create_dir)
    _write_at(dfd, name, data, mode)


def open_append(path, mode=0o600):
    """An fd appending to path (created with mode), never through a symlink at
    its name; as root, its directory is found by the same walk as write_file()
    (sieve-test's -t trace file)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    directory, name = os.path.split(path)
    if os.geteuid() != 0:
        return os.open(path, flags, mode)
    dfd, owner = _walk_as_root(os.path.abspath(directory or "."), False)
    if dfd is None:
        # why: another user controls the path; open it with their rights only.
        with _dropped_to(*owner):
            return os.open(path, flags, mode)
    try:
        return os.open(name, flags, mode, dir_fd=dfd)
    finally:
        os.close(dfd)


def _open_dir(directory, create):
    """Open a directory with the caller's own rights (symlinks followed)."""
    if create:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.open(directory, _DIR_FLAGS)


def _write_at(dfd, name, data, mode):
    """Temp file + rename inside the opened directory dfd (closed here)."""
    tmp = "%s.tmp.%d" % (name, os.getpid())
    try:
        # why: O_EXCL|O_NOFOLLOW -- never write through a file or symlink someone
        # placed under the temp name; the directory is the one already opened.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                     os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)     # the umask must not narrow a shared cache
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)


def _walk_as_root(path, create):
    """Open absolute path's directory as root without following what others can
    change. Returns (fd, None) when only root controls it, or (None, (uid, gid))
    of the user who does. Raises RefusedPathError or OSError."""
    parts = [p for p in path.split("/") if p and p != "."]
    fd = os.open("/", _DIR_FLAGS)
    links = 0
    try:
        while True:
            st = os.fstat(fd)
            if st.st_uid != 0:
                return None, (st.st_uid, st.st_gid)
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise RefusedPathError(
                    errno.EPERM, "a directory on the path is writable by its group "
                    "or by others; refusing to write there as root", path)
            if not parts:
                fd, opened = -1, fd
                return opened, None
            part = parts.pop(0)
            try:
                lst = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o700, dir_fd=fd)
                lst = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(lst.st_mode):
                if lst.st_uid != 0:
                    # only in a sticky directory: the link is its owner's to change
                    return None, (lst.st_uid, lst.st_gid)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                # why: this link sits in a directory only root can change (checked
                # above), so following it cannot be steered by another user.
                link = os.readlink(part, dir_fd=fd)
                if link.startswith("/"):
                    os.close(fd)
                    fd = -1
                    fd = os.open("/", _DIR_FLAGS)
                parts[:0] = [p for p in link.split("/") if p and p != "."]
                continue
            nfd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        if fd >= 0:
            os.close(fd)


class _dropped_to:
    """Run a block with the effective uid/gid/groups of (uid, gid); restored after."""

    def __init__(self, uid, gid):
        self.uid = uid
        try:
            import pwd
            self.gid = pwd.getpwuid(uid).pw_gid
        except (KeyError, ImportError):
            self.gid = gid
        self.saved = None

    def __enter__(self):
        self.saved = (os.getegid(), os.getgroups())
        try:
            # why: groups and gid first, while still root; the uid last.
            os.setgroups([self.gid])
            os.setegid(self.gid)
            os.seteuid(self.uid)
        except OSError:
            self._restore()
            raise
        return self

    def __exit__(self, *exc):
        self._restore()
        return False

    def _restore(self):
        # why: root again for the rest of the tool's run (the uid first: only root
        # may set the gid and groups back).
        os.seteuid(0)
        os.setegid(self.saved[0])
        os.setgroups(self.saved[1])
