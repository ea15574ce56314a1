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
import time


class DeliveryFailed(Exception):
    pass


GNU_TIME = "/usr/bin/time"


def time_one(argv, message_path, env):
    """Run argv once with stdin from message_path; return wall seconds."""
    with open(message_path, "rb") as stdin, tempfile.TemporaryFile() as stderr, \
            open(os.devnull, "wb") as devnull:
        actions = [(os.POSIX_SPAWN_DUP2, stdin.fileno(), 0),
                   (os.POSIX_SPAWN_DUP2, devnull.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, stderr.fileno(), 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            stderr.seek(0)
            raise DeliveryFailed(f"{argv[0]} exited {code}: "
                                 f"{stderr.read(2000).decode('utf-8', 'replace')}")
    return elapsed


def peak_rss(argv, message_path, env, scratch):
    """Run argv once under GNU time; return its peak resident set in KiB."""
    report = os.path.join(scratch, "peak-rss")
    time_one([GNU_TIME, "-f", "%M", "-o", report, "--"] + argv, message_path, env)
    with open(report) as f:
        return int(f.read().split()[-1])


def run_case(sides, message_path, env, runs, warmup=3, progress=None):
    """Alternate the sides runs times after warmup rounds; return {side: [seconds]}."""
    for _ in range(warmup):    # warm caches; Sieve compiles its cache here
        for argv in sides.values():
            time_one(argv, message_path, env)
    samples = {name: [] for name in sides}
    for i in range(runs):
        for name, argv in sides.items():
            samples[name].append(time_one(argv, message_path, env))
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
