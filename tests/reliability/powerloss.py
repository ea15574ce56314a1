"""A power-loss model: which states can a crash leave, given the engine's fsyncs?

    python3 -m tests.reliability.powerloss [--format maildir|mbox]

SIGKILL (crash.py) loses the process, never the page cache: it cannot show that the
fsync order is right. This model does, at the level of the engine's os calls (a
call it does not wrap is invisible to it: mbox appends went to writev() and the
model lost them until t_writev was added); fusecrash.py does the same below
Python, on a FUSE disk that sees every system call the kernel passes on. A delivery runs under a tracer (TRACER, in
the engine's own process: os.open/write/pwrite/ftruncate/fsync/fdatasync/rename/
link/unlink/mkdir/close are wrapped before mailslot is imported) that logs every
operation on files under the home. The log is then replayed into a strict POSIX
model of a disk: a file's bytes are durable only once fsync()ed or fdatasync()ed;
a name in a directory (a create, rename, link, unlink, mkdir) only once that
directory is fsync()ed. A power cut after any operation k leaves, for each
directory, its durable names, and for each file, its durable bytes. For every k:

  - Maildir: every name in new/ or cur/ that survives names the whole message or a
    message that was there before (no partial file becomes visible); after the
    last operation (the engine has exited 0), the message is in new/, whole.
  - mbox: the surviving mbox is the old one plus at most the start of the append;
    when it holds more than the old one but not the whole append, the surviving
    journal holds a record for that append (so the next delivery can take it back);
    after the last operation the whole append survives.

Prints a JSON summary: operations traced, crash points checked, violations (0).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from tests.support import REPO, ensure_user, remove_user, world_tempdir

TRACER = r"""
import json, os, sys
home, trace_path = sys.argv[1], sys.argv[2]
sys.argv = ["mailslot-lda"] + sys.argv[3:]
sys.path.insert(0, %r)
log_fd = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
real = {n: getattr(os, n) for n in ("open", "write", "writev", "pwrite", "ftruncate", "fsync",
                                   "fdatasync", "rename", "replace", "link", "unlink",
                                   "mkdir", "close")}
paths = {}                          # fd -> path (for dir_fd-relative names)

def emit(**event):
    real["write"](log_fd, (json.dumps(event) + "\n").encode())

def resolve(path, dir_fd=None):
    path = os.fsdecode(path)
    if path.startswith("/proc/self/fd/"):
        return paths.get(int(path.rsplit("/", 1)[1]), path)
    if dir_fd is not None and not path.startswith("/"):
        return paths.get(dir_fd, "?") + "/" + path
    return os.path.normpath(os.path.join(os.getcwd(), path))

def mine(path):
    return isinstance(path, str) and path.startswith(home)

def t_open(path, flags, mode=0o777, *, dir_fd=None):
    full = resolve(path, dir_fd)
    existed = os.path.lexists(full) if mine(full) else True
    fd = real["open"](path, flags, mode, dir_fd=dir_fd)
    tmpfile = bool(flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1))
    paths[fd] = full
    if mine(full):
        st = os.fstat(fd)
        emit(op="open", fd=fd, path=full, ino=st.st_ino, dir=os.path.isdir(full),
             created=not existed and not tmpfile, size=st.st_size,
             trunc=bool(flags & os.O_TRUNC))
    return fd

def t_write(fd, data):
    n = real["write"](fd, data)
    if mine(paths.get(fd)):
        emit(op="write", ino=os.fstat(fd).st_ino, data=bytes(data[:n]).hex(),
             end=os.lseek(fd, 0, os.SEEK_CUR))
    return n

def t_writev(fd, buffers):
    # mbox appends go out with writev() (storage/mbox_append.py): one write event.
    buffers = list(buffers)
    n = real["writev"](fd, buffers)
    if mine(paths.get(fd)):
        data = b"".join(bytes(b) for b in buffers)[:n]
        emit(op="write", ino=os.fstat(fd).st_ino, data=data.hex(),
             end=os.lseek(fd, 0, os.SEEK_CUR))
    return n

def t_pwrite(fd, data, offset):
    n = real["pwrite"](fd, data, offset)
    if mine(paths.get(fd)):
        emit(op="pwrite", ino=os.fstat(fd).st_ino, data=bytes(data[:n]).hex(),
             offset=offset, size=os.fstat(fd).st_size)
    return n

def t_ftruncate(fd, length):
    real["ftruncate"](fd, length)
    if mine(paths.get(fd)):
        emit(op="truncate", ino=os.fstat(fd).st_ino, length=length)

def t_sync(name):
    def call(fd):
        real[name](fd)
        if mine(paths.get(fd)):
            st = os.fstat(fd)
            emit(op="sync", ino=st.st_ino, dir=os.path.isdir(paths[fd]), path=paths[fd],
                 meta=name == "fsync")
    return call

