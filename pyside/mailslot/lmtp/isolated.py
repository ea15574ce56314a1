"""A recipient whose Sieve script matches with :regex, delivered in a process of its own.

    regex.THREAD_GUARD = refuse_off_main_thread      # the server, at start
    ...
    except NeedsOwnProcess:                          # delivery.py, in a thread
        reply = deliver_isolated(backend, job, index)

Why: Sieve's CPU limit (sieve_max_cpu_time) stops a long regular-expression match
only through a signal (sieve/cpu.py: SIGPROF), and Python runs signal handlers in
the main thread alone; a match runs in C holding the GIL, so in one of the server's
connection threads a backtracking bomb ("^(a+)+$" against "aaaa...!") would not be
cut short and would stall every other connection while it ran. So the server's
deliveries run :regex nowhere but in a main thread: the Sieve regex module calls
THREAD_GUARD before each match, and in the server that raises NeedsOwnProcess off
the main thread (before any action of the script ran: Sieve actions are carried out
after the script ends). The delivery is then done again, from its start, by a fresh
interpreter running child.py's child_main() as the same uid: the same resolve,
the same headers and the same in-process delivery (so every reply is the one the
thread would have given: quota 552/452, a reject mailed and 250, ereject 550), with
the limit's signal in its main thread. The thread waits for it without the GIL.

Bounds: the child gets sieve_max_cpu_time of CPU for its script (the engine's own
limit) and ISOLATED_SLACK more wall time for its start and save; past that it is
killed and the recipient answered 451 4.3.0 (the MTA tries again; a child killed
after its save but before its reply would make that retry a second copy -- the one
way this path can duplicate, and only for a delivery already that slow). Its reply
is at most MAX_REPLY bytes. Cost: one interpreter start per such delivery (tens of
milliseconds; docs/benchmarks.md), only for users whose scripts use :regex.

Errors: anything that goes wrong around the child is that recipient's 451 4.3.0.
Security: the child runs as the server (no privilege change), with a fixed
environment, its job (settings path, addresses, header lines) as JSON on its stdin
followed by the message; nothing of it is a path or a command line word.
"""

import os
import sys
import threading

# A child's wall-time allowance beyond sieve_max_cpu_time: interpreter start,
# userdb, the save's fsyncs on a loaded disk.
ISOLATED_SLACK = 60
# With sieve_max_cpu_time 0 (no limit) a child still gets no more than this.
ISOLATED_MAX = 600
# The child's answer: one reply line.
MAX_REPLY = 1024
# One JSON line in front of the message.
MAX_JOB = 64 * 1024


class NeedsOwnProcess(BaseException):
    """A :regex match off the main thread: deliver this recipient in a child.
    A BaseException: no handler of the delivery core or Sieve may take it for a
    script error (it would fall back to keep with the limit not enforced)."""


def refuse_off_main_thread():
    """regex.THREAD_GUARD in the server: a match is allowed in a main thread only."""
    if threading.current_thread() is not threading.main_thread():
        raise NeedsOwnProcess()


def deliver_isolated(backend, job, index):
    """Deliver job's index-th recipient in a child; return its reply line."""
    import subprocess
    address, rcpt = job.tx.recipients[index]
    limit = rcpt.settings["sieve_max_cpu_time"] or 0
    timeout = min(limit + ISOLATED_SLACK, ISOLATED_MAX) if limit else ISOLATED_MAX
    originals = job.tx.originals
    spec = {"config": backend.config_path, "address": address,
            "original": originals[index] if index < len(originals) else None,
            "sender": job.tx.sender, "id": job.tx.id, "single": job.single,
            "received": job.received.decode("latin-1"), "hostname": backend.hostname}
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, "-I"] + (["-S"] if sys.flags.no_site else []) + [
        "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
              "from mailslot.lmtp.child import child_main; sys.exit(child_main())",
        package]
    env = {"PATH": "/usr/bin:/bin"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=None, close_fds=True, env=env)
    except OSError as exc:
        return f"451 4.3.0 <{address}> cannot start a delivery process: {exc.strerror}"
    writer = threading.Thread(target=_feed, args=(proc.stdin, spec, job.message),
                              daemon=True)
    writer.start()
    try:
        out, _ = _communicate(proc, timeout)
    except TimeoutError:
        return f"451 4.3.0 <{address}> Delivery took too long"
    finally:
        writer.join(5)
    line = out.split(b"\n", 1)[0].decode("utf-8", "replace")
    if proc.returncode != 0 or not line[:1] in ("2", "4", "5"):
        return f"451 4.3.0 <{address}> Delivery process failed"
    return line


def _feed(pipe, spec, message):
    import json
    try:
        pipe.write(json.dumps(spec).encode("ascii") + b"\n")
        for chunk in message.chunks():
            pipe.write(chunk)
    except OSError:
        pass                        # the child stopped reading: its answer says why
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _communicate(proc, timeout):
    """The child's stdout (at most MAX_REPLY bytes) once it exited; kill it at timeout."""
    import selectors
    import time
    deadline = time.monotonic() + timeout
    out = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                proc.kill()
                proc.wait()
                proc.stdout.close()
                raise TimeoutError()
            data = os.read(proc.stdout.fileno(), MAX_REPLY)
            if not data:
                break
            if len(out) < MAX_REPLY:
                out += data[:MAX_REPLY - len(out)]
    proc.stdout.close()
    try:
        proc.wait(max(deadline - time.monotonic(), 1))
    except Exception:
        proc.kill()
        proc.wait()
        raise TimeoutError() from None
    return bytes(out), None
