"""mailslot-lmtpd: the LMTP server's process -- listeners, connections, signals.

    mailslot-lmtpd [-c FILE] [--foreground]

Listens where lmtp_listen says ("unix:/run/mailslot/lmtp", "127.0.0.1:24", ...) or,
under systemd socket activation (LISTEN_PID is ours, LISTEN_FDS=n), on the sockets
systemd hands over (fds 3..3+n-1; lmtp_listen is then ignored). Each connection is a
protocol.Session driven by its own thread (lmtp_max_connections bounds them): the
thread reads, feeds the session, answers RCPT through the userdb and, once the
message is in, files it -- one recipient right there, several side by side in a
small pool (delivery.Backend; the replies still go out in RCPT order) -- and writes
each batch of replies with one send.

Why threads and no event loop: the connections are long-lived and few (an MTA keeps
a handful open and pipelines), and every step but the wait for the client blocks
(userdb, open, write, fsync, rename, a lock wait). fsync, recv and the other system
calls release the GIL, so deliveries of different connections overlap on the disk
-- one transaction's fsyncs never stall the others -- with no hand-off between a
loop and worker threads (with asyncio those hand-offs and the loop's own work were
about half of the server's CPU per message; docs/benchmarks.md). The main thread
only accepts connections and takes signals. Messages committed into the same
directory at the same moment share one directory fsync (group commit,
storage/dirs.py sync_directory).

"250 means on disk": a recipient's 250 is written only after the delivery core
returned for it, i.e. its copy is saved and (unless mail_fsync=never) fsynced with
its directory. A crash or SIGKILL at any moment loses nothing acknowledged; what was
not yet acknowledged the MTA still holds and sends again.

Signals (taken by the main thread): SIGTERM (and SIGINT) closes the listeners at
once; idle connections (and those whose transaction has no accepted recipient yet)
get "421 4.3.2" and are closed (their reading side is shut
down, which wakes their thread); a connection inside a transaction finishes it (its
replies are sent), then gets 421; after DRAIN_TIMEOUT the rest are dropped (never
acknowledged, so nothing is lost) and the process exits EXIT_GRACE later. SIGHUP reloads the settings file: new
transactions use the new settings, transactions under way finish with theirs; a file
that does not load is logged and the old settings stay. Listeners are not changed
by a reload (restart for that).

Processes: lmtp_processes above 1 (or "auto") opens the listeners here, then
supervisor.py forks that many workers that each run Server.run on them (one accept
per wake-up, so that they share the connections); the parent only supervises.

Privileges: never runs with a root uid or gid (refused at start, like the engine).
It delivers in-process for users whose uid is its own (single-uid "vmail" sites, the
fast path); any other user is refused at RCPT with 451 4.3.0 (the MTA keeps the
mail) unless lmtp_relay_path is set: then the setuid relay delivers that recipient
(lmtp/relayed.py; the server's group must be a caller group of its policy).

Errors: a settings file that does not load at start, a listener that cannot be
made, or root: a message on stderr and the engine's exit code (errors.py).
Unix sockets are created mode SOCKET_MODE; an existing path is replaced only when it
is a socket (never a file someone put there).
"""

import os
import signal
import socket
import stat
import struct
import sys
import threading

from .protocol import Close, Deliver, Discard, Limits, Reply, Session, VerifyRecipient

