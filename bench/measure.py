"""Timing: one delivery's wall time and peak memory, alternating sides, the disk's ceiling.

time_one() spawns one process (posix_spawn: the same fork+exec overhead for every
side), its stdin a file holding the message, and reaps it. Runs alternate between
the sides (A B A B ...), so that drift in the machine's speed falls on both alike.

peak_rss() runs a side once more under GNU time (`/usr/bin/time -f %M`), outside the
timed runs: ru_maxrss of a child spawned from this Python process would start at
this process's own size (the child shares or copies its memory until exec), while
time(1) is small; its figure covers the process across its execs and the children
it waited for (dovecot-lda's doveconf).

physical_limit() is the ceiling for any LDA on this filesystem: a durable
create+write+fsync+rename+directory-fsync loop in one process, no start-up at all.
"""

import os
import statistics
import sys
import tempfile
import threading
import time


class DeliveryFailed(Exception):
    pass


GNU_TIME = "/usr/bin/time"
PIPE_CHUNK = 64 * 1024


def time_one(argv, message_path, env, stdin_kind="pipe"):
    """Run argv once with the message on stdin; return wall seconds.

    stdin_kind "pipe" feeds it through a pipe from a writer thread, as an MTA's pipe
    transport does (Postfix's pipe(8), local(8)): a side that needs the message
    twice must spool it. "file" hands it a regular file it could read in place.
    """
    with open(message_path, "rb") as message, tempfile.TemporaryFile() as stderr, \
            open(os.devnull, "wb") as devnull:
        writer = None
        if stdin_kind == "pipe":
            read_end, write_end = os.pipe()
            stdin_fd = read_end
        else:
            stdin_fd = message.fileno()
        actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                   (os.POSIX_SPAWN_DUP2, devnull.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        if stdin_kind == "pipe":
            os.close(read_end)
            writer = threading.Thread(target=_feed, args=(message, write_end))
            writer.start()
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        if writer is not None:
            writer.join()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            stderr.seek(0)
            raise DeliveryFailed(f"{argv[0]} exited {code}: "
                                 f"{stderr.read(2000).decode('utf-8', 'replace')}")
    return elapsed


def _feed(message, fd):
    """Write the whole message into the pipe, then close it (EOF for the reader)."""
    try:
        while True:
            chunk = message.read(PIPE_CHUNK)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass  # the reader exited early; its exit status tells why
    finally:
        os.close(fd)


def peak_rss(argv, message_path, env, scratch, stdin_kind="pipe"):
    """Run argv once under GNU time; return its peak resident set in KiB."""
    report = os.path.join(scratch, "peak-rss")
    time_one([GNU_TIME, "-f", "%M", "-o", report, "--"] + argv, message_path, env,
             stdin_kind)
    with open(report) as f:
        return int(f.read().split()[-1])


def run_case(sides, message_path, env, runs, warmup=3, progress=None, stdin_kind="pipe"):
    """Alternate the sides runs times after warmup rounds; return {side: [seconds]}."""
    for _ in range(warmup):    # warm caches; Sieve compiles its cache here
        for argv in sides.values():
            time_one(argv, message_path, env, stdin_kind)
    samples = {name: [] for name in sides}
    for i in range(runs):
        for name, argv in sides.items():
            samples[name].append(time_one(argv, message_path, env, stdin_kind))
        if progress:
            progress(i + 1, runs)
    return samples


def summarize(samples, peak_kib):
    """Median, 10th and 90th percentile of wall time (ms), and the peak RSS (KiB)."""
    times = sorted(s * 1000 for s in samples)
    return {
        "median_ms": statistics.median(times),
        "p10_ms": _percentile(times, 10),
        "p90_ms": _percentile(times, 90),
        "peak_rss_kib": peak_kib,
        "runs": len(times),
    }


def paired_ratio(a, b):
    """The median of run-by-run ratios a[i]/b[i]: robust against drift over the run."""
    return statistics.median(x / y for x, y in zip(a, b))


def _percentile(sorted_values, pct):
    if len(sorted_values) == 1:
        return sorted_values[0]
    k = (len(sorted_values) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def physical_limit(directory, seconds=2.0, size=2048):
    """Durable 2 KB creates per second on directory's filesystem (one process)."""
    for sub in ("tmp", "new"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    data = b"x" * size
    dir_fd = os.open(os.path.join(directory, "new"), os.O_RDONLY | os.O_DIRECTORY)
    count = 0
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            name = f"{count}.phys"
            tmp = os.path.join(directory, "tmp", name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, os.path.join(directory, "new", name))
            os.fsync(dir_fd)
            count += 1
    finally:
        os.close(dir_fd)
    return count / (time.perf_counter() - start)


def progress_printer(label):
    def show(done, total):
        sys.stderr.write(f"\r  {label}: {done}/{total}   ")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show
