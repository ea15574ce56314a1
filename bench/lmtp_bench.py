"""LMTP throughput: mailslot-lmtpd against Dovecot's lmtp, same machine, same disk.

    .venv/bin/python bench/run_bench.py --lmtp [--quick]     (as root)

Both servers get the same 16 users (each connection delivers to its own user, one
recipient per message), the same 2 KB message, Maildir with fsync on (both sides'
mail_fsync=optimized: the file and its directory are fsynced before the 250), and a
log file. mailslot-lmtpd runs from the installed tree as the bench user (the
single-uid layout); Dovecot runs its own master with a private base_dir (as root, as
Dovecot is deployed), its lmtp service delivering as the same bench uid. The load
generator keeps `connections` LMTP connections busy for a fixed time, one transaction
after another on each (MAIL, RCPT, DATA pipelined as RFC 2920 allows; the content
after 354), and counts the 250s. Sides alternate run by run; the median run counts.
The physical limit (bench/measure.py: a durable create+write+fsync+rename+directory
fsync loop, one process) is measured in the same run on the same filesystem.

CPU: each side's CPU seconds (user + system, from /proc/PID/stat) per acknowledged
message over the same runs -- for Dovecot its master, the children it reaped and its
live children (lmtp, auth, ...). A shared machine distorts this far less than it
distorts messages per second.

Memory: mailslot-lmtpd's peak RSS (VmHWM) while 16 connections each send one 50 MB
message (spooled to a file past 1 MiB, so memory stays flat): the largest of its
processes, and their sum.

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

DOVECOT = "/usr/sbin/dovecot"
USERS = 16
START_TIMEOUT = 30


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


class _Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""
        self.reply()
        self.s.sendall(b"LHLO bench.client\r\n")
        self.reply()

    def reply(self):
        while True:
            while b"\r\n" not in self.buf:
                data = self.s.recv(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return line

    def deliver(self, user, content):
        self.s.sendall(b"MAIL FROM:<sender@bench.test>\r\nRCPT TO:<%s@bench.test>\r\n"
                       b"DATA\r\n" % user)
        for expect in (b"250", b"250", b"354"):
            line = self.reply()
            if not line.startswith(expect):
                raise RuntimeError(f"unexpected reply {line!r}")
        self.s.sendall(content)
        return self.reply().startswith(b"250 ")


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


def load(sock_path, connections, seconds, message, stats=None):
    """Messages per second acknowledged with 250 over `connections` connections
    (stats: a dict that gets "messages", the count)."""
    content = message.replace(b"\n", b"\r\n") + b".\r\n"
    counts = [0] * connections
    errors = []
    start_at = threading.Barrier(connections + 1)
    stop_at = [0.0]

    def worker(i):
        try:
            conn = _Conn(sock_path)
            start_at.wait()
            user = b"u%d" % (i % USERS)
            while time.perf_counter() < stop_at[0]:
                if conn.deliver(user, content):
                    counts[i] += 1
            conn.s.sendall(b"QUIT\r\n")
            conn.s.close()
        except Exception as exc:     # reported, the run is invalid
            errors.append(exc)
            try:
                start_at.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    try:
        start_at.wait()
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"bench: LMTP load failed: {errors[0]!r}")
    if stats is not None:
        stats["messages"] = sum(counts)
    return sum(counts) / (time.perf_counter() - began)


def peak_memory(paths, size=50 * 1024 * 1024, connections=16):
    """mailslot-lmtpd's VmHWM (KiB) after `connections` parallel size-byte messages:
    (its largest process's, the sum over its processes)."""
    proc = start(paths["mailslot_argv"], paths["mailslot_socket"],
                 os.path.join(paths["top"], "mailslot.out"))
    try:
        line = b"x" * 76 + b"\r\n"
        chunk = line * (1024 * 1024 // len(line))

        def one(i):
            conn = _Conn(paths["mailslot_socket"])
            conn.s.sendall(b"MAIL FROM:<s@bench.test>\r\nRCPT TO:<u%d@bench.test>\r\n"
                           b"DATA\r\n" % (i % USERS))
            for _ in range(3):
                conn.reply()
            conn.s.sendall(b"Subject: big\r\n\r\n")
            for _ in range(size // len(chunk)):
                conn.s.sendall(chunk)
            conn.s.sendall(b".\r\n")
            conn.reply()
            conn.s.close()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peaks = [_hwm_kib(p) for p in [proc.pid] + _children(proc.pid)]
        return max(peaks), sum(peaks)
    finally:
        stop(proc)


def _children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(name))
            except OSError:
                pass
    return out


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


def run(base, inst, uid, gid, quick=False, processes="auto"):
    """The whole LMTP comparison; returns a dict for the report."""
    case = casemod.LMTP_CASE
    paths = prepare(base, inst, uid, gid, processes)
    os.makedirs(paths["physical"])
    os.chown(paths["physical"], uid, gid)
    message = casemod.make_message(case.size)
    seconds = case.quick_seconds if quick else case.seconds
    runs = case.quick_runs if quick else case.full_runs
    servers = {
        "mailslot": start(paths["mailslot_argv"], paths["mailslot_socket"],
                          os.path.join(paths["top"], "mailslot.out")),
        "dovecot": start(paths["dovecot_argv"], paths["dovecot_socket"],
                         os.path.join(paths["top"], "dovecot.out")),
    }
    sockets = {"mailslot": paths["mailslot_socket"], "dovecot": paths["dovecot_socket"]}
    results = {"size": case.size, "seconds": seconds, "runs": runs, "connections": {},
               "lmtp_processes": processes,
               "workers": len(os.sched_getaffinity(0)) if processes == "auto"
               else int(processes)}
    try:
        for side in sockets:                     # warm-up: caches, processes, Maildirs
            load(sockets[side], 4, 1.0, message)
        for conns in case.connections:
            rates = {side: [] for side in sockets}
            cpu = {side: [] for side in sockets}
            for r in range(runs):
                order = ("mailslot", "dovecot") if r % 2 == 0 else ("dovecot", "mailslot")
                for side in order:
                    # Both are process trees (mailslot's parent and its workers).
                    pid, tree = servers[side].pid, True
                    stats = {}
                    before = cpu_seconds(pid, tree)
                    rates[side].append(load(sockets[side], conns, seconds, message, stats))
                    cpu[side].append((cpu_seconds(pid, tree) - before)
                                     / max(stats["messages"], 1) * 1000)
            med = {side: statistics.median(v) for side, v in rates.items()}
            cpu_med = {side: statistics.median(v) for side, v in cpu.items()}
            results["connections"][conns] = {"rates": rates, "median": med,
                                             "ratio": med["mailslot"] / med["dovecot"],
                                             "cpu_ms_per_msg": cpu, "cpu_median": cpu_med,
                                             "load_average": os.getloadavg()[0]}
            sys.stderr.write(f"lmtp {conns} connection(s): mailslot {med['mailslot']:.0f}/s "
                             f"({cpu_med['mailslot']:.2f} ms CPU/msg), dovecot "
                             f"{med['dovecot']:.0f}/s ({cpu_med['dovecot']:.2f} ms CPU/msg), "
                             f"load {os.getloadavg()[0]:.1f}\n")
    finally:
        for proc in servers.values():
            stop(proc)
    results["physical_per_s"] = physical(paths, 1.0 if quick else 5.0)
    results["peak_rss_kib_16x50m"], results["peak_rss_kib_16x50m_total"] = \
        peak_memory(paths, size=(5 if quick else 50) * 2**20)
    return results


def report(results):
    """Markdown lines for docs/benchmarks.md."""
    phys = results["physical_per_s"]
    lines = [f"mailslot-lmtpd with lmtp_processes: {results.get('lmtp_processes', 1)} "
             f"({results.get('workers', 1)} worker process(es)); Dovecot's lmtp with its "
             "defaults (a process per connection).", "",
             "| connections | mailslot-lmtpd msg/s | Dovecot lmtp msg/s | ratio | "
             "mailslot / physical limit | CPU ms/msg mailslot | CPU ms/msg Dovecot |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for conns, row in sorted(results["connections"].items(), key=lambda kv: int(kv[0])):
        med, cpu = row["median"], row.get("cpu_median", {})
        lines.append(f"| {conns} | {med['mailslot']:.0f} | {med['dovecot']:.0f} | "
                     f"{row['ratio']:.2f}x | {med['mailslot'] / phys:.0%} | "
                     f"{cpu.get('mailslot', 0):.2f} | {cpu.get('dovecot', 0):.2f} |")
    lines.append("")
    lines.append(f"Physical limit (one process, durable create loop): {phys:.0f}/s. "
                 f"Peak RSS of mailslot-lmtpd, 16 connections x 50 MB: "
                 f"{(results['peak_rss_kib_16x50m'] or 0) / 1024:.1f} MiB (its largest "
                 f"process; all its processes together "
                 f"{(results.get('peak_rss_kib_16x50m_total') or 0) / 1024:.1f} MiB).")
    return "\n".join(lines) + "\n"
