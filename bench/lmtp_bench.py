"""LMTP throughput: mailslot-lmtpd against Dovecot's lmtp, same machine, same disk.

    .venv/bin/python bench/run_bench.py --lmtp [--quick]     (as root)

Both servers get the same 16 users (each connection delivers to its own user, one
recipient per message), the same 2 KB message, Maildir with fsync on (both sides'
mail_fsync=optimized: the file and its directory are fsynced before the 250), and a
log file. mailslot-lmtpd runs from the installed tree as the bench user (the
single-uid layout); Dovecot runs its own master with a private base_dir (as root, as
Dovecot is deployed), its lmtp service delivering as the same bench uid. The load
generator (bench/lmtp_load.py) keeps `connections` LMTP connections busy for a fixed
time, one transaction after another on each (MAIL, RCPT, DATA pipelined as RFC 2920
allows; the content after 354), and counts the 250s. It is bench/lmtp_load.c,
compiled with cc -O2 into the run's temporary directory, one thread on epoll (the
Python one, a thread per connection, with --lmtp-generator python, or with a warning
when there is no compiler). After every run the bench counts the files in the side's
Maildirs: a run whose count differs from the acknowledged one stops the bench. Sides
alternate run by run; the median run counts. The physical limit (bench/measure.py: a
durable create+write+fsync+rename+directory fsync loop, one process) is measured in
the same run on the same filesystem: before every round of runs (each mailslot run
is divided by the loop measured just before it, and the median of those ratios is
the "mailslot / physical limit" figure -- the loop's own rate moves with what the
disk freed in the minutes before) and once more after all of them.

CPU: each side's CPU seconds (user + system, from /proc/PID/stat) per acknowledged
message over the same runs -- for Dovecot its master, the children it reaped and its
live children (lmtp, auth, ...). A shared machine distorts this far less than it
distorts messages per second. The generator's own CPU per message (getrusage) is
reported per side and connection count: it shares the cores with the servers.

Memory, while 16 connections each send one 50 MB message (spooled to a file past
1 MiB, so memory stays flat), three figures for mailslot-lmtpd's processes (the
parent and its workers): the peak of their summed PSS (/proc/PID/smaps_rollup,
sampled every 50 ms while the messages are in flight: the pages the forked workers
share with the parent counted once, split between them) -- the honest total; the
largest VmHWM of one process; and the sum of their VmHWMs, which counts the shared
pages once per process and adds peaks from different moments (an overstatement,
kept for comparison with earlier sessions' figures).

Processes: mailslot-lmtpd runs with lmtp_processes PROCESSES (run_bench.py
--lmtp-processes, default "auto": one worker per CPU), said in the report. Dovecot
runs with its defaults: its lmtp service starts a process per connection, up to
process_limit, so "auto" compares like with like; "1" is the one-process server.
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases as casemod  # noqa: E402
import measure  # noqa: E402
from lmtp_load import Generator, Conn  # noqa: E402

DOVECOT = "/usr/sbin/dovecot"
USERS = 16
START_TIMEOUT = 30
GENERATOR_NAMES = {"c": "C (bench/lmtp_load.c, one thread on epoll)",
                   "python": "Python (a thread per connection in the bench process)"}


def prepare(base, inst, uid, gid, processes="auto"):
    """Write both sides' configuration under base/lmtp; return the paths."""
    top = os.path.join(base, "lmtp")
    paths = {"top": top}
    for side in ("mailslot", "dovecot"):
        root = os.path.join(top, side)
        os.makedirs(os.path.join(root, "homes"))
        os.makedirs(os.path.join(root, "run"))
        with open(os.path.join(root, "users"), "w") as f:
            for i in range(USERS):
                home = os.path.join(root, "homes", f"u{i}")
                os.mkdir(home)
                f.write(f"u{i}::{uid}:{gid}::{home}::\n")
    ms = os.path.join(top, "mailslot")
    os.mkdir(os.path.join(ms, "tmp"))
    with open(os.path.join(ms, "mailslot.yaml"), "w") as f:
        f.write(f"mail_location: maildir:~/Maildir\nmail_fsync: optimized\n"
                f"log_path: {ms}/mailslot.log\nmail_temp_dir: {ms}/tmp\n"
                f"hostname: bench.test\nfirst_valid_uid: 1\nfirst_valid_gid: 1\n"
                f"lmtp_listen: unix:{ms}/run/lmtp\nlmtp_processes: {processes}\n"
                f"userdb:\n  - driver: passwd-file\n    args: username_format=%n {ms}/users\n")
    dv = os.path.join(top, "dovecot")
    with open(os.path.join(dv, "dovecot.conf"), "w") as f:
        f.write(f"base_dir = {dv}/run\nstate_dir = {dv}/run/state\n"
                f"log_path = {dv}/dovecot.log\ninfo_log_path = {dv}/dovecot.log\n"
                f"ssl = no\nprotocols = lmtp\nlisten = 127.0.0.1\n"
                f"first_valid_uid = 1\nfirst_valid_gid = 1\nmail_fsync = optimized\n"
                f"mail_location = maildir:~/Maildir\n"
                f"passdb {{\n  driver = passwd-file\n  args = username_format=%n {dv}/users\n}}\n"
                f"userdb {{\n  driver = passwd-file\n  args = username_format=%n {dv}/users\n}}\n"
                f"service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n"
                f"service anvil {{\n  chroot =\n}}\n")
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
    os.chown(top, uid, gid)
    # Dovecot's master makes its base_dir itself (root-owned).
    os.chown(os.path.join(dv, "run"), 0, 0)
    paths.update({
        "mailslot_argv": ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                          "--", os.path.join(inst, "usr/lib/mailslot/mailslot-lmtpd"),
                          "-c", os.path.join(ms, "mailslot.yaml"), "--foreground"],
        "mailslot_socket": os.path.join(ms, "run", "lmtp"),
        "dovecot_argv": [DOVECOT, "-F", "-c", os.path.join(dv, "dovecot.conf")],
        "dovecot_socket": os.path.join(dv, "run", "lmtp"),
        "physical": os.path.join(top, "physical"),
        "uid": uid, "gid": gid,
    })
    return paths