PROGRAM = "mailslot-lmtpd"
# A transaction with several recipients files them side by side in a pool of this
# many threads (their fsyncs overlap); one recipient is filed in its connection's
# own thread (no hand-off).
DELIVERY_THREADS = 16
# Threads that fsync a new message's directory while its delivery syncs the uidlist
# (storage/maildir.py PARALLEL_SYNC): one per delivery that can be in that step.
FLUSH_THREADS = 32
# RFC 5321 4.5.3.2.7: a server waits at least 5 minutes for the next command.
IDLE_TIMEOUT = 300
# One read from a connection (the session holds no more than this plus a line).
READ_SIZE = 65536
# SIGTERM: how long transactions under way may take to finish.
DRAIN_TIMEOUT = 300
# After DRAIN_TIMEOUT: how long the connections' threads get to notice their sockets
# were shut down before the process exits anyway.
EXIT_GRACE = 5
# Like Dovecot's lmtp listener: the socket is for local MTAs (file modes decide who).
SOCKET_MODE = 0o666
# systemd's sd_listen_fds(3): passed sockets start at fd 3.
SD_LISTEN_FDS_START = 3
# lmtp_processes above 1: a worker woken for a new connection while it serves n
# others waits n * ACCEPT_DEFER seconds (n at most ACCEPT_DEFER_MAX) before its
# accept(), so that a less busy worker woken at the same time takes it first (the
# idea of nginx's accept_mutex_delay; the kernel wakes every worker waiting).
ACCEPT_DEFER = 0.002
ACCEPT_DEFER_MAX = 10
# RFC 2033 4: LMTP must not be run on port 25; lmtp_listen "HOST" alone means this.
DEFAULT_TCP_PORT = 24
# The signals the main loop takes (run()); blocked from before listening until then.
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class Server:
    """The listeners, the connections and the settings generation in use."""

    def __init__(self, config_path, *, log, clock=None):
        self.config_path = config_path
        self.log = log
        self.clock = clock
        # lmtp_processes above 1: the slots every worker shares (slots.py) and one
        # accept per wake-up, so that the workers share the connections.
        self.slots = None
        self.single_accept = False
        self.backend = self._load()
        self.pool = None
        self.listeners = []
        self.connections = set()        # _Connection objects being served
        self.delivering = 0             # transactions being filed (delivering_lock)
        self.delivering_lock = threading.Lock()     # never held while waiting
        self.lock = threading.Lock()    # guards connections, draining, their idle flags
        self.draining = False
        self._drain_started = None
        self._wake_r = self._wake_w = None

    def _load(self):
        from ..recipient import load_base_settings
        from .delivery import Backend
        base = load_base_settings(self.config_path, [])
        kwargs = {"clock": self.clock} if self.clock is not None else {}
        backend = Backend(base, config_path=self.config_path, **kwargs)
        backend.limits = Limits(hostname=backend.hostname,
                                max_size=base["lmtp_message_size_limit"])
        backend.temp_dir = base["mail_temp_dir"] or None
        backend.max_connections = base["lmtp_max_connections"]
        backend.slots = self.slots
        return backend

    # -- the main thread: accept, signals, shutdown ---------------------------------------

    def run(self, sockets):
        """Serve until SIGTERM (or SIGINT) and the drain are over."""
        import selectors
        import time
        from .threads import Pool
        from ..sieve.extensions import regex
        from .isolated import refuse_off_main_thread
        # Why: a :regex match cannot be bounded in time off the main thread; such
        # a delivery is redone in a process of its own (isolated.py).
        regex.THREAD_GUARD = refuse_off_main_thread
        self.pool = Pool(DELIVERY_THREADS, "deliver")
        from ..storage import maildir
        # Why a pool of its own: its tasks are leaves (one directory fsync each) and
        # never wait for others, so no delivery can wait on a queue it fills.
        self.flushers = Pool(FLUSH_THREADS, "flush")
        # A Maildir save's directory fsync overlaps its uidlist's (storage/maildir.py)
        # -- while it is this process's only delivery (_parallel_sync).
        maildir.PARALLEL_SYNC = self._parallel_sync
        # Read once, not per delivery: nothing in this process changes its umask.
        from ..storage import dirs
        dirs.PROCESS_UMASK = dirs.current_umask()
        # The passwd-files RCPT reads are kept, re-read when their stat changes.
        from ..userdb.lookup import keep_passwd_files
        from ..userdb.passwd_cache import PasswdFileCache
        keep_passwd_files(PasswdFileCache())
        # A dotlock holding our pid (dovecot-uidlist.lock, per Maildir delivery) is a
        # new link to one of our own lock files, not a new inode (storage/lock_files.py).
        from ..storage import locking
        from ..storage.lock_files import LockFilePool
        try:
            locking.LOCK_FILES = LockFilePool(self.backend.temp_dir)
        except OSError as exc:
            self.log(f"lock files: {exc.strerror or exc}; every lock gets a new file")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        self.listeners = list(sockets)
        # Why a wakeup fd: a signal arriving while select() waits must end the wait
        # (the handlers below then run in this thread, between two selects).
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        # Why the handlers only note the signal: Python runs a handler in this thread
        # between any two bytecodes, also while this thread holds self.lock (in
        # _accept, in the drain check below) or the log's; a handler that took that
        # lock again would wait for itself for ever. The loop does the work, woken at
        # once by the wakeup fd.
        self.signals = []
        for signum in _SIGNALS:
            signal.signal(signum, lambda signum, _: self.signals.append(signum))
        # main() and a worker of lmtp_processes (supervisor.py) start with these
        # blocked: one that came meanwhile is taken now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        try:
            while True:
                while self.signals:
                    if self.signals.pop(0) == signal.SIGHUP:
                        self.reload()
                    else:
                        self.drain(selector)
                if self.draining:
                    with self.lock:
                        left = len(self.connections)
                    if not left:
                        break
                    waited = time.monotonic() - self._drain_started
                    if waited > DRAIN_TIMEOUT + EXIT_GRACE:
                        break           # threads that still hang are left behind
                    if waited > DRAIN_TIMEOUT:
                        self._give_up()
                for key, _ in selector.select(1.0 if self.draining else None):
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                    elif not self.draining:
                        self._accept(key.fileobj)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sock in self.listeners:
                sock.close()
            selector.close()
            self.pool.shutdown()
            self.flushers.shutdown()
            if locking.LOCK_FILES is not None:
                pool, locking.LOCK_FILES = locking.LOCK_FILES, None
                pool.close()

    def _accept(self, listener):
        if self.single_accept:
            import time
            with self.lock:
                busy = min(len(self.connections), ACCEPT_DEFER_MAX)
            if busy:
                time.sleep(busy * ACCEPT_DEFER)
        while True:
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:      # EMFILE and friends: try again at the next wake-up
                self.log(f"accept failed: {exc.strerror or exc}")
                return
            limit = self.backend.max_connections
            with self.lock:
                full = bool(limit) and len(self.connections) >= limit
                conn = None if full else _Connection(self, sock, addr)
                if conn is not None:
                    self.connections.add(conn)
            if full:
                # Why refuse: every connection holds buffers, a spool and a thread;
                # a bound keeps a flood of connections from exhausting fds and memory.
                try:
                    sock.setblocking(False)
                    sock.send(b"421 4.3.2 Too many connections, try again later\r\n")
                except OSError:
                    pass
                sock.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name="lmtp-connection")
            try:
                thread.start()
            except RuntimeError as exc:     # no thread to be had: as if full
                with self.lock:
                    self.connections.discard(conn)
                self.log(f"cannot start a connection thread: {exc}")
                sock.close()
            if self.single_accept:
                # Why one: the other workers woke for the same listener; leaving the
                # rest of the backlog to them spreads the connections over the
                # processes (a busy worker is slower to its next accept()).
                return

    def reload(self):
        try:
            backend = self._load()
        except Exception as exc:
            self.log(f"reload failed, keeping the old settings: {exc}")
            return
        # Why: deliveries under way (counted in the old generation, which they end
        # with) still count against lmtp_user_concurrency_limit; a fresh count let
        # a user's deliveries past the limit after every SIGHUP.
        backend._active, backend._lock = self.backend._active, self.backend._lock
        self.backend = backend
        self.log("settings reloaded")

    def drain(self, selector=None):
        """Stop listening; close idle connections; let transactions finish."""
        import time
        if self.draining:
            return
        self.log("shutting down: finishing transactions under way")
        for sock in self.listeners:
            if selector is not None:
                try:
                    selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
            sock.close()
        self.listeners = []
        self._drain_started = time.monotonic()
        with self.lock:
            self.draining = True
            for conn in self.connections:
                if conn.idle:
                    conn.stop_reading()

    def _parallel_sync(self, fn, *args):
        """maildir.PARALLEL_SYNC: a flusher's future, or None (the save syncs in turn).

        Why only for a lone delivery: the hand-off costs two thread wake-ups, about a
        seventh of a message's CPU at 4 connections on 2 cores (docs/benchmarks.md);
        alone, a delivery waits out both flushes with the CPU idle and the overlap
        pays (1 connection: the overlap more than doubled the rate), while with
        another delivery in flight its work fills this one's flush anyway and the
        CPU is what limits. Either way the save returns only after both flushes."""
        if self.delivering > 1:
            return None
        return self.flushers.submit(fn, *args)

    def _give_up(self):
        with self.lock:
            for conn in self.connections:
                conn.stop_reading(everything=True)

    def _serve(self, conn):
        try:
            conn.run()
        except (ConnectionError, OSError):
            conn.abort(None)
        except Exception as exc:      # a bug: this connection ends, the server goes on
            self.log(f"internal error: {type(exc).__name__}: {exc}")
            conn.abort("421 4.3.0 Internal error")
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            with self.lock:
                self.connections.discard(conn)
            try:
                self._wake_w.send(b"c")     # the main thread may be waiting for the last
            except OSError:
                pass


