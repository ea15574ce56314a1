"""mailslot-handoffd: the resident engine the pipe's fast path hands deliveries to.

    mailslot-handoffd [--socket PATH] [--max-workers N]

Listens on SOCKET_DIR/<uid>/socket (the directory the systemd unit makes, owned
by the uid, 0700; helper_c/front.mk's HANDOFF_DIR is the same path compiled into
the client), with the engine's delivery modules already imported. Each accepted
connection gets one forked worker (worker.py) that checks the peer, applies the
request and delivers; the server itself reads nothing from a client and keeps no
state between deliveries: every worker starts from the same freshly imported,
never-delivering process.

Workers are forked in advance (Server: SPARE_WORKERS wait in accept(), each takes
one connection and is replaced), so a hand-off does not wait for a fork. At most
--max-workers run at once; a connection beyond that waits in the listen queue and
its client, after its handshake timeout, takes the ordinary path. SIGTERM (or
SIGINT) stops the waiting workers and removes the socket; workers in flight finish
on their own (they hold their client's connection, not the server). A socket left by a server that was killed
is stale: the next server finds nobody answering on it and replaces it.

Errors: a usage mistake is 64; refusing root, an unsafe socket directory, another
server already listening, a bind failure are 75 with one line on stderr.

Security notes: never runs as root (a worker delivers as the process it is, and
the client checks the server's uid anyway); the socket is made 0600 in a
directory only this uid (or root) may write, so only this uid can connect, and
each worker checks the peer's credentials itself (worker.check_peer).
"""

import gc
import os
import signal
import socket
import stat
import sys

SOCKET_DIR = "/run/mailslot-handoff"
DEFAULT_MAX_WORKERS = 32
SPARE_WORKERS = 2           # forked in advance, waiting in accept()
LISTEN_BACKLOG = 64
PROGRAM = "mailslot-handoffd"
EX_USAGE = 64
EX_TEMPFAIL = 75
# What a worker would otherwise import per delivery: the pipe path, both mailbox
# formats, the Sieve interpreter and compiler, every Sieve extension (PRELOAD_PACKAGES)
# and the worker itself. Imported once, here; a module missing from this list is
# still imported by the worker when a delivery needs it, only slower.
PRELOAD = (
    "mailslot.actions", "mailslot.cli", "mailslot.config", "mailslot.config_file",
    "mailslot.deliver", "mailslot.script_location", "mailslot.sieve_filing",
    "mailslot.duplicates", "mailslot.errors", "mailslot.filing", "mailslot.homedir",
    "mailslot.log", "mailslot.mailbox_name", "mailslot.message", "mailslot.recipient",
    "mailslot.sieve", "mailslot.sieve.address", "mailslot.sieve.cache",
    "mailslot.sieve.cache_write", "mailslot.sieve.compiler", "mailslot.sieve.cpu",
    "mailslot.sieve.defs", "mailslot.sieve.diagnostics", "mailslot.sieve.extensions",
    "mailslot.sieve.interpreter", "mailslot.sieve.lexer", "mailslot.sieve.limits",
    "mailslot.sieve.location", "mailslot.sieve.mail", "mailslot.sieve.match",
    "mailslot.sieve.memory", "mailslot.sieve.parser", "mailslot.sieve.program",
    "mailslot.sieve.result", "mailslot.sieve.runner", "mailslot.sieve.script",
    "mailslot.sieve.settings", "mailslot.sieve.syntax", "mailslot.sieve.validator",
    "mailslot.storage", "mailslot.storage.base", "mailslot.storage.dirs",
    "mailslot.storage.index", "mailslot.storage.location", "mailslot.storage.locking",
    "mailslot.storage.maildir", "mailslot.storage.mbox",
    "mailslot.storage.mbox_append", "mailslot.storage.mbox_format",
    "mailslot.storage.mbox_journal", "mailslot.storage.mbox_lock", "mailslot.userdb",
    "mailslot.userdb.common", "mailslot.userdb.lookup", "mailslot.variables",
    "mailslot.storage.quota", "mailslot.storage.quota_maildirsize",
    "mailslot.storage.quota_rules", "mailslot.handoff.worker", "json", "select", "fcntl",
    "zlib",
)
PRELOAD_PACKAGES = ("mailslot.sieve.extensions",)


class ServerError(Exception):
    """The server cannot start: one line for stderr, exit 75."""


