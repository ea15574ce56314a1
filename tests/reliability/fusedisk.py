"""A FUSE file system for power-loss tests: it keeps what is durable apart from what
is volatile, and at a "crash" leaves only the durable part.

    /usr/bin/python3 tests/reliability/fusedisk.py SOURCE MOUNTPOINT STATUS
                     [--crash-after N] [--mode strict|names|tail]

Run as root (Debian's python3-llfuse; the Makefile's deps-test installs it). It
loads the tree SOURCE into memory -- all of it durable, as after a clean boot --
and mounts it on MOUNTPOINT (allow_other, so the delivery's user can use it; the
owners, modes and times are kept, permissions are not checked). The rule is
POSIX's strict one:

  - a file's bytes (and size) become durable at fsync() or fdatasync() of that
    file; before that a crash leaves the bytes it had when last synced;
  - a name in a directory -- made by create, mkdir, link, symlink or rename, or
    removed by unlink, rmdir or rename -- becomes durable only at fsync() of that
    directory (a rename's two ends: at the fsync of each directory);
  - owners, modes and times are taken as durable at once (the model is about data
    and names, not attributes).

Every operation that changes something (create, mknod, mkdir, symlink, link,
unlink, rmdir, rename, write, setattr, fsync, fsyncdir) is numbered from 1 and
logged to STATUS (one JSON line each: its number, its name, the path). With
--crash-after N, the N-th such operation is done and then the power goes: the
process that made it gets SIGKILL before the call returns (so it runs no further
instruction), and every later operation fails with EIO. When the file system is
unmounted (by the harness, umount), the durable state -- as at the crash, or as
now when there was none (the crash "right after the program exited") -- is written
out as a real tree into MOUNTPOINT itself (then an empty directory again), hard
links kept, so that Dovecot and the next delivery read it as a disk would come
back. The last line of STATUS says how many operations there were and whether the
crash happened.

What fsync guarantees is a floor: a kernel may also have written back anything
unsynced before the cut (ext4 commits its journal every few seconds). --mode says
which of those states is written out:

  strict   only what was synced: the floor;
  names    every name as it is (the directories written back), file data only as
           synced: a rename that reached the disk before its file's data;
  tail     every name as it is, and the bytes of the file written last as they
           are (its pages written back; every other file as synced): an append
           that reached the disk before the record that would take it back.

Not a test module: tests/reliability/fusecrash.py drives it.
"""

import errno
import json
import os
import signal
import stat
import sys
import threading
import time

import llfuse

COUNTED = ("create", "mknod", "mkdir", "symlink", "link", "unlink", "rmdir", "rename",
           "write", "setattr", "fsync", "fsyncdir")


class Node:
    """An inode: attributes, and for a file its volatile and durable bytes, for a
    directory its volatile and durable entries (name -> inode number)."""

    def __init__(self, ino, mode, uid, gid, times=None):
        now = time.time_ns()
        self.ino, self.mode, self.uid, self.gid = ino, mode, uid, gid
        self.atime, self.mtime, self.ctime = times or (now, now, now)
        self.nlink = 0
        self.data = bytearray()          # files: what a reader sees now
        self.durable = b""               # files: what a power cut leaves
        self.entries = {}                # directories: name (bytes) -> ino, now
        self.durable_entries = {}        # directories: what a power cut leaves
        self.target = b""                # symbolic links
        self.name = b"?"                 # a path, for the log

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.mode)


def fail(code):
    return llfuse.FUSEError(code)


