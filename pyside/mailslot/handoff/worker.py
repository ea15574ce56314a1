"""A worker of mailslot-handoffd: hand-offs, one after another, in a forked child.

    serve(listener, notify_fd, parent, max_use, max_idle)   # never returns (_exit)

The steps of one hand-off, each a reason to refuse (REFUSED, or just closing)
before anything of the client's is touched, so that the client can still run the
engine itself:

 1. the peer (SO_PEERCRED, SO_PEERGROUPS) has exactly our uid, gid and groups;
 2. one whole request frame within REQUEST_TIMEOUT, with exactly four
    descriptors (protocol.py);
 3. the client's umask, working directory, environment (and so its time zone)
    and every resource limit are applied -- a limit this process cannot set (above
    its own hard limit) is a refusal -- and its descriptors become fds 0, 1 and 2;
 4. READY is sent and the client's GO awaited: only after GO is stdin read.

Then the delivery is the ordinary pipe front, cli.main(argv), with the log line
marked "handoff"; its exit code goes back as RESULT. Between GO and RESULT the
connection is watched by the kernel: O_ASYNC with F_SETSIG=SIGTERM makes any
event on it (the client's end closing when the MTA kills it, or any stray byte)
deliver SIGTERM to this process, which ends it as SIGTERM ends the ordinary
engine (default action; the mbox append's own guard defers it to a safe point).
A message is then filed whole or not at all, as on the ordinary path, and since
the client is gone no success can reach the MTA. The server forks a replacement.

Reuse (handoff_worker_max_use, as Postfix's max_use): a worker serves up to
max_use hand-offs, then exits and is replaced; one that has served and then waits
max_idle seconds for the next exits too (a fresh spare waits as long as the
server lives). With max_use 1 every hand-off has a fresh fork of the server, as
before. Before serving again the worker drops the client's descriptors (before
the result is sent, so the MTA's pipes end with the front), puts back its own
working directory, umask, environment, time zone and limits, and compares its
whole process state with the snapshot taken before its first hand-off
(state.py); it exits instead on any difference, after a hand-off that lowered a
hard limit (no unprivileged process can raise one again), after an exception
escaped the front, or when the server is gone. Each such exit is logged to the
server's stderr with its reason.

Errors: nothing escapes: a refusal closes the connection; a failure after GO is
the engine's own exit code, and an unexpected one EX_TEMPFAIL (75).

Security notes: the peer check is the reason a request is believed at all; the
request is then applied with the caller's limits (never more than ours: the
kernel refuses raising a hard limit, and so do we; RLIMIT_CPU is counted from
the hand-off, see apply_limits); the environment is rebuilt from the allow-list
alone; the received descriptors are made close-on-exec (MSG_CMSG_CLOEXEC) until
they are placed on 0-2. Nothing of one client's survives into the next hand-off
that the state check could see (state.py says what it covers and what not).
"""

import array
import ctypes
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

from . import protocol, state

ACCEPT_FAILURE_PAUSE = 1.0  # seconds a spare worker waits after a failed accept()
REQUEST_TIMEOUT = 5.0       # seconds for the whole request, and for GO after READY
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)   # Linux 4.13
MAX_PEER_GROUPS = 256       # getsockopt's buffer limit in CPython (1024 bytes)
EX_TEMPFAIL = 75
LOG_TAG = "handoff"
EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 1 << 28)    # Linux 4.5
BUSY = b"B"                 # to the server: this worker took a connection
IDLE = b"I"                 # to the server: this worker waits for one again


class Refused(Exception):
    """This hand-off cannot be taken: the client falls back."""


class NoGo(Exception):
    """The client answered READY with something other than GO: it falls back."""


PR_SET_PDEATHSIG = 1


_LIBC = ctypes.CDLL(None, use_errno=True)     # loaded once, by the server


