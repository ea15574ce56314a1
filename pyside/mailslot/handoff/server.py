"""mailslot-handoffd: the resident engine the pipe's fast path hands deliveries to.

    mailslot-handoffd [-c CONFIG] [--socket PATH] [--max-workers N]
                      [--max-use N] [--max-idle SECONDS]

Listens on SOCKET_DIR/<uid>/socket (the directory the systemd unit makes, owned
by the uid, 0700; helper_c/front.mk's HANDOFF_DIR is the same path compiled into
the client), with the engine's delivery modules already imported. Each accepted
connection is taken by a forked worker (worker.py) that checks the peer, applies
the request and delivers; the server itself reads nothing from a client and never
delivers: every worker starts from the same freshly imported process.

A worker serves up to handoff_worker_max_use hand-offs (the settings file, -c,
default DEFAULT_CONFIG_PATH; --max-use overrides; 1 is one fresh fork per
hand-off) and, once it has served, exits after handoff_worker_max_idle seconds
without one (--max-idle). Between two hand-offs it checks that its process state
is the one it started with, and exits instead on any difference (worker.py,
state.py); the server forks a replacement for every worker that exits.

Workers are forked in advance (Server: SPARE_WORKERS wait for a connection), so a
hand-off does not wait for a fork. At most --max-workers run at once; a connection
beyond that waits in the listen queue and its client, after its handshake
timeout, takes the ordinary path. SIGTERM (or SIGINT) stops the waiting workers
and removes the socket; workers in flight finish on their own (they hold their
client's connection, not the server) and then exit. The server holds a POSIX
lock on SOCKET.lock while it runs (a forked worker does not inherit it): a second
server finds it held and refuses to start; a server that finds it free replaces
the socket left by one that was killed, even while that one's workers still
finish their deliveries.

Errors: a usage mistake is 64; refusing root, an unsafe socket directory, another
server already listening, a bind failure, a settings error are 75 with one line
on stderr.

Security notes: never runs as root (a worker delivers as the process it is, and
the client checks the server's uid anyway); the socket is made 0600 in a
directory only this uid (or root) may write, so only this uid can connect, and
each worker checks the peer's credentials itself (worker.check_peer).
"""

import fcntl
import gc
import os
import signal
import socket
import stat
import sys

from .worker import BUSY, IDLE

SOCKET_DIR = "/run/mailslot-handoff"
DEFAULT_MAX_WORKERS = 32
SPARE_WORKERS = 2           # forked in advance, waiting in accept()
LISTEN_BACKLOG = 64
PROGRAM = "mailslot-handoffd"
MAX_USE_LIMIT = 1_000_000   # the largest handoff_worker_max_use taken
MAX_IDLE_LIMIT = 86400      # seconds: the largest handoff_worker_max_idle taken
EX_USAGE = 64
EX_TEMPFAIL = 75
# What a worker would otherwise import per delivery: the pipe path, both mailbox
# formats, the Sieve interpreter and compiler, every Sieve extension (PRELOAD_PACKAGES)
# and the worker itself. Imported once, here; a module missing from this list is
# still imported by the worker when a delivery needs it, only slower.
PRELOAD = (
    "mailslot.actions", "mailslot.cli", "mailslot.config", "mailslot.config_file",
    "mailslot.deliver", "mailslot.script_location", "mailslot.sieve_filing",
    "mailslot.duplicates", "mailslot.errors", "mailslot.filing",
    "mailslot.homedir",
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
    "mailslot.storage.maildir", "mailslot.storage.uidvalidity", "mailslot.storage.mbox",
    "mailslot.storage.mbox_append", "mailslot.storage.mbox_format",
    "mailslot.storage.mbox_journal", "mailslot.storage.mbox_lock", "mailslot.userdb",
    "mailslot.userdb.common", "mailslot.userdb.lookup", "mailslot.variables",
    "mailslot.storage.quota", "mailslot.storage.quota_maildirsize",
    "mailslot.storage.quota_rules", "mailslot.handoff.worker", "json", "select", "fcntl",
    "zlib", "mailslot.user", "mailslot.syslog_sink", "mailslot.userdb.static",
    "mailslot.userdb.dovecot", "mailslot.storage.keywords",
    "mailslot.storage.maildir_keywords", "mailslot.storage.mbox_heal",
    "mailslot.storage.mbox_helper", "mailslot.storage.mbox_recover",
    "mailslot.storage.subscriptions", "mailslot.sieve.mime", "mailslot.sieve.bodytext",
    "mailslot.sieve.html2text", "mailslot.send", "mailslot.send.compose",
    "mailslot.send.headers", "mailslot.send.outgoing", "mailslot.send.redirect",
    "mailslot.send.transport", "mailslot.handoff.state", "_locale", "atexit",
)
PRELOAD_PACKAGES = ("mailslot.sieve.extensions",)


class ServerError(Exception):
    """The server cannot start: one line for stderr, exit 75."""


def default_socket_path():
    return f"{SOCKET_DIR}/{os.getuid()}/socket"


class Options:
    def __init__(self):
        self.socket = None
        self.config = None
        self.max_workers = DEFAULT_MAX_WORKERS
        self.max_use = None             # None: from the settings
        self.max_idle = None


