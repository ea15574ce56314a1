"""One hand-off, in a freshly forked child of mailslot-handoffd.

    run(conn, listener)     # never returns: the process ends with os._exit

The steps, each a reason to refuse (REFUSED, or just closing) before anything of
the client's is touched, so that the client can still run the engine itself:

 1. the peer (SO_PEERCRED, SO_PEERGROUPS) has exactly our uid, gid and groups;
 2. one whole request frame within REQUEST_TIMEOUT, with exactly four
    descriptors (protocol.py);
 3. the client's umask, working directory, environment and every resource limit
    are applied -- a limit this process cannot set (above its own hard limit) is a
    refusal -- and its descriptors become fds 0, 1 and 2;
 4. READY is sent and the client's GO awaited: only after GO is stdin read.

Then the delivery is the ordinary pipe front, cli.main(argv), with the log line
marked "handoff"; its exit code goes back as RESULT. Between GO and RESULT the
connection is watched by the kernel: O_ASYNC with F_SETSIG=SIGTERM makes any
event on it (the client's end closing when the MTA kills it, or any stray byte)
deliver SIGTERM to this process, which ends it as SIGTERM ends the ordinary
engine (default action; the mbox append's own guard defers it to a safe point).
A message is then filed whole or not at all, as on the ordinary path, and since
the client is gone no success can reach the MTA.

Errors: nothing escapes: a refusal closes the connection; a failure after GO is
the engine's own exit code, and an unexpected one EX_TEMPFAIL (75).

Security notes: the peer check is the reason a request is believed at all; the
request is then applied with the caller's limits (never more than ours: the
kernel refuses raising a hard limit, and so do we); the environment is rebuilt
from the allow-list alone; the received descriptors are made close-on-exec
(MSG_CMSG_CLOEXEC) until they are placed on 0-2.
"""

import array
import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import sys
import time

from . import protocol

ACCEPT_FAILURE_PAUSE = 1.0  # seconds a spare worker waits after a failed accept()
REQUEST_TIMEOUT = 5.0       # seconds for the whole request, and for GO after READY
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)   # Linux 4.13
MAX_PEER_GROUPS = 256       # getsockopt's buffer limit in CPython (1024 bytes)
EX_TEMPFAIL = 75
LOG_TAG = "handoff"


class Refused(Exception):
    """This hand-off cannot be taken: the client falls back."""


PR_SET_PDEATHSIG = 1


_LIBC = ctypes.CDLL(None, use_errno=True)     # loaded once, by the server


def _parent_death_signal(signum):
    """prctl(PR_SET_PDEATHSIG): signum when the server dies (0: none)."""
    if _LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def serve_one(listener, notify_fd, parent):
    """A spare worker's whole life: wait for one connection, serve it, _exit."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Why: a worker still waiting must not outlive a server that was killed.
        _parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(0)
        try:
            conn, _ = listener.accept()
        except OSError:
            # Why the pause: the server forks a replacement at once; a lasting
            # failure (EMFILE, ENOBUFS) must not become a fork loop.
            time.sleep(ACCEPT_FAILURE_PAUSE)
            raise
        # Why: from here the connection is a client's; its delivery must finish
        # even if the server dies now.
        _parent_death_signal(0)
        listener.close()
        try:
            os.write(notify_fd, os.getpid().to_bytes(4, sys.byteorder))
        except OSError:
            pass                    # the server is gone: nothing to replace us
        os.close(notify_fd)
        run(conn)
    finally:
        os._exit(0)


def run(conn):
    """One connection: refuse, or deliver and send the result; then _exit."""
    # The server's own stderr (its journal), kept for a refusal's reason: fd 2
    # becomes the client's once its descriptors are in place.
    log_fd = fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 10)
    try:
        try:
            argv = prepare(conn)
        except (Refused, protocol.ProtocolError, OSError, ValueError) as exc:
            _send(conn, protocol.REFUSED)
            _say(log_fd, f"refused a hand-off, the client runs the engine itself: {exc}")
            os._exit(0)
        os.close(log_fd)
        deliver(conn, argv)
    finally:    # never let a worker return into the server's loop
        os._exit(0)


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


def prepare(conn):
    """Steps 1-4 of the module docstring; after it returns (the argv), GO was received."""
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
    apply_limits(request.limits)
    argv = [arg.decode("utf-8", "surrogateescape") for arg in request.argv]
    conn.sendall(protocol.READY)
    if _recv_exact_byte(conn) != protocol.GO:
        # Why: without GO the client may still run the engine on the same stdin.
        os._exit(0)
    watch_hangup(conn)
    return argv


def _recv_exact_byte(conn):
    try:
        return conn.recv(1)
    except OSError:
        return b""


def apply_limits(limits):
    """Every limit of the client on this process; Refused where one cannot be set."""
    for res, (soft, hard) in enumerate(limits):
        soft = resource.RLIM_INFINITY if soft == protocol.INFINITY else soft
        hard = resource.RLIM_INFINITY if hard == protocol.INFINITY else hard
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as exc:
            raise Refused(f"resource limit {res}: {exc}") from None


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


def deliver(conn, argv):
    """Run the pipe front on the client's descriptors; send its exit code back."""
    code = EX_TEMPFAIL
    try:
        from mailslot.cli import main
        code = main(argv[1:], log_tag=LOG_TAG)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EX_TEMPFAIL
    except BaseException:
        code = EX_TEMPFAIL
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        unwatch_hangup(conn)
        _send(conn, protocol.RESULT + bytes([code & 0xFF]))
    except OSError:
        pass
    return code


def _send(conn, data):
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        conn.sendall(data)
    except OSError:
        pass
