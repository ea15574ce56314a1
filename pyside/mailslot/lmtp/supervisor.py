"""lmtp_processes: mailslot-lmtpd as a parent and N worker processes.

    code = supervise(count, sockets, server, log)   # in main(), after the listeners

One process serves its connections with threads that share one interpreter lock,
i.e. one core (docs/benchmarks.md, LMTP). With lmtp_processes N above 1 the daemon
opens its listeners once (lmtp_listen or systemd's LISTEN_FDS), then forks N workers
that each run the one-process server (server.Server.run) on the same sockets: the
kernel wakes every worker for a new connection, and a busier worker waits a little
before its accept() (server.ACCEPT_DEFER), so the less busy one takes it. The
parent accepts nothing and delivers nothing; it only

- restarts a worker that died (a worker that lived less than BACKOFF_RESET seconds
  is restarted after a delay that doubles from BACKOFF_MIN up to BACKOFF_MAX, so a
  worker that dies at once does not spin);
- forwards SIGTERM/SIGINT (each worker finishes its transactions under way, as the
  one process does) and then waits for all of them, exiting 0;
- forwards SIGHUP: each worker reloads the settings (as the one process does);
  the parent loads them too, first, so that a worker it starts later (replacing
  one that died) begins with the last settings that loaded -- not those of the
  start, and not a file that no longer loads.
  lmtp_processes itself and the listeners are read at start only.

If the parent itself is killed, the kernel sends each worker SIGTERM
(PR_SET_PDEATHSIG): they drain and exit rather than serve on unsupervised.

What is per process: the in-process mbox lock (storage/mbox_lock.py), the delivery
thread pools, group commit of directory fsyncs (storage/dirs.py), and
lmtp_max_connections (each worker's bound). Two workers appending to one mbox are
kept apart by the file locks (dotlock and fcntl), as two pipe deliveries are.
lmtp_user_concurrency_limit holds across workers (slots.py).

Errors: a fork that fails is retried with the back-off; the parent exits 0 after
SIGTERM once every worker is gone.

Security: workers are forks of the parent, which already refused root
(server.refuse_root): they run as the daemon's own user and never change it.
"""

import gc
import os
import signal
import time

# A worker that dies within this many seconds of its start is restarted after a
# growing delay; one that lived longer, at once.
BACKOFF_RESET = 10.0
BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
# <linux/prctl.h>: a signal the kernel sends us when our parent dies.
PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


def worker_count(value):
    """lmtp_processes's value: a positive number or "auto" (the CPUs we may use)."""
    from ..errors import ConfigError
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"lmtp_processes: expected a number from 1 or \"auto\", "
                          f"got {value!r}")
    return int(text)


class _Slot:
    def __init__(self):
        self.pid = None
        self.started = 0.0
        self.delay = 0.0
        self.due = 0.0              # when a dead worker may be started again


def supervise(count, sockets, server, log):
    """Run `count` workers serving `sockets` until SIGTERM; return the exit code."""
    # Why block: a signal is then taken only in sigtimedwait below, never between a
    # fork and the bookkeeping of its pid. Workers unblock after their handlers are
    # set (server.Server.run).
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    slots = [_Slot() for _ in range(count)]
    by_pid = {}
    stopping = False
    log(f"starting {count} worker processes")
    while True:
        _reap(by_pid, stopping, log)
        if stopping and not by_pid:
            log("all workers stopped")
            return 0
        now = time.monotonic()
        if not stopping:
            for slot in slots:
                if slot.pid is None and now >= slot.due:
                    _start(slot, by_pid, sockets, server, log)
        waits = [s.due - now for s in slots if s.pid is None and not stopping]
        timeout = max(0.01, min(waits)) if waits else 60.0
        info = signal.sigtimedwait(_SIGNALS, timeout)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            if not stopping:
                log("shutting down: workers finish their transactions under way")
            stopping = True
            # Why close ours too: while any copy of a listener is open the kernel
            # still queues connections nobody will serve.
            for sock in sockets:
                sock.close()
            _send(by_pid, signal.SIGTERM)
        elif info.si_signo == signal.SIGHUP and not stopping:
            log("reloading: SIGHUP to every worker")
            # Why here too: a worker forked later inherits the parent's settings. A
            # file that does not load is logged and the parent keeps the last good
            # ones, as every worker does (each reads the file again itself).
            server.reload()
            _send(by_pid, signal.SIGHUP)


def _start(slot, by_pid, sockets, server, log):
    parent = os.getpid()
    # Why freeze: the objects the parent made so far (modules, settings) are the
    # workers' too, shared page by page after the fork; a worker's garbage collector
    # writes into every object it examines, which copies the page. Frozen objects
    # are never examined (Python's gc.freeze, made for forking servers). The cost:
    # a frozen object in a reference cycle is never freed -- only the settings a
    # process drops at a SIGHUP, once per reload.
    gc.freeze()
    try:
        pid = os.fork()
    except OSError as exc:
        log(f"cannot start a worker: {exc.strerror or exc}")
        slot.delay = min(max(slot.delay * 2, BACKOFF_MIN), BACKOFF_MAX)
        slot.due = time.monotonic() + slot.delay
        return
    if pid == 0:                    # the worker: today's server on the shared sockets
        code = 1
        try:
            # Why unblock SIGCHLD here: the programs a worker runs (the relay,
            # sendmail, an isolated delivery) would inherit it blocked.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            _term_when_orphaned(parent)
            server.log = _tagged(server.log, os.getpid())
            server.single_accept = True
            server.log("worker started")
            server.run(sockets)
            server.log("worker stopped")
            code = 0
        except BaseException as exc:    # noqa: BLE001 -- never back into the parent's loop
            try:
                server.log(f"worker failed: {type(exc).__name__}: {exc}")
            except BaseException:
                pass
        finally:
            os._exit(code)
    slot.pid, slot.started = pid, time.monotonic()
    by_pid[pid] = slot


def _reap(by_pid, stopping, log):
    while by_pid:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        slot = by_pid.pop(pid, None)
        if slot is None:
            continue                # a child of a worker's that we inherited: ignore
        slot.pid = None
        if stopping:
            continue
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exited {os.waitstatus_to_exitcode(status)}")
        now = time.monotonic()
        if now - slot.started >= BACKOFF_RESET:
            slot.delay = 0.0
        else:
            slot.delay = min(max(slot.delay * 2, BACKOFF_MIN), BACKOFF_MAX)
        slot.due = now + slot.delay
        log(f"worker {pid} {how}; another starts in {slot.delay:.1f} s")


def _term_when_orphaned(parent):
    """A parent killed outright (SIGKILL, a crash) leaves no one to restart or stop
    the workers: each then gets SIGTERM from the kernel and drains as if told to
    (prctl PR_SET_PDEATHSIG, Linux). SIGTERM is still blocked here, so it waits for
    the server's handler."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:      # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _send(by_pid, signum):
    for pid in list(by_pid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _tagged(log, pid):
    def tagged(text):
        log(f"worker {pid}: {text}")
    return tagged