def t_rename(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    a, b = resolve(src, src_dir_fd), resolve(dst, dst_dir_fd)
    real["rename"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
    if mine(b):
        emit(op="rename", src=a, dst=b, ino=os.lstat(b).st_ino)

def t_link(src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
    a, b = resolve(src, src_dir_fd), resolve(dst, dst_dir_fd)
    real["link"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                 follow_symlinks=follow_symlinks)
    if mine(b):
        emit(op="link", dst=b, ino=os.lstat(b).st_ino)

def t_unlink(path, *, dir_fd=None):
    full = resolve(path, dir_fd)
    real["unlink"](path, dir_fd=dir_fd)
    if mine(full):
        emit(op="unlink", path=full)

def t_mkdir(path, mode=0o777, *, dir_fd=None):
    full = resolve(path, dir_fd)
    real["mkdir"](path, mode, dir_fd=dir_fd)
    if mine(full):
        emit(op="mkdir", path=full, ino=os.lstat(full).st_ino)

def t_close(fd):
    paths.pop(fd, None)
    real["close"](fd)

os.open, os.write, os.pwrite, os.ftruncate = t_open, t_write, t_pwrite, t_ftruncate
os.writev = t_writev
os.fsync, os.fdatasync = t_sync("fsync"), t_sync("fdatasync")
os.rename = os.replace = t_rename
os.link, os.unlink, os.mkdir, os.close = t_link, t_unlink, t_mkdir, t_close
from mailslot.cli import main
code = main()
emit(op="exit", code=code)
sys.exit(code)
""" % os.path.join(REPO, "pyside")


class Disk:
    """The strict model: volatile and durable bytes per inode, names per directory."""

    def __init__(self, snapshot):
        # snapshot: {path: (ino, bytes or None for a directory)} before the delivery
        self.data = {}              # ino -> [volatile bytearray, durable bytes]
        self.names = {}             # dir path -> [volatile {name: ino}, durable {...}]
        for path, (ino, content) in snapshot.items():
            parent, name = os.path.split(path)
            self.names.setdefault(parent, [{}, {}])
            self.names[parent][0][name] = self.names[parent][1][name] = ino
            if content is None:
                self.names.setdefault(path, [{}, {}])
            else:
                self.data[ino] = [bytearray(content), bytes(content)]

    def _file(self, ino):
        return self.data.setdefault(ino, [bytearray(), b""])

    def _name(self, path, ino):
        parent, name = os.path.split(path)
        self.names.setdefault(parent, [{}, {}])[0][name] = ino

    def apply(self, e):
        op = e["op"]
        if op == "open":
            if e["created"]:
                self._name(e["path"], e["ino"])
            if e["dir"]:
                self.names.setdefault(e["path"], [{}, {}])
            else:
                f = self._file(e["ino"])
                if e["trunc"]:
                    f[0] = bytearray()
        elif op in ("write", "pwrite"):
            f = self._file(e["ino"])
            data = bytes.fromhex(e["data"])
            start = e["offset"] if op == "pwrite" else e["end"] - len(data)
            if op == "pwrite" and e["size"] == len(f[0]) + len(data) and start != len(f[0]):
                start = len(f[0])           # O_APPEND: Linux appends, whatever the offset
            buf = f[0]
            if len(buf) < start:
                buf.extend(b"\0" * (start - len(buf)))
            buf[start:start + len(data)] = data
        elif op == "truncate":
            f = self._file(e["ino"])
            del f[0][e["length"]:]
            if len(f[0]) < e["length"]:
                f[0].extend(b"\0" * (e["length"] - len(f[0])))
        elif op == "sync":
            if e["dir"]:
                entry = self.names.setdefault(e["path"], [{}, {}])
                entry[1] = dict(entry[0])
            else:
                f = self._file(e["ino"])
                f[1] = bytes(f[0])
        elif op in ("rename", "link"):
            if op == "rename":
                parent, name = os.path.split(e["src"])
                self.names.setdefault(parent, [{}, {}])[0].pop(name, None)
            self._name(e["dst"], e["ino"])
        elif op == "unlink":
            parent, name = os.path.split(e["path"])
            self.names.setdefault(parent, [{}, {}])[0].pop(name, None)
        elif op == "mkdir":
            self._name(e["path"], e["ino"])
            self.names.setdefault(e["path"], [{}, {}])

    def after_power_cut(self, path):
        """The bytes a reader finds at path after a power cut now (None: no such
        name). A name survives only if every directory above it was synced with
        it (directories made before the delivery count as durable)."""
        parent, name = os.path.split(path)
        entry = self.names.get(parent)
        if entry is None or name not in entry[1]:
            return None
        ino = entry[1][name]
        return self.data.get(ino, [b"", b""])[1]

    def durable_names(self, directory):
        entry = self.names.get(directory)
        return sorted(entry[1]) if entry else []

    def possible_names(self, directory):
        """Names a power cut may leave: the durable ones and, since the kernel may
        write a directory back at any moment, every name made since."""
        entry = self.names.get(directory)
        return sorted(set(entry[0]) | set(entry[1])) if entry else []

    def durable_bytes_of(self, directory, name):
        entry = self.names.get(directory)
        ino = entry[0].get(name, entry[1].get(name))
        return self.data.get(ino, [b"", b""])[1]

    def volatile(self, path):
        parent, name = os.path.split(path)
        entry = self.names.get(parent)
        if entry is None or name not in entry[0]:
            return None
        return bytes(self.data.get(entry[0][name], [b"", b""])[0])


def snapshot(home):
    out = {}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if os.path.isdir(path):
                out[path] = (st.st_ino, None)
            else:
                with open(path, "rb") as f:
                    out[path] = (st.st_ino, f.read())
    return out


MESSAGE = (b"From: p@example.org\nSubject: power\nMessage-ID: <power@example.org>\n\n"
           + b"power cut body line\n" * 2000)


def run(fmt, mutate=None):
    """Trace one delivery and check every crash point; mutate(events), when given,
    changes the trace first (the tests drop an fsync to see the model catch it)."""
    token = os.urandom(3).hex()
    user = f"mslt-p{token}"
    base = world_tempdir("mailslot-power-")
    home = os.path.join(base, "home")
    entry = ensure_user(user, home)
    try:
        conf = os.path.join(base, "mailslot.yaml")
        loc = "maildir:~/Maildir" if fmt == "maildir" else "mbox:~/mail:INBOX=~/mail/inbox"
        with open(conf, "w") as f:
            f.write(f"mail_location: {loc}\nlog_path: {base}/engine.log\n"
                    "hostname: power.example.org\nfirst_valid_uid: 100\n")
        os.chmod(conf, 0o644)
        open(f"{base}/engine.log", "a").close()
        os.chown(f"{base}/engine.log", entry.pw_uid, entry.pw_gid)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--init-groups", "--", "/usr/bin/python3", "-I", "-S", "-c", TRACER]
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "USER": user}

        def deliver(message, trace):
            proc = subprocess.run(argv + [home, trace, "-c", conf], input=message,
                                  capture_output=True, env=env, cwd="/", timeout=120)
            if proc.returncode != 0:
                raise AssertionError(proc.stderr.decode(errors="replace"))

        first = MESSAGE.replace(b"<power@", b"<first@")
        deliver(first, os.path.join(base, "trace0"))
        before = snapshot(home)
        trace = os.path.join(base, "trace1")
        deliver(MESSAGE, trace)
        with open(trace) as f:
            events = [json.loads(line) for line in f]
        if mutate is not None:
            events = mutate(events)
        return check(fmt, home, before, events, first)
    finally:
        remove_user(user)
        shutil.rmtree(base, ignore_errors=True)


def check(fmt, home, before, events, first):
    disk = Disk(before)
    violations = []
    whole = MESSAGE
    points = 0
    old_mbox = before.get(os.path.join(home, "mail", "inbox"), (None, b""))[1]
    for k, event in enumerate([{"op": "start"}] + events):
        if event["op"] not in ("start", "exit"):
            disk.apply(event)
        points += 1
        last = event["op"] == "exit"
        if fmt == "maildir":
            found = []
            for sub in ("new", "cur"):
                d = os.path.join(home, "Maildir", sub)
                for name in disk.possible_names(d):
                    # Only its fsync()ed bytes are sure to be there with the name.
                    data = disk.durable_bytes_of(d, name)
                    if name in disk.durable_names(d):
                        found.append(data)
                    if data not in (whole, first):
                        violations.append(f"after op {k} ({event['op']}): {sub}/{name} "
                                          f"would hold {len(data or b'')} bytes, not a message")
            if last and whole not in found:
                violations.append("after exit 0 the message would not survive a power cut")
        else:
            inbox = os.path.join(home, "mail", "inbox")
            data = disk.after_power_cut(inbox) or b""
            journal = disk.after_power_cut(os.path.join(home, "mail", ".imap", "INBOX",
                                                        "mailslot-journal")) or b""
            if not data.startswith(old_mbox):
                violations.append(f"after op {k}: the old mbox would not survive")
                continue
            added = data[len(old_mbox):]

            def is_whole(tail):
                return tail.endswith(b"\n\n") and b"Subject: power" in tail and \
                    tail.count(b"power cut body line") == 2000
            complete = is_whole(added)
            # Written back at any moment, any part of the unsynced bytes may be there.
            pending = (disk.volatile(inbox) or b"")[len(old_mbox):]
            if (added and not complete) or (pending and pending != added
                                            and not is_whole(added)):
                from mailslot.storage.mbox_journal import parse_record
                record = parse_record(journal)
                if record is None or record.length != len(old_mbox):
                    violations.append(f"after op {k} ({event['op']}): a cut append of "
                                      f"{len(added)} bytes with no journal record to take "
                                      "it back")
            if last and not complete:
                violations.append("after exit 0 the append would not survive a power cut")
    return {"format": fmt, "operations": len(events), "crash_points": points,
            "violations": violations[:10], "violation_count": len(violations)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=["maildir", "mbox"], action="append")
    args = parser.parse_args(argv)
    bad = 0
    for fmt in args.format or ["maildir", "mbox"]:
        result = run(fmt)
        bad += result["violation_count"]
        print(json.dumps(result))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
