"""Side-by-side benchmark: mailslot-lda against Dovecot's dovecot-lda, same machine.

    make bench                      # or: .venv/bin/python bench/run_bench.py [--runs N]

Installs mailslot as a package would (make install into a temp DESTDIR), then
delivers the same 2 KB message into a Maildir with each LDA, alternating one run of
each so that both see the same machine load, as the same unprivileged user (created
as "mslt-bench" when run as root), both with mail_fsync=optimized, both without -d
(no userdb lookup). Reports the median wall time of each and the ratio
mailslot / dovecot (target: <= 1.0), as a Markdown table for docs/benchmarks.md.

Timed from here (fork + exec + wait): the same overhead for both sides.
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


def make_message(size=2048):
    head = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
            b"Subject: benchmark\nMessage-ID: <bench@example.org>\n"
            b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n\n")
    line = b"The quick brown fox jumps over the lazy dog, again and again.\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 1] + b"\n"


def setup(base):
    """Install mailslot and write both configurations under base."""
    dest = os.path.join(base, "inst")
    subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    for side in ("mailslot", "dovecot"):
        os.makedirs(os.path.join(base, side, "home"))
    with open(os.path.join(base, "mailslot", "mailslot.yaml"), "w") as f:
        f.write(f"mail_location: maildir:{base}/mailslot/home/Maildir\n"
                f"log_path: {base}/mailslot/mailslot.log\nmail_fsync: optimized\n"
                "first_valid_uid: 1\n")
    with open(os.path.join(base, "dovecot", "dovecot.conf"), "w") as f:
        f.write(f"base_dir = {base}/dovecot/run\nstate_dir = {base}/dovecot/state\n"
                f"log_path = {base}/dovecot/dovecot.log\nssl = no\nprotocols =\n"
                f"mail_location = maildir:{base}/dovecot/home/Maildir\n"
                "mail_fsync = optimized\nfirst_valid_uid = 1\n")
    for side in ("mailslot", "dovecot"):      # not inst/: the relay keeps its 4750
        subprocess.run(["chmod", "-R", "a+rX", os.path.join(base, side)], check=True)


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


# The floor: the least a Python LDA can do -- start python3 -I -S, write the message
# to tmp/, fsync, rename into new/, fsync the directory. No settings, no user, no
# index, no log. What mailslot costs above this is the engine's own work.
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


def argvs(base):
    mailslot = [os.path.join(base, "inst/usr/lib/mailslot/mailslot-lda"), "-c",
                os.path.join(base, "mailslot", "mailslot.yaml"), "-f", "a@example.org"]
    dovecot = [DOVECOT_LDA, "-c", os.path.join(base, "dovecot", "dovecot.conf"),
               "-f", "a@example.org"]
    return mailslot, dovecot


def bench(base, runs):
    mailslot, dovecot = argvs(base)
    user = pwd.getpwuid(os.getuid())
    env = {"PATH": "/usr/bin:/bin", "USER": user.pw_name, "LOGNAME": user.pw_name,
           "HOME": base}
    message = make_message()
    for _ in range(5):        # warm the page cache for both
        time_one(mailslot, message, env)
        time_one(dovecot, message, env)
    floor = ["/usr/bin/python3", "-I", "-S", "-c", FLOOR_SCRIPT,
             os.path.join(base, "mailslot", "floor")]
    times = {"mailslot": [], "dovecot": [], "floor": []}
    for _ in range(runs):       # interleaved: all three see the same machine load
        times["mailslot"].append(time_one(mailslot, message, env))
        times["dovecot"].append(time_one(dovecot, message, env))
        times["floor"].append(time_one(floor, message, env))
    ms, dc, fl = (statistics.median(times[k]) * 1000
                  for k in ("mailslot", "dovecot", "floor"))
    print("| case | mailslot-lda (ms) | dovecot-lda (ms) | ratio | python floor (ms) "
          "| floor ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| Maildir, 2 KB, median of {runs} | {ms:.2f} | {dc:.2f} | **{ms / dc:.2f}** "
          f"| {fl:.2f} | {fl / dc:.2f} |")
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
        for side in ("mailslot", "dovecot"):
            subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}",
                            os.path.join(base, side)], check=True)
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", "--", sys.executable, os.path.abspath(__file__),
                "--runs", str(runs), "--base", base]
        return subprocess.run(argv, env={"PATH": "/usr/bin:/bin"}).returncode
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
