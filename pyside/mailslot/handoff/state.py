"""A reused worker's process state: the snapshot, putting it back, and the check.

    snap = Snapshot.take()        # in a spare worker, before its first hand-off
    snap.drop_client_stdio()      # after a delivery: fds 0-2 are the server's again
    snap.restore()                # cwd, umask, environment, time zone, limits
    problems = snap.differences() # [] -> it may serve again; else one line each

A worker of mailslot-handoffd may serve up to handoff_worker_max_use hand-offs
(worker.py). Between two of them nothing may carry over that could change the
second delivery's outcome, so before serving again the worker puts back what a
hand-off sets on purpose (the client's descriptors on 0-2, its working directory,
umask, environment and resource limits) and then compares everything else it can
see with the snapshot taken before its first hand-off:

- descriptors: the set of open fds, each one's file (st_dev, st_ino, type) and its
  fd and file-status flags (a leaked descriptor is a difference);
- directory, umask, the environment (os.environ and the C library's environ
  alike), the time zone state (time.tzname/timezone/altzone/daylight), the locale;
- every resource limit (soft and hard): a hard limit the client lowered cannot be
  raised again by an unprivileged process, and a soft one that cannot be put back
  is a difference too;
- signals: each signal's Python handler and, from /proc/self/status, the kernel's
  pending, blocked, ignored and caught sets; the wakeup fd; every interval timer
  (alarm() is ITIMER_REAL) and any POSIX timer (/proc/self/timers);
- sys.stdin/stdout/stderr: the same objects, open, with the same encoding and
  error handling; sys.path, sys.meta_path, the import hooks, the recursion limit,
  the switch interval, trace/profile functions, excepthook, the collector's state,
  warnings filters, socket's default timeout, atexit's callback count;
- the process: ids and groups, capabilities, no_new_privs, seccomp, CPU affinity,
  nice value, process group and session, parent, name, dumpable, one thread only,
  no child process (running or zombie);
- memory: resident size at most MAX_RSS_GROWTH above the snapshot's, so a worker
  that delivered a large message is replaced rather than kept large.

Any difference, or any failure to look, means the worker exits instead of serving
again (the server forks a fresh one); worker.py logs the reason. What the check
cannot see is Python-level state inside modules (a module global a delivery
changed): the core keeps none that changes an outcome -- it is the same core that
mailslot-lmtpd runs for many deliveries in one process (docs/architecture.md) --
and the settings, userdb and Sieve caches are files keyed by (dev, ino, size,
mtime), read again by every delivery (tests/fastpath/test_reuse.py proves an edit
is seen by the next delivery on the same worker).

Errors: none escape take() but OSError (the worker then never serves); restore()
and differences() return their problems as text.

Security notes: the check is fail-safe by construction: it compares, it never
repairs beyond what restore() puts back, and anything it cannot read counts as a
difference.
"""

import ctypes
import os
import resource
import signal
import sys
import time

# A worker whose resident memory grew by more than this since its snapshot is
# replaced instead of reused (the memory a large delivery left behind).
MAX_RSS_GROWTH = 64 << 20
NLIMITS = 16                    # RLIMIT_CPU .. RLIMIT_RTTIME (protocol.NLIMITS)
# Lines of /proc/self/status that must not change between deliveries (memory and
# scheduling counters do, by nature; SigQ counts the whole user's queued signals).
STATUS_FIELDS = ("Umask", "PPid", "Uid", "Gid", "Groups", "Threads", "SigPnd",
                 "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff",
                 "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters",
                 "Cpus_allowed_list", "Mems_allowed_list", "TracerPid")
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_GET_KEEPCAPS = 7
PR_GET_TIMERSLACK = 30
PR_GET_CHILD_SUBREAPER = 37
ITIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)

_LIBC = ctypes.CDLL(None, use_errno=True)


