"""mailslot-lmtpd: the LMTP server's process -- listeners, connections, signals.

    mailslot-lmtpd [-c FILE] [--foreground]

Listens where lmtp_listen says ("unix:/run/mailslot/lmtp", "127.0.0.1:24", ...) or,
under systemd socket activation (LISTEN_PID is ours, LISTEN_FDS=n), on the sockets
systemd hands over (fds 3..3+n-1; lmtp_listen is then ignored). Each connection is a
protocol.Session driven here; the session's two requests run in a small thread pool:
RCPT's userdb lookup and, once the message is in, one delivery per recipient, all of
them at once (delivery.Backend; the replies still go out in RCPT order).

Why asyncio plus a thread pool: the connections are I/O-bound and long-lived (an MTA
keeps a few open and pipelines), which one event loop serves without a thread each;
the deliveries block (open, write, fsync, rename, directory fsync, a lock wait, a
userdb query), and fsync and the other system calls release the GIL, so
DELIVERY_THREADS deliveries of different transactions overlap on the disk while
the loop keeps reading and answering the other connections -- one transaction's
fsyncs never stall the others. A selector loop would need the same pool; asyncio is
that loop with less code. Messages committed into the same directory at the same
moment share one directory fsync (group commit, storage/dirs.py sync_directory).

"250 means on disk": a recipient's 250 is written only after the delivery core
returned for it, i.e. its copy is saved and (unless mail_fsync=never) fsynced with
its directory. A crash or SIGKILL at any moment loses nothing acknowledged; what was
not yet acknowledged the MTA still holds and sends again.

Signals: SIGTERM (and SIGINT) closes the listeners at once; idle connections get
"421 4.3.2" and are closed; a connection inside a transaction finishes it (its
replies are sent), then gets 421; after DRAIN_TIMEOUT the rest are dropped (never
acknowledged, so nothing is lost). SIGHUP reloads the settings file: new
transactions use the new settings, transactions under way finish with theirs; a file
that does not load is logged and the old settings stay. Listeners are not changed
by a reload (restart for that).

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

import asyncio
import os
import signal
import socket
import stat
import sys

from .protocol import Close, Deliver, Discard, Limits, Reply, Session, VerifyRecipient

PROGRAM = "mailslot-lmtpd"
# Deliveries and lookups run side by side: enough for the disk to have several
# fsyncs in flight (the point of the pool), few enough for two cores' Python.
DELIVERY_THREADS = 16
# RFC 5321 4.5.3.2.7: a server waits at least 5 minutes for the next command.
IDLE_TIMEOUT = 300
# One read from a connection (the session holds no more than this plus a line).
READ_SIZE = 65536
# SIGTERM: how long transactions under way may take to finish.
DRAIN_TIMEOUT = 300
# Like Dovecot's lmtp listener: the socket is for local MTAs (file modes decide who).
SOCKET_MODE = 0o666
# systemd's sd_listen_fds(3): passed sockets start at fd 3.
SD_LISTEN_FDS_START = 3
# RFC 2033 4: LMTP must not be run on port 25; lmtp_listen "HOST" alone means this.
DEFAULT_TCP_PORT = 24


class Server:
    """The listeners, the connections and the settings generation in use."""

    def __init__(self, config_path, *, log, clock=None):
        self.config_path = config_path
        self.log = log
        self.clock = clock
        self.backend = self._load()
        self.pool = None
        self.servers = []
        self.connections = {}           # task -> _Connection
        self.draining = False
        self.stopped = None

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
        return backend

    # -- start and stop -----------------------------------------------------------------

    async def start(self, sockets):
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="deliver")
        self.stopped = asyncio.get_running_loop().create_future()
        for sock in sockets:
            if sock.family == socket.AF_UNIX:
                server = await asyncio.start_unix_server(self._serve, sock=sock)
            else:
                server = await asyncio.start_server(self._serve, sock=sock)
            self.servers.append(server)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.drain)
        loop.add_signal_handler(signal.SIGINT, self.drain)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self):
        try:
            self.backend = self._load()
        except Exception as exc:
            self.log(f"reload failed, keeping the old settings: {exc}")
            return
        self.log("settings reloaded")

    def drain(self):
        """Stop listening; close idle connections; let transactions finish."""
        if self.draining:
            return
        self.draining = True
        self.log("shutting down: finishing transactions under way")
        for server in self.servers:
            server.close()
        for task, conn in list(self.connections.items()):
            if conn.idle:
                task.cancel()
        loop = asyncio.get_running_loop()
        loop.call_later(DRAIN_TIMEOUT, self._give_up)
        self._check_drained()

    def _give_up(self):
        for task in list(self.connections):
            task.cancel()
        self._check_drained()

    def _check_drained(self):
        if self.draining and not self.connections and not self.stopped.done():
            self.stopped.set_result(None)

    async def run(self, sockets):
        await self.start(sockets)
        try:
            await self.stopped
        finally:
            self.pool.shutdown(wait=True)

    # -- one connection -----------------------------------------------------------------

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        limit = self.backend.max_connections
        if limit and len(self.connections) >= limit:
            # Why refuse: every connection holds buffers, a spool and pool time; a
            # bound keeps a flood of connections from exhausting fds and memory.
            writer.write(b"421 4.3.2 Too many connections, try again later\r\n")
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                pass
            writer.close()
            return
        conn = _Connection(self, reader, writer)
        self.connections[task] = conn
        try:
            await conn.run()
        except asyncio.CancelledError:
            conn.abort("421 4.3.2 Shutting down")
        except (ConnectionError, OSError):
            conn.abort(None)
        except Exception as exc:      # a bug: this connection ends, the server goes on
            self.log(f"internal error: {type(exc).__name__}: {exc}")
            conn.abort("421 4.3.0 Internal error")
        finally:
            del self.connections[task]
            try:
                writer.close()
            except Exception:
                pass
            self._check_drained()


class _Connection:
    def __init__(self, server, reader, writer):
        self.server, self.reader, self.writer = server, reader, writer
        self.backend = server.backend
        self.idle = False
        peer = writer.get_extra_info("peername")
        self.ip = peer[0] if isinstance(peer, tuple) and peer else None
        self.session = Session(self.backend.limits, self._open_sink)
        self.lhlo = None

    def _open_sink(self):
        from ..message import Spool
        return Spool(self.backend.temp_dir)

    async def run(self):
        session, loop = self.session, asyncio.get_running_loop()
        pending = session.greeting()
        while True:
            out = bytearray()
            closing = False
            while pending:
                event = pending.pop(0)
                if isinstance(event, Reply):
                    out += event.data
                elif isinstance(event, VerifyRecipient):
                    tx = event.transaction
                    if not hasattr(tx, "backend"):
                        # The settings generation a transaction starts with is the
                        # one it ends with, whatever SIGHUP does meanwhile.
                        tx.backend = self.server.backend
                    verdict = await loop.run_in_executor(self.server.pool,
                                                         tx.backend.verify, event.address)
                    pending = session.answer(verdict) + pending
                elif isinstance(event, Deliver):
                    if out:
                        self.writer.write(bytes(out))
                        out.clear()
                    replies = await self._deliver(event.transaction)
                    pending = session.answer(replies) + pending
                elif isinstance(event, Discard):
                    event.transaction.sink.close()
                elif isinstance(event, Close):
                    closing = True
            self.lhlo = session.lhlo_name
            if self.server.draining and not session.busy and not closing:
                out += b"421 4.3.2 " + self.backend.hostname.encode() + \
                    b" Shutting down\r\n"
                closing = True
            if out:
                self.writer.write(bytes(out))
                await self.writer.drain()
            if closing:
                return
            self.idle = not session.busy
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), IDLE_TIMEOUT)
            except asyncio.TimeoutError:
                self._discard(session.eof())
                self.writer.write(b"421 4.4.2 Timeout, closing connection\r\n")
                return
            finally:
                self.idle = False
            if not data:
                self._discard(session.eof())
                return
            pending = session.feed(data)

    async def _deliver(self, tx):
        """Every recipient's delivery in the pool at once (their fsyncs overlap);
        the replies in RCPT order. A delivery that breaks is None: the session
        answers it 451."""
        loop, backend = asyncio.get_running_loop(), tx.backend
        try:
            job = backend.begin(tx, (self.lhlo or "unknown", self.ip))
        except Exception as exc:
            self.server.log(f"internal error: {type(exc).__name__}: {exc}")
            return []
        gathered = asyncio.gather(
            *(loop.run_in_executor(self.server.pool, backend.deliver_one, job, i)
              for i in range(len(tx.recipients))), return_exceptions=True)
        # Why a callback and a shield: the spool is closed only once every thread
        # reading it is done, even if this connection is cancelled meanwhile (a
        # closed fd's number could be reused under a reader).
        gathered.add_done_callback(lambda _: backend.end(job))
        results = await asyncio.shield(gathered)
        return [r if isinstance(r, str) else None for r in results]

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
                self.writer.write(reply.encode() + b"\r\n")
            except Exception:
                pass


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
        sockets = systemd_sockets() or listen_sockets(server.backend.base["lmtp_listen"])
        if not sockets:
            from ..errors import ConfigError
            raise ConfigError("lmtp_listen: no listener")
        log(f"listening on {len(sockets)} socket(s)")
        asyncio.run(server.run(sockets))
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