def _parent_death_signal(signum):
    """prctl(PR_SET_PDEATHSIG): signum when the server dies (0: none)."""
    if _LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def serve(listener, notify_fd, parent, max_use=1, max_idle=None):
    """A worker's whole life: wait for a connection, serve it, and again, up to
    max_use hand-offs (module docstring, "Reuse"); then _exit."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Why: a worker still waiting must not outlive a server that was killed.
        _parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)
        poller = select.epoll(1)
        # Why exclusive: one connection wakes one waiting worker (the oldest that
        # waits), not every idle one; the listener is non-blocking, so a worker woken
        # for a connection another took goes back to waiting.
        try:
            poller.register(listener.fileno(), select.EPOLLIN | EPOLLEXCLUSIVE)
        except OSError:     # a kernel before 4.5: every waiting worker wakes
            poller.register(listener.fileno(), select.EPOLLIN)
        snapshot = state.Snapshot.take() if max_use > 1 else None
        served = 0
        while True:
            conn = _accept(listener, poller, max_idle if served else None)
            if conn is None:
                _say(2, f"idle for {max_idle:g} s after {served} hand-offs: exits")
                os._exit(0)
            # Why: from here the connection is a client's; its delivery must finish
            # even if the server dies now.
            _parent_death_signal(0)
            _notify(notify_fd, BUSY)
            served += 1
            reusable = run(conn, snapshot)
            if served >= max_use:
                os._exit(0)
            problems = snapshot.restore()
            if not reusable and not problems:
                problems.append("the hand-off lowered a hard resource limit or an "
                                "exception escaped the delivery")
            _parent_death_signal(signal.SIGTERM)
            if os.getppid() != parent:
                os._exit(0)             # the server is gone: nobody replaces us
            problems += snapshot.differences()
            if problems:
                # Fail-safe: a difference, however small, ends the worker; the
                # server forks a fresh one from its never-delivering state.
                _say(2, f"not reused after {served} hand-offs: " + "; ".join(problems))
                os._exit(0)
            _notify(notify_fd, IDLE)
    finally:
        os._exit(0)


def _accept(listener, poller, timeout):
    """The next connection, or None after timeout seconds without one."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = -1 if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            ready = poller.poll(wait, 1)
        except InterruptedError:
            ready = True
        if not ready and deadline is not None and time.monotonic() >= deadline:
            return None
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue                    # another worker took it
        except OSError:
            # Why the pause: the server forks a replacement at once; a lasting
            # failure (EMFILE, ENOBUFS) must not become a fork loop.
            time.sleep(ACCEPT_FAILURE_PAUSE)
            raise
        conn.setblocking(True)
        return conn


def _notify(fd, what):
    """Tell the server this worker took a connection (BUSY) or waits again (IDLE)."""
    try:
        os.write(fd, os.getpid().to_bytes(4, sys.byteorder) + what)
    except OSError:
        pass                            # the server is gone: nothing to replace us


def run(conn, snapshot=None):
    """One connection: refuse, or deliver and send the result. Returns whether the
    worker may serve again (still subject to the state check); a worker without a
    snapshot (max_use 1) never does."""
    # The server's own stderr (its journal), kept for a refusal's reason: fd 2
    # becomes the client's once its descriptors are in place.
    log_fd = fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 10)
    try:
        try:
            argv, reusable = prepare(conn, snapshot)
        except (Refused, protocol.ProtocolError, OSError, ValueError) as exc:
            _send(conn, protocol.REFUSED)
            _say(log_fd, f"refused a hand-off, the client runs the engine itself: {exc}")
            return snapshot is not None
        except NoGo:
            return snapshot is not None
        os.close(log_fd)
        log_fd = -1
        ended = deliver(conn, argv, snapshot)
        return snapshot is not None and reusable and ended
    finally:
        if log_fd >= 0:
            os.close(log_fd)
        conn.close()


def _say(fd, text):
    try:
        os.write(fd, f"mailslot-handoffd[{os.getpid()}]: {text}\n".encode(errors="replace"))
    except OSError:
        pass