class Disk(llfuse.Operations):
    def __init__(self, source, status, crash_after, mode="strict"):
        super().__init__()
        self.mode = mode
        self.last_written = None         # the inode of the last write or truncate
        self.lock = threading.Lock()
        self.nodes = {}
        self.next_ino = llfuse.ROOT_INODE
        self.count = 0
        self.crash_after = crash_after
        self.crashed = False
        self.status = open(status, "w", buffering=1)
        self.handles = {}
        self.openers = {}
        self.next_fh = 1
        root = self._load(source, None)
        assert root.ino == llfuse.ROOT_INODE

    # -- loading and writing out -----------------------------------------------------

    def _new(self, mode, uid, gid, times=None):
        node = Node(self.next_ino, mode, uid, gid, times)
        self.nodes[node.ino] = node
        self.next_ino += 1
        return node

    def _load(self, path, parent, seen=None, rel="~"):
        seen = {} if seen is None else seen
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) in seen and not stat.S_ISDIR(st.st_mode):
            node = seen[(st.st_dev, st.st_ino)]      # a hard link inside the tree
            node.nlink += 1
            return node
        node = self._new(st.st_mode, st.st_uid, st.st_gid,
                         (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns))
        node.name = os.fsencode(rel)
        seen[(st.st_dev, st.st_ino)] = node
        node.nlink = 2 if stat.S_ISDIR(st.st_mode) else 1
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path)):
                child = self._load(os.path.join(path, name), node, seen,
                                   rel + "/" + name)
                node.entries[os.fsencode(name)] = child.ino
            node.durable_entries = dict(node.entries)
        elif stat.S_ISLNK(st.st_mode):
            node.target = os.fsencode(os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                node.data = bytearray(f.read())
            node.durable = bytes(node.data)
        return node

    def write_out(self, dest):
        """The durable tree into dest (an empty directory: the unmounted mount point)."""
        made = {}                        # ino -> first path written (hard links)

        def walk(node, path):
            entries = node.durable_entries if self.mode == "strict" else node.entries
            for name, ino in sorted(entries.items()):
                child = self.nodes[ino]
                full = os.path.join(path, os.fsdecode(name))
                if child.is_dir:
                    os.mkdir(full)
                    walk(child, full)
                elif ino in made:
                    os.link(made[ino], full)
                    continue
                elif stat.S_ISLNK(child.mode):
                    os.symlink(os.fsdecode(child.target), full)
                    os.lchown(full, child.uid, child.gid)
                    continue
                else:
                    tail = self.mode == "tail" and ino == self.last_written
                    with open(full, "wb") as f:
                        f.write(bytes(child.data) if tail else child.durable)
                    made[ino] = full
                os.chown(full, child.uid, child.gid)
                os.chmod(full, stat.S_IMODE(child.mode))
                os.utime(full, ns=(child.atime, child.mtime))

        root = self.nodes[llfuse.ROOT_INODE]
        walk(root, dest)
        os.chown(dest, root.uid, root.gid)
        os.chmod(dest, stat.S_IMODE(root.mode))

    # -- the crash ---------------------------------------------------------------------

    def _op(self, name, node, ctx=None, extra=b""):
        """Number a changing operation; fail it after the crash. Returns a callable
        to run once the operation is done (the crash, if it is this one)."""
        if self.crashed:
            raise fail(errno.EIO)
        self.count += 1
        path = node.name + (b"/" + extra if extra else b"")
        self.status.write(json.dumps({"op": self.count, "name": name,
                                      "path": os.fsdecode(path)}) + "\n")
        if self.count == self.crash_after:
            self.crashed = True
            pid = ctx if isinstance(ctx, int) else getattr(ctx, "pid", 0)
            if pid and pid != os.getpid():
                # The power goes now: the caller never sees this call return.
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def finish(self):
        self.status.write(json.dumps({"operations": self.count, "crashed": self.crashed,
                                      "crash_after": self.crash_after,
                                      "mode": self.mode}) + "\n")
        self.status.close()

    # -- attributes ------------------------------------------------------------------

    def _attr(self, node):
        a = llfuse.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        a.st_mode = node.mode
        a.st_nlink = max(node.nlink, 1) if node.is_dir else node.nlink
        a.st_uid, a.st_gid = node.uid, node.gid
        a.st_rdev = 0
        size = len(node.target) if stat.S_ISLNK(node.mode) else len(node.data)
        a.st_size = size
        a.st_blksize = 4096
        a.st_blocks = (size + 511) // 512
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = node.atime, node.mtime, node.ctime
        return a

    def _node(self, ino):
        try:
            return self.nodes[ino]
        except KeyError:
            raise fail(errno.ENOENT) from None

    def _touch(self, node):
        node.mtime = node.ctime = time.time_ns()

    def getattr(self, inode, ctx=None):
        with self.lock:
            return self._attr(self._node(inode))

    def lookup(self, parent_inode, name, ctx=None):
        with self.lock:
            parent = self._node(parent_inode)
            if name == b".":
                return self._attr(parent)
            ino = parent.entries.get(name)
            if ino is None:
                raise fail(errno.ENOENT)
            return self._attr(self.nodes[ino])

    def forget(self, inode_list):
        pass                            # nodes stay: the durable tree may need them

    def setattr(self, inode, attr, fields, fh, ctx):
        with self.lock:
            node = self._node(inode)
            self._op("setattr", node, ctx)
            if fields.update_size:
                self.last_written = node.ino
                size = attr.st_size
                del node.data[size:]
                node.data.extend(b"\0" * (size - len(node.data)))
                self._touch(node)
            if fields.update_mode:
                node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
            if fields.update_uid:
                node.uid = attr.st_uid
            if fields.update_gid:
                node.gid = attr.st_gid
            if fields.update_atime:
                node.atime = attr.st_atime_ns
            if fields.update_mtime:
                node.mtime = attr.st_mtime_ns
            node.ctime = time.time_ns()
            return self._attr(node)

    def access(self, inode, mode, ctx):
        return True

    def statfs(self, ctx):
        s = llfuse.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 1 << 20
        s.f_files = s.f_ffree = s.f_favail = 1 << 20
        s.f_namemax = 255
        return s

    # -- names ---------------------------------------------------------------------------

    def _child(self, parent_inode, name, mode, ctx, op):
        parent = self._node(parent_inode)
        if name in parent.entries:
            raise fail(errno.EEXIST)
        self._op(op, parent, ctx, name)
        node = self._new(mode, ctx.uid, ctx.gid)
        node.name = parent.name + b"/" + name
        node.nlink = 2 if stat.S_ISDIR(mode) else 1
        if stat.S_ISDIR(mode):
            parent.nlink += 1
        parent.entries[name] = node.ino
        self._touch(parent)
        return node

    def mkdir(self, parent_inode, name, mode, ctx):
        with self.lock:
            return self._attr(self._child(parent_inode, name, stat.S_IFDIR | (mode & 0o7777),
                                          ctx, "mkdir"))

    def mknod(self, parent_inode, name, mode, rdev, ctx):
        with self.lock:
            if not stat.S_ISREG(mode):
                raise fail(errno.EPERM)
            return self._attr(self._child(parent_inode, name, mode, ctx, "mknod"))

    def create(self, parent_inode, name, mode, flags, ctx):
        with self.lock:
            node = self._child(parent_inode, name, stat.S_IFREG | (mode & 0o7777), ctx,
                               "create")
            fh = self._open_handle(node, ctx)
            return fh, self._attr(node)

    def symlink(self, parent_inode, name, target, ctx):
        with self.lock:
            node = self._child(parent_inode, name, stat.S_IFLNK | 0o777, ctx, "symlink")
            node.target = target
            return self._attr(node)

    def readlink(self, inode, ctx):
        with self.lock:
            return self._node(inode).target

    def link(self, inode, new_parent_inode, new_name, ctx):
        with self.lock:
            node, parent = self._node(inode), self._node(new_parent_inode)
            if new_name in parent.entries:
                raise fail(errno.EEXIST)
            self._op("link", parent, ctx, new_name)
            parent.entries[new_name] = node.ino
            node.nlink += 1
            node.ctime = time.time_ns()
            self._touch(parent)
            return self._attr(node)

    def _drop(self, parent, name):
        ino = parent.entries.pop(name)
        node = self.nodes[ino]
        node.nlink -= 1
        if node.is_dir:
            node.nlink = 0
            parent.nlink -= 1
        self._touch(parent)

    def unlink(self, parent_inode, name, ctx):
        with self.lock:
            parent = self._node(parent_inode)
            ino = parent.entries.get(name)
            if ino is None:
                raise fail(errno.ENOENT)
            if self.nodes[ino].is_dir:
                raise fail(errno.EISDIR)
            self._op("unlink", parent, ctx, name)
            self._drop(parent, name)

    def rmdir(self, parent_inode, name, ctx):
        with self.lock:
            parent = self._node(parent_inode)
            ino = parent.entries.get(name)
            if ino is None:
                raise fail(errno.ENOENT)
            if not self.nodes[ino].is_dir:
                raise fail(errno.ENOTDIR)
            if self.nodes[ino].entries:
                raise fail(errno.ENOTEMPTY)
            self._op("rmdir", parent, ctx, name)
            self._drop(parent, name)

    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, ctx):
        with self.lock:
            old, new = self._node(parent_inode_old), self._node(parent_inode_new)
            ino = old.entries.get(name_old)
            if ino is None:
                raise fail(errno.ENOENT)
            node = self.nodes[ino]
            target = new.entries.get(name_new)
            if target == ino:
                return
            if target is not None:
                t = self.nodes[target]
                if t.is_dir != node.is_dir:
                    raise fail(errno.EISDIR if t.is_dir else errno.ENOTDIR)
                if t.is_dir and t.entries:
                    raise fail(errno.ENOTEMPTY)
            self._op("rename", new, ctx, name_new)
            if target is not None:
                self._drop(new, name_new)
            del old.entries[name_old]
            new.entries[name_new] = ino
            if node.is_dir:
                old.nlink -= 1
                new.nlink += 1
            node.name = new.name + b"/" + name_new
            node.ctime = time.time_ns()
            self._touch(old)
            self._touch(new)

    # -- files -----------------------------------------------------------------------

    def _open_handle(self, node, ctx):
        """A handle: the node, and the pid that opened it (write and fsync get no
        context; the crash's SIGKILL goes to the opener)."""
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node.ino
        self.openers[fh] = ctx.pid
        return fh

    def open(self, inode, flags, ctx):
        with self.lock:
            if self.crashed:
                raise fail(errno.EIO)
            node = self._node(inode)
            if flags & os.O_TRUNC and (flags & os.O_ACCMODE) != os.O_RDONLY:
                self._op("setattr", node, ctx)
                node.data = bytearray()
                self.last_written = node.ino
                self._touch(node)
            return self._open_handle(node, ctx)

    def read(self, fh, off, size):
        with self.lock:
            node = self.nodes[self.handles[fh]]
            return bytes(node.data[off:off + size])

    def write(self, fh, off, buf):
        with self.lock:
            node = self.nodes[self.handles[fh]]
            self._op("write", node, self.openers.get(fh, 0))
            if len(node.data) < off:
                node.data.extend(b"\0" * (off - len(node.data)))
            node.data[off:off + len(buf)] = buf
            self.last_written = node.ino
            self._touch(node)
            return len(buf)

    def flush(self, fh):
        pass

    def release(self, fh):
        with self.lock:
            self.handles.pop(fh, None)
            self.openers.pop(fh, None)

    def fsync(self, fh, datasync):
        with self.lock:
            node = self.nodes[self.handles[fh]]
            self._op("fsync", node, self.openers.get(fh, 0))
            # Durable now: this file's bytes (not its names: see fsyncdir).
            node.durable = bytes(node.data)

    # -- directories -------------------------------------------------------------------

    def opendir(self, inode, ctx):
        with self.lock:
            if self.crashed:
                raise fail(errno.EIO)
            node = self._node(inode)
            return self._open_handle(node, ctx)

    def readdir(self, fh, off):
        with self.lock:
            node = self.nodes[self.handles[fh]]
            items = sorted(node.entries.items())
            out = [(name, self._attr(self.nodes[ino]), i + 1)
                   for i, (name, ino) in enumerate(items) if i >= off]
        return iter(out)

    def releasedir(self, fh):
        with self.lock:
            self.handles.pop(fh, None)
            self.openers.pop(fh, None)

    def fsyncdir(self, fh, datasync):
        with self.lock:
            node = self.nodes[self.handles[fh]]
            self._op("fsyncdir", node, self.openers.get(fh, 0))
            # Durable now: the names in this directory, as they are.
            node.durable_entries = dict(node.entries)


def main(argv):
    source, mountpoint, status = argv[:3]
    options = {"--crash-after": "0", "--mode": "strict"}
    rest = argv[3:]
    while rest:
        if len(rest) < 2 or rest[0] not in options:
            sys.exit("usage: fusedisk.py SOURCE MOUNTPOINT STATUS [--crash-after N] "
                     "[--mode strict|names|tail]")
        options[rest[0]] = rest[1]
        rest = rest[2:]
    if options["--mode"] not in ("strict", "names", "tail"):
        sys.exit(f"unknown mode {options['--mode']!r}")
    disk = Disk(source, status, int(options["--crash-after"]), options["--mode"])
    if os.listdir(mountpoint):
        sys.exit(f"{mountpoint} is not empty")
    llfuse.init(disk, mountpoint, ["fsname=fusedisk", "subtype=fusedisk", "allow_other"])
    # The harness waits for this line before it starts the delivery.
    print("mounted", flush=True)
    try:
        llfuse.main(workers=1)
    finally:
        llfuse.close()
    disk.write_out(mountpoint)
    disk.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