class _Connection:
    """One client, served by its own thread: read, feed the session, answer its
    requests right here (a userdb lookup, the delivery), write the replies in one send.
    Why a thread per connection and not an event loop: every step but the wait for
    the client blocks (userdb, open, write, fsync, rename, a lock wait), so an event
    loop needs a hand-off to a worker thread and back for each of them -- measured,
    the loop and the hand-offs were half the server's CPU per message. A thread
    blocked in recv() or fsync() holds no GIL; lmtp_max_connections bounds the threads.
    """

    def __init__(self, server, sock, addr):
        self.server, self.sock = server, sock
        self.backend = server.backend
        self.idle = False               # waiting for the client outside a transaction
        self.stopped = False            # drain() shut our reading side
        self.ip = addr[0] if isinstance(addr, tuple) and addr else None
        self.session = Session(self.backend.limits, self._open_sink)

    def _open_sink(self):
        from ..message import Spool
        return Spool(self.backend.temp_dir)

    def stop_reading(self, everything=False):
        """Called by the main thread (holding server.lock): wake our recv() with EOF."""
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR if everything else socket.SHUT_RD)
        except OSError:
            pass

    def run(self):
        session, server, sock = self.session, self.server, self.sock
        # Why the kernel's timeouts on a blocking socket and not settimeout(): with
        # a Python timeout every recv() and send() is preceded by a poll() -- four
        # more system calls (and GIL hand-offs) per transaction. The limit is the
        # same; on expiry recv()/send() fail with EAGAIN (BlockingIOError).
        sock.settimeout(None)
        idle = struct.pack("@ll", IDLE_TIMEOUT, 0)      # struct timeval
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, idle)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, idle)
        pending = session.greeting()
        while True:
            out = bytearray()
            closing = False
            while pending:
                events, pending = pending, []
                for i, event in enumerate(events):
                    if isinstance(event, Reply):
                        out += event.data
                    elif isinstance(event, VerifyRecipient):
                        tx = event.transaction
                        if not hasattr(tx, "backend"):
                            # The settings generation a transaction starts with is the
                            # one it ends with, whatever SIGHUP does meanwhile.
                            tx.backend = server.backend
                        pending = session.answer(tx.backend.verify(event.address)) \
                            + events[i + 1:]
                        break
                    elif isinstance(event, Deliver):
                        if out:
                            sock.sendall(out)
                            out.clear()
                        pending = session.answer(self._deliver(event.transaction)) \
                            + events[i + 1:]
                        break
                    elif isinstance(event, Discard):
                        event.transaction.sink.close()
                    elif isinstance(event, Close):
                        closing = True
            with server.lock:
                if server.draining and not session.busy and not closing:
                    out += b"421 4.3.2 " + self.backend.hostname.encode() + \
                        b" Shutting down\r\n"
                    closing = True
                # Why under the lock: drain() either sees us idle (and wakes our recv)
                # or we see it draining here -- no connection sleeps through it.
                self.idle = not closing and not session.busy
            if out:
                sock.sendall(out)
            if closing:
                return
            try:
                data = sock.recv(READ_SIZE)
            except (socket.timeout, BlockingIOError):     # SO_RCVTIMEO expired
                self._discard(session.eof())
                sock.sendall(b"421 4.4.2 Timeout, closing connection\r\n")
                return
            finally:
                with server.lock:
                    self.idle = False
            if not data:
                self._discard(session.eof())
                if self.stopped:
                    self.abort("421 4.3.2 Shutting down")
                return
            pending = session.feed(data)

    def _deliver(self, tx):
        """Every recipient's reply, in RCPT order. One recipient is filed here; more
        are filed side by side in the pool (their fsyncs overlap). A delivery that
        breaks is None: the session answers it 451."""
        backend, server = tx.backend, self.server
        try:
            job = backend.begin(tx, (self.session.lhlo_name or "unknown", self.ip))
        except Exception as exc:
            self.server.log(f"internal error: {type(exc).__name__}: {exc}")
            return []
        with server.delivering_lock:
            server.delivering += 1
        try:
            count = len(tx.recipients)
            if count == 1:
                return [_guarded(backend.deliver_one, job, 0)]
            # The spool is closed (end) only after every thread reading it is done:
            # map() returns when all have returned.
            return list(self.server.pool.map(_guarded, [backend.deliver_one] * count,
                                             [job] * count, range(count)))
        finally:
            with server.delivering_lock:
                server.delivering -= 1
            backend.end(job)

    def _discard(self, events):
        for event in events:
            if isinstance(event, Discard):
                event.transaction.sink.close()

    def abort(self, reply):
        """The connection ends now (shutdown, error): no transaction is acknowledged."""
        if not self.session.waiting:
            self._discard(self.session.eof())
        if reply:
            try:
                self.sock.sendall(reply.encode() + b"\r\n")
            except Exception:
                pass


