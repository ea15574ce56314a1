"""Side-by-side benchmark: mailslot-lda against Dovecot's dovecot-lda, same machine.

    make bench                      # or: .venv/bin/python bench/run_bench.py [--runs N]

Installs mailslot as a package would (make install into a temp DESTDIR), then for
each case delivers the same message with each LDA, interleaving the runs so that
both see the same machine load, as the same unprivileged user (created as
"mslt-bench" when run as root), both with mail_fsync=optimized, both without -d
(no userdb lookup). Reports the median wall time of each and the ratio
mailslot / dovecot (target: <= 1.0), as a Markdown table for docs/benchmarks.md.

Cases:
  maildir-2k     a 2 KB message into Maildir. Also timed: the "python floor", the
                 least a Python LDA can do (start python3 -I -S, write, fsync,
                 rename, fsync the directory), to show what the engine itself costs,
                 and "python start" (python3 -I -S -c pass: the interpreter alone).
  sieve-200      the same, with a 200-rule personal Sieve script that ends in the
                 implicit keep, on both sides (Pigeonhole's sieve plugin for
                 dovecot-lda); both compile it once and run from their caches.
  mbox-2k        a 2 KB message appended to an mbox INBOX (mail_location
  mbox-10m       mbox:<root>, INBOX <root>/inbox on both sides), and a 10 MB one
                 (a tenth of the runs); each side's mbox grows run after run.

Timed from here (fork + exec + wait): the same overhead for every side.
"""

import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
BENCH_USER = "mslt-bench"
DEFAULT_RUNS = 200
CASES = ("maildir-2k", "sieve-200", "mbox-2k", "mbox-10m")
# Message size and share of the runs per case (default: 2 KB, all of them).
CASE_SIZES = {"mbox-10m": 10 * 1024 * 1024}
CASE_RUN_DIVISOR = {"mbox-10m": 10}

# The floor: start python3 -I -S, write the message to tmp/, fsync, rename into
# new/, fsync the directory. No settings, no user, no index, no log.
FLOOR_SCRIPT = """
import os, sys, time
d = sys.argv[1]
for sub in ("tmp", "new", "cur"):
    os.makedirs(d + "/" + sub, exist_ok=True)
data = sys.stdin.buffer.read()
name = "%d.M%dP%d.floor" % (time.time(), time.time_ns() // 1000 % 1000000, os.getpid())
fd = os.open(d + "/tmp/" + name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, data); os.fsync(fd); os.close(fd)
os.rename(d + "/tmp/" + name, d + "/new/" + name + ",S=%d" % len(data))
dfd = os.open(d + "/new", os.O_RDONLY); os.fsync(dfd); os.close(dfd)
"""


def make_message(size=2048):
    head = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
            b"Subject: benchmark\nMessage-ID: <bench@example.org>\n"
            b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n\n")
    line = b"The quick brown fox jumps over the lazy dog, again and again.\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 1] + b"\n"


def make_sieve_script(rules=200):
    """A realistic filter list that does not match the benchmark message."""
    lines = ['require ["fileinto", "envelope", "imap4flags"];']
    for i in range(rules):
        kind = i % 4
        if kind == 0:
            lines.append(f'if header :contains "subject" "keyword-{i}" '
                         f'{{ fileinto "Folder{i}"; stop; }}')
        elif kind == 1:
            lines.append(f'if address :is "from" "sender-{i}@example.com" '
                         f'{{ fileinto "Folder{i}"; stop; }}')
        elif kind == 2:
            lines.append(f'if header :matches "list-id" "*list-{i}.example.net*" '
                         f'{{ fileinto "Lists{i}"; stop; }}')
        else:
            lines.append(f'if envelope :is "from" "bounce-{i}@example.org" '
                         f'{{ addflag "\\\\Flagged"; }}')
    return "\n".join(lines) + "\n"