def default_socket_path():
    return f"{SOCKET_DIR}/{os.getuid()}/socket"


def parse_args(argv):
    path, max_workers = None, DEFAULT_MAX_WORKERS
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--socket", "--max-workers") and i + 1 < len(argv):
            value = argv[i + 1]
            if arg == "--socket":
                path = value
            else:
                if not value.isdigit() or not 1 <= int(value) <= 4096:
                    raise ValueError(f"--max-workers: not a number from 1 to 4096: {value!r}")
                max_workers = int(value)
            i += 2
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    return path or default_socket_path(), max_workers


def check_directory(path):
    """The socket's directory: ours or root's, writable by nobody else."""
    directory = os.path.dirname(path) or "."
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise ServerError(f"socket directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, os.getuid()) \
            or st.st_mode & 0o022:
        raise ServerError(f"socket directory {directory} must be a directory owned by "
                          f"uid {os.getuid()} or root and writable by nobody else")


def bind(path):
    """A listening socket at path; a stale socket there is replaced, a live one is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise ServerError(f"another server is listening on {path}")
        except ConnectionRefusedError:
            os.unlink(path)         # stale: its server is gone
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)           # Why: the socket is born 0600, only we connect
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(LISTEN_BACKLOG)
    return listener


def preload():
    import importlib
    import pkgutil
    names = list(PRELOAD)
    for package in PRELOAD_PACKAGES:
        module = importlib.import_module(package)
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass    # an optional dependency, or a module a later change renamed


class Server:
    """The listener and its pool of spare workers.

    SPARE_WORKERS forked workers wait in accept() on the listening socket, so a
    hand-off never waits for a fork; each takes exactly one connection, tells the
    server (its pid on the notify pipe) and the server forks a replacement. A
    waiting worker dies with the server (PR_SET_PDEATHSIG); one that has taken a
    connection does not: it finishes its client's delivery.
    """

    def __init__(self, listener, path, max_workers, spare=None):
        self.listener = listener
        self.path = path
        self.inode = os.stat(path).st_ino
        self.max_workers = max_workers
        self.spare = min(spare or SPARE_WORKERS, max_workers)
        self.idle = set()
        self.busy = set()
        self.stopping = False
        self.notify_r, self.notify_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.notify_r, False)
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def serve(self):
        import select
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w)   # a signal wakes the select below
        try:
            self.top_up()
            while not self.stopping:
                select.select([self.notify_r, self.wake_r], [], [])
                _drain(self.wake_r)
                for pid in _pids(_drain(self.notify_r)):
                    if pid in self.idle:
                        self.idle.discard(pid)
                        self.busy.add(pid)
                self.reap()
                if not self.stopping:
                    self.top_up()
        finally:
            self.close()

    def stop(self, *_):
        self.stopping = True

    def reap(self):
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.idle.discard(pid)
            self.busy.discard(pid)

    def top_up(self):
        while len(self.idle) < self.spare and len(self.idle) + len(self.busy) < self.max_workers:
            self.idle.add(self.fork_worker())

    def fork_worker(self):
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            from .worker import serve_one
            for fd in (self.notify_r, self.wake_r, self.wake_w):
                os.close(fd)
            serve_one(self.listener, self.notify_w, parent)    # never returns
        return pid

    def close(self):
        signal.set_wakeup_fd(-1)
        for pid in self.idle:       # waiting workers go; busy ones finish their delivery
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.listener.close()
        try:                        # only our own socket, not a successor's
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def _drain(fd):
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def _pids(data):
    return [int.from_bytes(data[i:i + 4], sys.byteorder)
            for i in range(0, len(data) - len(data) % 4, 4)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        path, max_workers = parse_args(argv)
    except ValueError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return EX_USAGE
    try:
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise ServerError("refusing to run as root: run it as the delivery user "
                              "(mailslot-handoffd@UID.service)")
        check_directory(path)
        preload()
        listener = bind(path)
    except ServerError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as exc:
        print(f"{PROGRAM}: {path}: {exc.strerror}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"{PROGRAM}: listening on {path}", file=sys.stderr, flush=True)
    # Why: the imported engine is shared by every fork; the collector must not
    # touch (and so copy) its pages in each worker.
    gc.freeze()
    Server(listener, path, max_workers).serve()
    return 0