def _guarded(deliver_one, job, index):
    try:
        return deliver_one(job, index)
    except Exception:           # deliver_one answers its own failures; a bug is None
        return None


# -- listeners ----------------------------------------------------------------------------

def systemd_sockets(environ=None, pid=None):
    """The sockets systemd passed (sd_listen_fds), or [] when none are ours."""
    environ = os.environ if environ is None else environ
    if environ.get("LISTEN_PID") != str(os.getpid() if pid is None else pid):
        return []
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    return sockets


def listen_sockets(spec):
    """Sockets for lmtp_listen's words ("unix:PATH", "HOST:PORT", "[V6]:PORT")."""
    sockets = []
    try:
        for word in spec.split():
            sockets.append(_unix_socket(word[5:]) if word.startswith("unix:")
                           else _tcp_socket(word))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _unix_socket(path):
    from ..errors import ConfigError
    if not path.startswith("/"):
        raise ConfigError(f"lmtp_listen: unix socket path must be absolute: {path!r}")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        # Why only a socket: a stale socket from our last run is ours to replace; any
        # other file at that path is not.
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"lmtp_listen: {path} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, SOCKET_MODE)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"lmtp_listen: cannot listen on {path}: {exc.strerror}") from None
    return sock


def _tcp_socket(word):
    from ..errors import ConfigError
    host, _, port = word.rpartition(":")
    if not host:
        host, port = word, str(DEFAULT_TCP_PORT)
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"lmtp_listen: invalid port in {word!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"lmtp_listen: cannot listen on {word}: {exc.strerror}") from None
    return sock