def check_peer(conn):
    """Refused unless the peer's uid, gid and supplementary groups are ours."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid() or uid != os.geteuid() or gid != os.getgid() \
            or gid != os.getegid():
        raise Refused(f"peer uid {uid} gid {gid}")
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * MAX_PEER_GROUPS)
    except OSError as exc:
        raise Refused(f"peer groups: {exc}") from None
    groups = array.array("I", raw[:len(raw) // 4 * 4])
    if set(groups) != set(os.getgroups()):
        raise Refused("peer groups differ")


def receive(conn):
    """Read one request frame and its descriptors; return (Request, [fd] * 4)."""
    conn.settimeout(REQUEST_TIMEOUT)
    fds = []
    try:
        data, ancillary, flags, _ = conn.recvmsg(
            protocol.HEADER, socket.CMSG_SPACE(4 * (protocol.NFDS + 1)),
            socket.MSG_CMSG_CLOEXEC)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", payload[:len(payload) // 4 * 4]))
        if flags & socket.MSG_CTRUNC or len(fds) != protocol.NFDS:
            raise Refused(f"{len(fds)} descriptors (want {protocol.NFDS})")
        while len(data) < protocol.HEADER:
            data += _recv_some(conn, protocol.HEADER - len(data))
        need = protocol.body_length(data)
        chunks = [data]
        while need:
            chunk = _recv_some(conn, min(need, 65536))
            chunks.append(chunk)
            need -= len(chunk)
        return protocol.decode_request(b"".join(chunks)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _recv_some(conn, n):
    chunk = conn.recv(n)
    if not chunk:
        raise Refused("the client closed the connection")
    return chunk


def prepare(conn, snapshot=None):
    """Steps 1-4 of the module docstring; after it returns (argv, reusable), GO was
    received. reusable is False when applying the request lowered a hard limit
    (which this process can never raise again)."""
    check_peer(conn)
    request, fds = receive(conn)
    try:
        os.fchdir(fds[3])
    finally:
        os.close(fds[3])
    # Why through high copies: a received descriptor may itself be 0, 1 or 2.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds[:3]]
    for fd in fds[:3]:
        os.close(fd)
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=True)
        os.close(fd)
    os.umask(request.umask)
    os.environ.clear()
    os.environ.update(request.env)
    # Why: the C library reads TZ once; the client's TZ (or its absence) must be
    # this delivery's, not what an earlier hand-off or the server had.
    time.tzset()
    reusable = apply_limits(request.limits, snapshot)
    argv = [arg.decode("utf-8", "surrogateescape") for arg in request.argv]
    conn.sendall(protocol.READY)
    if _recv_exact_byte(conn) != protocol.GO:
        # Why: without GO the client may still run the engine on the same stdin.
        raise NoGo()
    watch_hangup(conn)
    return argv, reusable


def _recv_exact_byte(conn):
    try:
        return conn.recv(1)
    except OSError:
        return b""


def apply_limits(limits, snapshot=None):
    """Every limit of the client on this process; Refused where one cannot be set.
    Returns False when a hard limit was lowered below the snapshot's (the worker
    cannot be reused after this hand-off), else True.

    RLIMIT_CPU counts the whole process's CPU time: a reused worker has already
    spent some, so its limit is moved up by the whole seconds it used (never by
    more, so the delivery never gets more CPU than the client allowed it)."""
    reusable = True
    for res, (soft, hard) in enumerate(limits):
        soft = resource.RLIM_INFINITY if soft == protocol.INFINITY else soft
        hard = resource.RLIM_INFINITY if hard == protocol.INFINITY else hard
        if res == resource.RLIMIT_CPU and snapshot is not None:
            used = int(sum(os.times()[:2]))
            soft = soft if soft == resource.RLIM_INFINITY else soft + used
            hard = hard if hard == resource.RLIM_INFINITY else hard + used
        if snapshot is not None and state.below(hard, snapshot.limits[res][1]):
            reusable = False
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            raise Refused(f"resource limit {res}: {exc}") from None
    return reusable


def watch_hangup(conn):
    """From now on any event on the connection sends us SIGTERM (module docstring)."""
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGTERM)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    # An event before O_ASYNC was set raised nothing: look once ourselves.
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLRDHUP)
    if poller.poll(0):
        os.kill(os.getpid(), signal.SIGTERM)


def unwatch_hangup(conn):
    fd = conn.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_ASYNC)


def deliver(conn, argv, snapshot=None):
    """Run the pipe front on the client's descriptors; send its exit code back.
    Returns True when the front returned (an exception that escaped it: False)."""
    code = EX_TEMPFAIL
    ended = False
    try:
        from mailslot.cli import main
        code = main(argv[1:], log_tag=LOG_TAG)
        ended = isinstance(code, int)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EX_TEMPFAIL
    except BaseException:
        code = EX_TEMPFAIL
    if not isinstance(code, int):
        code = EX_TEMPFAIL
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        unwatch_hangup(conn)
        if snapshot is not None:
            # Why before the result: the MTA waits for the end of its pipes, which
            # this worker must not hold once the front has exited.
            snapshot.drop_client_stdio()
        _send(conn, protocol.RESULT + bytes([code & 0xFF]))
    except OSError:
        ended = False
    return ended


def _send(conn, data):
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        conn.sendall(data)
    except OSError:
        pass