def parse_args(argv):
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-c", "--socket", "--max-workers", "--max-use", "--max-idle") \
                and i + 1 < len(argv):
            value = argv[i + 1]
            if arg == "--socket":
                opts.socket = value
            elif arg == "-c":
                opts.config = value
            elif arg == "--max-workers":
                opts.max_workers = _number(arg, value, 4096)
            elif arg == "--max-use":
                opts.max_use = _number(arg, value, MAX_USE_LIMIT)
            else:
                opts.max_idle = _number(arg, value, MAX_IDLE_LIMIT)
            i += 2
        else:
            raise ValueError(f"unexpected argument {arg!r}")
    opts.socket = opts.socket or default_socket_path()
    return opts


def _number(option, value, limit):
    if not value.isdigit() or not 1 <= int(value) <= limit:
        raise ValueError(f"{option}: not a number from 1 to {limit}: {value!r}")
    return int(value)


def worker_settings(opts):
    """(max_use, max_idle): the settings file's, unless the command line said."""
    max_use, max_idle = opts.max_use, opts.max_idle
    if max_use is None or max_idle is None:
        from mailslot.config import load_settings
        from mailslot.errors import ConfigError
        try:
            settings = load_settings(opts.config)
        except ConfigError as exc:
            raise ServerError(f"settings: {exc}") from None
        for name, value, limit in (("handoff_worker_max_use", max_use, MAX_USE_LIMIT),
                                   ("handoff_worker_max_idle", max_idle, MAX_IDLE_LIMIT)):
            if value is None and not 1 <= settings[name] <= limit:
                raise ServerError(f"{name}: {settings[name]} is not from 1 to {limit}")
        if max_use is None:
            max_use = settings["handoff_worker_max_use"]
        if max_idle is None:
            max_idle = settings["handoff_worker_max_idle"]
    return max_use, max_idle


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


def lock(path):
    """Hold the POSIX lock on path + ".lock" (the descriptor), or ServerError when
    another server holds it. Why POSIX (fcntl) and not flock: a forked worker does
    not inherit it, so a killed server's workers still delivering do not keep a
    new server from starting."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ServerError(f"another server is listening on {path}") from None
    return fd


def bind(path):
    """A listening socket at path, whose lock the caller holds: a socket left
    there by a server that was killed is replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError(f"{path} exists and is not a socket")
        os.unlink(path)                 # stale: its server is gone (we hold the lock)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)           # Why: the socket is born 0600, only we connect
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(LISTEN_BACKLOG)
    # Why non-blocking: several waiting workers may be woken for one connection;
    # those that lose the race must go back to waiting, not block in accept().
    listener.setblocking(False)
    return listener


def preload():
    import importlib
    import pkgutil
    # Why site-packages now: a delivery that parses YAML (a stale settings cache)
    # adds it to sys.path; done once here, before any worker's snapshot, a worker's
    # sys.path is the same before and after such a delivery.
    from mailslot.sitepath import enable_site_packages
    enable_site_packages()
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

    At least SPARE_WORKERS workers wait for a connection on the listening socket,
    so a hand-off never waits for a fork. A worker tells the server (its pid and
    BUSY or IDLE on the notify pipe) when it takes a connection and when it waits
    again; the server keeps the waiting ones at SPARE_WORKERS or more by forking,
    and reaps the ones that exit (max_use reached, idle, a state difference,
    killed). A waiting worker dies with the server (PR_SET_PDEATHSIG); one that has
    taken a connection does not: it finishes its client's delivery, then exits.
    """

    def __init__(self, listener, path, max_workers, spare=None, max_use=1,
                 max_idle=None):
        self.listener = listener
        self.path = path
        self.inode = os.stat(path).st_ino
        self.max_workers = max_workers
        self.max_use = max_use
        self.max_idle = max_idle
        self.spare = min(spare or SPARE_WORKERS, max_workers)
        self.idle = set()
        self.busy = set()
        self.carry = b""
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
                data = self.carry + _drain(self.notify_r)
                self.carry = data[len(data) - len(data) % 5:]   # a record cut by the read
                for pid, what in _records(data):
                    if what == BUSY and pid in self.idle:
                        self.idle.discard(pid)
                        self.busy.add(pid)
                    elif what == IDLE and pid in self.busy:
                        self.busy.discard(pid)
                        self.idle.add(pid)
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
            from .worker import serve
            for fd in (self.notify_r, self.wake_r, self.wake_w):
                os.close(fd)
            serve(self.listener, self.notify_w, parent, self.max_use,
                  self.max_idle)        # never returns
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


def _records(data):
    """(pid, BUSY or IDLE) from the notify pipe's 5-byte records (each written whole:
    far below PIPE_BUF)."""
    return [(int.from_bytes(data[i:i + 4], sys.byteorder), data[i + 4:i + 5])
            for i in range(0, len(data) - len(data) % 5, 5)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except ValueError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return EX_USAGE
    path = opts.socket
    try:
        if 0 in os.getresuid() or 0 in os.getresgid():
            raise ServerError("refusing to run as root: run it as the delivery user "
                              "(mailslot-handoffd@UID.service)")
        check_directory(path)
        max_use, max_idle = worker_settings(opts)
        preload()
        lock_fd = lock(path)
        listener = bind(path)
    except ServerError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except OSError as exc:
        print(f"{PROGRAM}: {path}: {exc.strerror}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"{PROGRAM}: listening on {path} (workers serve up to {max_use} hand-offs, "
          f"idle {max_idle} s)", file=sys.stderr, flush=True)
    # Why: the imported engine is shared by every fork; the collector must not
    # touch (and so copy) its pages in each worker.
    gc.freeze()
    try:
        Server(listener, path, opts.max_workers, max_use=max_use, max_idle=max_idle).serve()
    finally:
        os.close(lock_fd)
    return 0