# -- the command line -----------------------------------------------------------------------

def parse_args(argv):
    from ..errors import UsageError
    config, foreground = None, False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "-c" and args:
            config = args.pop(0)
        elif arg.startswith("-c") and len(arg) > 2:
            config = arg[2:]
        elif arg in ("--foreground", "-F"):
            foreground = True
        else:
            raise UsageError(f"usage: {PROGRAM} [-c FILE] [--foreground]")
    return config, foreground


def main(argv=None):
    """Run the server until SIGTERM; return the exit code."""
    from ..errors import MailslotError, exit_code_for
    argv = sys.argv[1:] if argv is None else argv
    try:
        config, foreground = parse_args(argv)
        refuse_root()
        log = _stderr_log if foreground else _syslog_log()
        server = Server(config, log=log)
        from .supervisor import worker_count
        workers = worker_count(server.backend.base["lmtp_processes"])
        # Why block before listening: once a client (or systemd, or logrotate) can
        # see us, a SIGHUP or SIGTERM must wait for run()'s handlers (it unblocks
        # them), not kill the daemon by the default action as it did in that window.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        sockets = systemd_sockets() or listen_sockets(server.backend.base["lmtp_listen"])
        if not sockets:
            from ..errors import ConfigError
            raise ConfigError("lmtp_listen: no listener")
        log(f"listening on {len(sockets)} socket(s)")
        if workers > 1:
            from .slots import UserSlots
            from .supervisor import supervise
            server.slots = server.backend.slots = UserSlots()
            code = supervise(workers, sockets, server, log)
            log("stopped")
            return code
        server.run(sockets)
        log("stopped")
        return 0
    except MailslotError as exc:
        _stderr_log(str(exc))
        return exit_code_for(exc)
    except OSError as exc:          # a passed socket that is not one, ...
        _stderr_log(f"cannot start: {exc}")
        return exit_code_for(exc)


def refuse_root():
    """Never with a root uid or gid (the relay is the way to deliver as others)."""
    if 0 in os.getresuid() or 0 in os.getresgid():
        from ..errors import PrivilegeError
        raise PrivilegeError(f"refusing to run as root: run {PROGRAM} as the mail "
                             "user (User= in mailslot-lmtpd.service)")


def _stderr_log(text):
    line = "".join(ch if " " <= ch != "\x7f" else "?" for ch in " ".join(text.split()))
    try:
        sys.stderr.write(f"{PROGRAM}: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _syslog_log():
    import syslog
    syslog.openlog(PROGRAM, syslog.LOG_PID, syslog.LOG_MAIL)

    def log(text):
        syslog.syslog(syslog.LOG_INFO, "".join(ch if " " <= ch != "\x7f" else "?"
                                               for ch in text))
    return log
