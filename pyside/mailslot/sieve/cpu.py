"""The CPU time limit of a Sieve run (sieve_max_cpu_time).

cpu_guard(seconds) is a context manager that arms ITIMER_PROF (CPU time, user
plus system) for the run; when it fires, the SIGPROF handler raises
CpuTimeExceeded in the running code -- also inside a long regular expression
match, which CPython's re module interrupts to run signal handlers. The
interpreter also compares time.thread_time() with the deadline between ops, so
the limit holds where signals cannot be used (not the main thread). The deadline
is the running thread's own CPU time: in a server delivering in several threads,
one delivery's budget is not spent by the others (process_time() would count
them all).

Errors: CpuTimeExceeded (internal; the interpreter turns it into a run error).
Security: this is what keeps a hostile script (a regex backtracking bomb, a huge
foreverypart) from hanging a delivery.
"""

import time


class CpuTimeExceeded(Exception):
    """The Sieve run used up its CPU time."""


class cpu_guard:
    """Arm the CPU timer for seconds; the previous handler is restored after."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.deadline = None
        self._armed = False
        self._old = None

    def __enter__(self):
        if not self.seconds or self.seconds <= 0:
            return self
        self.deadline = time.thread_time() + self.seconds
        # _signal, not signal: the same calls without importing enum (~5 ms).
        import _signal
        try:
            # why: a C-level regex match never returns to our op loop; only a
            # signal handler can stop it. (ValueError: not the main thread.)
            self._old = _signal.signal(_signal.SIGPROF, _on_timer)
        except ValueError:
            return self
        _signal.setitimer(_signal.ITIMER_PROF, self.seconds)
        self._armed = True
        return self

    def __exit__(self, *exc):
        if self._armed:
            import _signal
            _signal.setitimer(_signal.ITIMER_PROF, 0)
            _signal.signal(_signal.SIGPROF,
                           self._old if self._old is not None else _signal.SIG_DFL)
            self._armed = False
        return False


def over(deadline):
    """True when the running thread's CPU time is past deadline (a cpu_guard's)."""
    return time.thread_time() > deadline


def _on_timer(signum, frame):
    raise CpuTimeExceeded()