def _prctl_get(option):
    value = ctypes.c_int(0)
    if option == PR_GET_PDEATHSIG or option == PR_GET_CHILD_SUBREAPER:
        if _LIBC.prctl(option, ctypes.byref(value), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
        return value.value
    result = _LIBC.prctl(option, 0, 0, 0, 0)
    if result < 0:
        raise OSError(ctypes.get_errno(), "prctl")
    return result


def _c_environ():
    """The C library's environ as a sorted list of bytes (what a child inherits)."""
    ptr = ctypes.POINTER(ctypes.c_char_p).in_dll(_LIBC, "environ")
    out = []
    i = 0
    while ptr and ptr[i] is not None:
        out.append(ptr[i])
        i += 1
    return sorted(out)


def _status():
    fields = {}
    with open("/proc/self/status", "rb") as f:
        for line in f.read().decode("ascii", "replace").splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _descriptors():
    """{fd: (st_dev, st_ino, type, fd flags, status flags)} of every open fd."""
    import fcntl
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            st = os.fstat(fd)
            out[fd] = (st.st_dev, st.st_ino, st.st_mode & 0o170000,
                       fcntl.fcntl(fd, fcntl.F_GETFD), fcntl.fcntl(fd, fcntl.F_GETFL))
        except OSError:
            pass            # the directory listing's own descriptor, closed by now
    return out


def _stream(stream):
    if stream is None:
        return None
    try:
        return (id(stream), stream.closed, stream.encoding, stream.errors,
                stream.line_buffering, stream.fileno())
    except (AttributeError, ValueError, OSError) as exc:
        return (id(stream), f"unreadable: {exc}")


def _python_state():
    """What the interpreter holds process-wide, as comparable values."""
    import gc
    state = {
        "sys.stdin": _stream(sys.stdin), "sys.stdout": _stream(sys.stdout),
        "sys.stderr": _stream(sys.stderr),
        "sys.path": list(sys.path), "sys.meta_path": [id(x) for x in sys.meta_path],
        "sys.path_hooks": [id(x) for x in sys.path_hooks],
        "recursion limit": sys.getrecursionlimit(),
        "switch interval": sys.getswitchinterval(),
        "trace": id(sys.gettrace()), "profile": id(sys.getprofile()),
        "excepthook": id(sys.excepthook), "unraisablehook": id(sys.unraisablehook),
        "displayhook": id(sys.displayhook),
        # Not gc.get_freeze_count(): it walks every frozen object (1.7 ms here).
        "gc": (gc.isenabled(), gc.get_threshold()),
        "os.environ": dict(os.environ), "os.environ object": id(os.environ),
        "time zone": (time.tzname, time.timezone, time.altzone, time.daylight),
        "handlers": [id(signal.getsignal(s)) for s in sorted(signal.valid_signals())],
        "signal mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "itimers": [signal.getitimer(t) for t in ITIMERS],
    }
    import _locale
    state["locale"] = _locale.setlocale(_locale.LC_ALL, None)
    if "socket" in sys.modules:
        state["socket timeout"] = sys.modules["socket"].getdefaulttimeout()
    if "warnings" in sys.modules:
        state["warnings"] = [id(f) for f in sys.modules["warnings"].filters]
    if "threading" in sys.modules:
        state["threads"] = sys.modules["threading"].active_count()
    if "faulthandler" in sys.modules:
        state["faulthandler"] = sys.modules["faulthandler"].is_enabled()
    import atexit
    state["atexit"] = atexit._ncallbacks()
    return state


def _process_state():
    status = _status()
    state = {f"status {key}": status.get(key) for key in STATUS_FIELDS}
    state.update({
        "cwd": os.getcwd(), "cwd inode": (os.stat(".").st_dev, os.stat(".").st_ino),
        "limits": [resource.getrlimit(r) for r in range(NLIMITS)],
        "environ (C)": _c_environ(),
        "descriptors": _descriptors(),
        "ids": (os.getresuid(), os.getresgid(), sorted(os.getgroups())),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "pgrp/session": (os.getpgrp(), os.getsid(0)),
        "affinity": sorted(os.sched_getaffinity(0)),
        "prctl": [_prctl_get(o) for o in (PR_GET_PDEATHSIG, PR_GET_DUMPABLE,
                                          PR_GET_KEEPCAPS, PR_GET_TIMERSLACK,
                                          PR_GET_CHILD_SUBREAPER)],
    })
    with open("/proc/self/comm", "rb") as f:
        state["name"] = f.read()
    try:
        with open("/proc/self/timers", "rb") as f:
            state["posix timers"] = f.read()
    except OSError:
        state["posix timers"] = None        # a kernel without the file: none to see
    return state


def _rss(status=None):
    value = (status or _status()).get("VmRSS", "0 kB").split()[0]
    return int(value) * 1024


def _children():
    """'' when this process has no child; else what waitpid saw."""
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return ""
    return "a child is still running" if pid == 0 else f"a child ({pid}) was left behind"


class Snapshot:
    """The worker's state before its first hand-off, and how to get back to it."""

    def __init__(self):
        self.state = {}
        self.saved_stdio = []
        self.cwd_fd = -1
        self.umask = 0
        self.environ = {}
        self.limits = []
        self.rss = 0

    @classmethod
    def take(cls):
        import fcntl
        snap = cls()
        # Copies of the server's fds 0-2 and of the working directory, so that a
        # hand-off's can be replaced by them again; taken before the state is
        # read, so that they are part of it.
        snap.saved_stdio = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (0, 1, 2)]
        snap.cwd_fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        snap.umask = os.umask(0o077)
        os.umask(snap.umask)
        snap.environ = dict(os.environ)
        snap.limits = [resource.getrlimit(r) for r in range(NLIMITS)]
        snap.state = snap.current()
        snap.rss = _rss()
        return snap

    @staticmethod
    def current():
        state = _python_state()
        state.update(_process_state())
        return state

    def drop_client_stdio(self):
        """Make fds 0-2 the server's again (the client's are closed here): called
        before the result is sent, so the MTA's pipes see their end at once."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        for target, fd in enumerate(self.saved_stdio):
            os.dup2(fd, target, inheritable=True)

    def restore(self):
        """Put back what a hand-off sets on purpose; return the problems (text)."""
        problems = []
        self.drop_client_stdio()
        os.fchdir(self.cwd_fd)
        os.umask(self.umask)
        if dict(os.environ) != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)
        time.tzset()
        for res, (soft, hard) in enumerate(self.limits):
            now = resource.getrlimit(res)
            if now == (soft, hard):
                continue
            if below(now[1], hard):
                problems.append(f"resource limit {res}: the hard limit was lowered to "
                                f"{now[1]} (cannot be raised again)")
                continue
            try:
                resource.setrlimit(res, (soft, hard))
            except (ValueError, OSError) as exc:
                problems.append(f"resource limit {res}: cannot be put back: {exc}")
        return problems

    def differences(self):
        """One line per difference from the snapshot; [] when none."""
        problems = []
        try:
            now = self.current()
        except Exception as exc:   # anything unreadable counts as a difference
            return [f"the state could not be read: {type(exc).__name__}: {exc}"]
        for key, value in self.state.items():
            if now.get(key) != value:
                problems.append(f"{key} changed" + _detail(key, value, now.get(key)))
        for key in now.keys() - self.state.keys():
            problems.append(f"{key} appeared")
        child = _children()
        if child:
            problems.append(child)
        try:
            rss = _rss()
        except OSError as exc:
            return problems + [f"memory could not be read: {exc}"]
        if rss > self.rss + MAX_RSS_GROWTH:
            problems.append(f"resident memory grew by {(rss - self.rss) >> 20} MiB "
                            f"(limit {MAX_RSS_GROWTH >> 20})")
        return problems


def below(value, reference):
    """value < reference, RLIM_INFINITY being the largest."""
    if value == resource.RLIM_INFINITY:
        return False
    return reference == resource.RLIM_INFINITY or value < reference


def _detail(key, before, after):
    if key == "descriptors":
        gone = sorted(before.keys() - after.keys())
        new = sorted(after.keys() - before.keys())
        other = sorted(fd for fd in before.keys() & after.keys() if before[fd] != after[fd])
        return f": new {new}, closed {gone}, changed {other}"
    if key == "environ (C)":
        before = dict(e.partition(b"=")[::2] for e in before)
        after = dict(e.partition(b"=")[::2] for e in after or [])
        names = sorted(k.decode("ascii", "replace") for k in before.keys() | after.keys()
                       if before.get(k) != after.get(k))
        return f": {', '.join(names)}"
    if key == "os.environ":
        names = sorted(k for k in before.keys() | after.keys()
                       if before.get(k) != after.get(k))
        return f": {', '.join(names)}"
    text = f": {before!r} -> {after!r}"
    return text if len(text) < 300 else text[:297] + "..."