def setup(base):
    """Install mailslot and write every case's configuration under base."""
    dest = os.path.join(base, "inst")
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    for case in CASES:
        root = os.path.join(base, case)
        for side in ("mailslot", "dovecot"):
            os.makedirs(os.path.join(root, side, "home"))
        sieve_ms = sieve_dc = ""
        if case == "sieve-200":
            script = make_sieve_script()
            for side in ("mailslot", "dovecot"):
                with open(os.path.join(root, side, "home", "rules.sieve"), "w") as f:
                    f.write(script)
            sieve_ms = f"sieve: {root}/mailslot/home/rules.sieve\n"
            sieve_dc = ("protocol lda {\n  mail_plugins = sieve\n}\n"
                        f"plugin {{\n  sieve = {root}/dovecot/home/rules.sieve\n}}\n")
        else:
            sieve_ms = f"sieve: {root}/mailslot/home/none.sieve\n"
        location = {side: (f"mbox:{root}/{side}/home/mail" if case.startswith("mbox")
                           else f"maildir:{root}/{side}/home/Maildir")
                    for side in ("mailslot", "dovecot")}
        with open(os.path.join(root, "mailslot", "mailslot.yaml"), "w") as f:
            f.write(f"mail_location: {location['mailslot']}\n"
                    f"log_path: {root}/mailslot/mailslot.log\nmail_fsync: optimized\n"
                    "first_valid_uid: 1\n" + sieve_ms)
        with open(os.path.join(root, "dovecot", "dovecot.conf"), "w") as f:
            f.write(f"base_dir = {root}/dovecot/run\nstate_dir = {root}/dovecot/state\n"
                    f"log_path = {root}/dovecot/dovecot.log\nssl = no\nprotocols =\n"
                    f"mail_location = {location['dovecot']}\n"
                    "mail_fsync = optimized\nfirst_valid_uid = 1\n" + sieve_dc)
        for side in ("mailslot", "dovecot"):   # not inst/: the relay keeps its 4750
            subprocess.run(["chmod", "-R", "a+rX", os.path.join(root, side)], check=True)


def argvs(base, case):
    root = os.path.join(base, case)
    mailslot = [os.path.join(base, "inst/usr/lib/mailslot/mailslot-lda"), "-c",
                os.path.join(root, "mailslot", "mailslot.yaml"), "-f", "a@example.org"]
    dovecot = [DOVECOT_LDA, "-c", os.path.join(root, "dovecot", "dovecot.conf"),
               "-f", "a@example.org"]
    return mailslot, dovecot


def time_one(argv, message, env):
    with tempfile.TemporaryFile() as f:
        f.write(message)
        f.seek(0)
        start = time.perf_counter()
        proc = subprocess.run(argv, stdin=f, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def bench(base, runs):
    user = pwd.getpwuid(os.getuid())
    env = {"PATH": "/usr/bin:/bin", "USER": user.pw_name, "LOGNAME": user.pw_name,
           "HOME": base}
    print("| case | mailslot-lda (ms) | dovecot-lda (ms) | ratio | python floor (ms) "
          "| floor ratio | python start (ms) | start ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        message = make_message(CASE_SIZES.get(case, 2048))
        case_runs = max(5, runs // CASE_RUN_DIVISOR.get(case, 1))
        mailslot, dovecot = argvs(base, case)
        sides = {"mailslot": mailslot, "dovecot": dovecot}
        if case == "maildir-2k":
            sides["floor"] = ["/usr/bin/python3", "-I", "-S", "-c", FLOOR_SCRIPT,
                              os.path.join(base, case, "mailslot", "floor")]
            sides["start"] = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
        for _ in range(5):          # warm caches; Sieve compiles its cache here
            for argv in sides.values():
                time_one(argv, message, env)
        times = {name: [] for name in sides}
        for _ in range(case_runs):  # interleaved: every side sees the same load
            for name, argv in sides.items():
                times[name].append(time_one(argv, message, env))
        ms, dc = (statistics.median(times[k]) * 1000 for k in ("mailslot", "dovecot"))
        floor = " | ".join(f"{statistics.median(times[k]) * 1000:.2f} | "
                           f"{statistics.median(times[k]) * 1000 / dc:.2f}"
                           if k in times else "- | -" for k in ("floor", "start"))
        print(f"| {case}, median of {case_runs} | {ms:.2f} | {dc:.2f} | **{ms / dc:.2f}** "
              f"| {floor} |", flush=True)
    return 0


def main():
    runs = DEFAULT_RUNS
    if "--runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1])
    if "--base" in sys.argv:     # the timing half, already running as the bench user
        return bench(sys.argv[sys.argv.index("--base") + 1], runs)
    if not os.path.exists(DOVECOT_LDA):
        sys.exit("bench: dovecot-lda not found (apt-get install dovecot-core)")
    base = tempfile.mkdtemp(prefix="mailslot-bench-")
    os.chmod(base, 0o755)
    try:
        setup(base)
        if os.geteuid() != 0:
            return bench(base, runs)
        # Neither LDA delivers as root: time them as an ordinary user.
        try:
            entry = pwd.getpwnam(BENCH_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            BENCH_USER], check=True)
            entry = pwd.getpwnam(BENCH_USER)
        for case in CASES:
            for side in ("mailslot", "dovecot"):
                subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}",
                                os.path.join(base, case, side)], check=True)
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", "--", sys.executable, os.path.abspath(__file__),
                "--runs", str(runs), "--base", base]
        return subprocess.run(argv, env={"PATH": "/usr/bin:/bin"}).returncode
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