def start(argv, sock_path, log_path):
    log = open(log_path, "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            s.close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    with open(log_path, "rb") as f:
        raise SystemExit(f"bench: {argv[0]} did not start: {f.read()[-2000:]!r}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid, with_children=False):
    """pid's user + system CPU seconds; with_children: plus the children it reaped and
    its live descendants' (Dovecot's master and its service processes)."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(p):
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    own = fields(pid)
    total = int(own[11]) + int(own[12])
    if with_children:
        total += int(own[13]) + int(own[14])
        parents, kids = {pid}, {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    kids[int(name)] = fields(name)
                except OSError:
                    pass
        grew = True
        while grew:
            grew = False
            for p, f in kids.items():
                if p not in parents and int(f[1]) in parents:
                    parents.add(p)
                    total += int(f[11]) + int(f[12])
                    grew = True
    return total / tick


def load(generator, paths, side, connections, seconds, message):
    """One run of `generator` against side ("mailslot" or "dovecot"): its result
    (messages, elapsed, the generator's CPU seconds), after checking that the side's
    Maildirs hold exactly one new file per acknowledged message."""
    before = delivered_files(paths, side)
    result = generator.run(paths[side + "_socket"], connections, seconds, message,
                           [f"u{i}@bench.test" for i in range(USERS)], paths["top"])
    filed = delivered_files(paths, side) - before
    if filed != result["messages"]:
        raise SystemExit(f"bench: {side}: {result['messages']} messages acknowledged "
                         f"but {filed} files delivered")
    return result


def delivered_files(paths, side):
    """The files in the side's users' Maildirs (new/ and cur/)."""
    total = 0
    for i in range(USERS):
        for sub in ("new", "cur"):
            try:
                total += len(os.listdir(os.path.join(paths["top"], side, "homes",
                                                     f"u{i}", "Maildir", sub)))
            except FileNotFoundError:
                pass
    return total


def peak_memory(paths, size=50 * 1024 * 1024, connections=16):
    """mailslot-lmtpd's memory while `connections` size-byte messages arrive at once,
    in KiB: {"hwm_max": the largest VmHWM of its processes, "hwm_sum": the sum of
    their VmHWMs, "pss_sum_peak": the peak over time of the sum of their PSS,
    "samples": how many PSS samples}.

    The sum of VmHWMs counts every page a forked worker shares with the parent (the
    interpreter, the modules imported before the fork) once per process, and adds
    peaks that may not have happened at the same moment: it overstates. PSS (from
    /proc/PID/smaps_rollup) splits each shared page between the processes sharing
    it, so the sum of PSS at one moment is the memory the server holds then; sampled
    every PSS_INTERVAL seconds, its peak may miss a shorter spike."""
    proc = start(paths["mailslot_argv"], paths["mailslot_socket"],
                 os.path.join(paths["top"], "mailslot.out"))
    try:
        line = b"x" * 76 + b"\r\n"
        chunk = line * (1024 * 1024 // len(line))
        errors = []

        def one(i):
            try:
                conn = Conn(paths["mailslot_socket"])
                conn.s.sendall(b"MAIL FROM:<s@bench.test>\r\nRCPT TO:<u%d@bench.test>\r\n"
                               b"DATA\r\n" % (i % USERS))
                for code in (b"250", b"250", b"354"):
                    conn.expect(code)
                conn.s.sendall(b"Subject: big\r\n\r\n")
                for _ in range(size // len(chunk)):
                    conn.s.sendall(chunk)
                conn.s.sendall(b".\r\n")
                conn.expect(b"250")
                conn.s.close()
            except Exception as exc:       # reported: the figure would be no measurement
                errors.append(exc)

        sampler = PssSampler(proc.pid)
        sampler.start()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sampler.finish()
        if errors:
            raise SystemExit(f"bench: a 50 MB delivery failed: {errors[0]!r}")
        peaks = [_hwm_kib(p) for p in [proc.pid] + _descendants(proc.pid)]
        return {"hwm_max": max(peaks), "hwm_sum": sum(peaks),
                "pss_sum_peak": sampler.peak, "samples": sampler.samples}
    finally:
        stop(proc)


PSS_INTERVAL = 0.05


class PssSampler(threading.Thread):
    """Samples the summed PSS of pid and its descendants every PSS_INTERVAL s."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, 0, 0
        self.done = threading.Event()

    def run(self):
        while True:
            total = sum(_pss_kib(p) for p in [self.pid] + _descendants(self.pid))
            self.peak = max(self.peak, total)
            self.samples += 1
            if self.done.wait(PSS_INTERVAL):
                return

    def finish(self):
        self.done.set()
        self.join()


def _pss_kib(pid):
    """Pss of /proc/pid/smaps_rollup in KiB (0 for a process already gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for text in f:
                if text.startswith("Pss:"):
                    return int(text.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid):
    """pid's live descendants (mailslot-lmtpd's workers and any child of theirs)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(name)] = int(fields[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier}
        found += sorted(frontier)
    return found


def _hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for text in f:
            if text.startswith("VmHWM:"):
                return int(text.split()[1])
    return 0


def physical(paths, seconds):
    """The durable-create loop as the bench user, on the servers' filesystem."""
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import measure; "
            f"print(measure.physical_limit({paths['physical']!r}, seconds={seconds}))")
    out = subprocess.run(["setpriv", f"--reuid={paths['uid']}", f"--regid={paths['gid']}",
                          "--clear-groups", "--", sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


# Seconds of the physical-limit loop beside each round of runs (and in --quick).
PHYSICAL_SECONDS_ROUND = 2.0
PHYSICAL_SECONDS_QUICK = 1.0


def run(base, inst, uid, gid, quick=False, processes="auto", generator="c"):
    """The whole LMTP comparison; returns a dict for the report. generator: "c"
    (bench/lmtp_load.c, the Python one if there is no compiler) or "python"."""
    case = casemod.LMTP_CASE
    paths = prepare(base, inst, uid, gid, processes)
    os.makedirs(paths["physical"])
    os.chown(paths["physical"], uid, gid)
    gen = Generator.create(paths["top"], generator)
    message = casemod.make_message(case.size)
    seconds = case.quick_seconds if quick else case.seconds
    runs = case.quick_runs if quick else case.full_runs
    servers = {
        "mailslot": start(paths["mailslot_argv"], paths["mailslot_socket"],
                          os.path.join(paths["top"], "mailslot.out")),
        "dovecot": start(paths["dovecot_argv"], paths["dovecot_socket"],
                         os.path.join(paths["top"], "dovecot.out")),
    }
    results = {"size": case.size, "seconds": seconds, "runs": runs, "connections": {},
               "lmtp_processes": processes, "generator": gen.kind,
               "workers": len(os.sched_getaffinity(0)) if processes == "auto"
               else int(processes)}
    try:
        for side in servers:                     # warm-up: caches, processes, Maildirs
            load(gen, paths, side, 4, 1.0, message)
        for conns in case.connections:
            rates = {side: [] for side in servers}
            cpu = {side: [] for side in servers}
            gen_cpu = {side: [] for side in servers}
            phys, phys_ratio = [], []
            for r in range(runs):
                order = ("mailslot", "dovecot") if r % 2 == 0 else ("dovecot", "mailslot")
                # The physical limit beside each round: on this disk it moves with
                # what the filesystem freed in the minutes before (ext4 without a
                # journal scans recently freed inodes at each create), so each
                # mailslot run is set against the loop measured next to it.
                phys.append(physical(paths, PHYSICAL_SECONDS_QUICK if quick
                                     else PHYSICAL_SECONDS_ROUND))
                for side in order:
                    # Both are process trees (mailslot's parent and its workers).
                    before = cpu_seconds(servers[side].pid, True)
                    got = load(gen, paths, side, conns, seconds, message)
                    count = max(got["messages"], 1)
                    cpu[side].append((cpu_seconds(servers[side].pid, True) - before)
                                     / count * 1000)
                    rates[side].append(got["messages"] / got["elapsed"])
                    gen_cpu[side].append(got["cpu"] / count * 1000)
                phys_ratio.append(rates["mailslot"][-1] / phys[-1])
            med = {side: statistics.median(v) for side, v in rates.items()}
            cpu_med = {side: statistics.median(v) for side, v in cpu.items()}
            gen_med = {side: statistics.median(v) for side, v in gen_cpu.items()}
            results["connections"][conns] = {"rates": rates, "median": med,
                                             "ratio": med["mailslot"] / med["dovecot"],
                                             "cpu_ms_per_msg": cpu, "cpu_median": cpu_med,
                                             "generator_cpu_ms_per_msg": gen_cpu,
                                             "generator_cpu_median": gen_med,
                                             "physical_per_s": phys,
                                             "physical_median": statistics.median(phys),
                                             "physical_ratio": phys_ratio,
                                             "physical_ratio_median":
                                                 statistics.median(phys_ratio),
                                             "load_average": os.getloadavg()[0]}
            sys.stderr.write(f"lmtp {conns} connection(s): mailslot {med['mailslot']:.0f}/s "
                             f"({cpu_med['mailslot']:.2f} ms CPU/msg), dovecot "
                             f"{med['dovecot']:.0f}/s ({cpu_med['dovecot']:.2f} ms CPU/msg), "
                             f"{gen.kind} generator {gen_med['mailslot']:.3f} / "
                             f"{gen_med['dovecot']:.3f} ms CPU/msg, "
                             f"{statistics.median(phys_ratio):.0%} of the physical limit "
                             f"beside it ({statistics.median(phys):.0f}/s), "
                             f"load {os.getloadavg()[0]:.1f}\n")
    finally:
        for proc in servers.values():
            stop(proc)
    results["physical_per_s"] = physical(paths, 1.0 if quick else 5.0)
    results["memory_message_mib"] = 5 if quick else 50
    memory = peak_memory(paths, size=results["memory_message_mib"] * 2**20)
    results["peak_rss_kib_16x50m"] = memory["hwm_max"]
    results["peak_rss_kib_16x50m_total"] = memory["hwm_sum"]
    results["peak_pss_kib_16x50m_total"] = memory["pss_sum_peak"]
    results["pss_samples"] = memory["samples"]
    return results


def report(results):
    """Markdown lines for docs/benchmarks.md."""
    phys = results["physical_per_s"]
    kind = results.get("generator", "python")
    lines = [f"mailslot-lmtpd with lmtp_processes: {results.get('lmtp_processes', 1)} "
             f"({results.get('workers', 1)} worker process(es)); Dovecot's lmtp with its "
             f"defaults (a process per connection); the {GENERATOR_NAMES[kind]} load "
             "generator.", "",
             "| connections | mailslot-lmtpd msg/s | Dovecot lmtp msg/s | ratio | "
             "mailslot / physical limit | CPU ms/msg mailslot | CPU ms/msg Dovecot | "
             "generator CPU ms/msg (mailslot / Dovecot runs) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for conns, row in sorted(results["connections"].items(), key=lambda kv: int(kv[0])):
        med, cpu = row["median"], row.get("cpu_median", {})
        gen = row.get("generator_cpu_median", {})
        if "physical_ratio_median" in row:
            share = (f"{row['physical_ratio_median']:.0%} "
                     f"(of {row['physical_median']:.0f}/s)")
        else:
            share = f"{med['mailslot'] / phys:.0%}"
        lines.append(f"| {conns} | {med['mailslot']:.0f} | {med['dovecot']:.0f} | "
                     f"{row['ratio']:.2f}x | {share} | "
                     f"{cpu.get('mailslot', 0):.2f} | {cpu.get('dovecot', 0):.2f} | "
                     f"{gen.get('mailslot', 0):.3f} / {gen.get('dovecot', 0):.3f} |")
    lines.append("")
    mib = lambda key: (results.get(key) or 0) / 1024  # noqa: E731
    lines.append("mailslot / physical limit: the median over the runs of each mailslot "
                 "run's rate divided by the physical limit (one process, durable create "
                 "loop, bench/measure.py) measured just before it; in brackets the "
                 "median of those loops. ")
    lines.append(f"Physical limit measured once more after all runs: {phys:.0f}/s. "
                 f"Memory of mailslot-lmtpd, 16 connections x "
                 f"{results.get('memory_message_mib', 50)} MB: the peak of the "
                 f"summed PSS of all its processes, sampled every "
                 f"{PSS_INTERVAL * 1000:.0f} ms while the messages were in flight, "
                 f"{mib('peak_pss_kib_16x50m_total'):.1f} MiB (pages shared between the "
                 f"parent and its forked workers counted once, split between them); "
                 f"peak RSS (VmHWM) of its largest process "
                 f"{mib('peak_rss_kib_16x50m'):.1f} MiB, and the sum of every process's "
                 f"VmHWM {mib('peak_rss_kib_16x50m_total'):.1f} MiB (shared pages counted "
                 f"once per process, and each process's own peak whenever it was).")
    return "\n".join(lines) + "\n"
