"""Resource faults (issue 21, build 2): each one a 75 naming its cause, the mailbox as
it was before.

    python3 -m tests.reliability.faults [NAME ...]      # a JSON line per fault

Every fault is a scenario run as root in a private mount namespace (unshare --mount,
so tmpfs and bind mounts vanish with it): a first message is delivered whole, the
mailbox is photographed (every file under new/, cur/ and tmp/ and the mbox, with
its bytes' SHA-256), the fault is set up, a second message is piped into the engine
(Debian's python3 -I -S, as a system user through setpriv), and the mailbox is
photographed again. Each FAULTS entry says what the engine must answer: exit 75
and a reason containing the given words, and both photographs equal (nothing
partial left, not even in tmp/).
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

from tests.support import REPO, ensure_user, remove_user, world_tempdir

PYSIDE = os.path.join(REPO, "pyside")
ENGINE = ("import sys; sys.path.insert(0, %r)\n"
          "from mailslot.cli import main\nsys.exit(main())\n" % PYSIDE)
SMALL = b"From: a@example.org\nSubject: first\nMessage-ID: <f@example.org>\n\nfirst\n"
BIG = b"From: a@example.org\nSubject: second\nMessage-ID: <s@example.org>\n\n"
BIG_SIZE = 512 * 1024           # the second message's body (made in the scenario)

# The program run inside the namespace (as root): the steps, then the engine.
SCENARIO = r"""
import hashlib, json, os, resource, subprocess, sys
plan = json.loads(sys.argv[1])
home = plan["home"]

def shell(cmd):
    subprocess.run(cmd, shell=True, check=True, env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                                                     "HOME": home})

def photo():
    out = {}
    for root, dirs, files in os.walk(home):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, home)
            if rel.startswith(tuple(plan["ignore"])):
                continue
            with open(path, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out

def engine(data, limits):
    def pre():
        for name, value in limits.items():
            resource.setrlimit(getattr(resource, name), (value, value))
    argv = ["setpriv", f"--reuid={plan['uid']}", f"--regid={plan['gid']}", "--init-groups",
            "--", "/usr/bin/python3", "-I", "-S", "-c", plan["engine"], "-c", plan["conf"]]
    argv += plan["args"]
    proc = subprocess.run(argv, input=data, capture_output=True, preexec_fn=pre,
                          env={"PATH": "/usr/bin:/bin", "HOME": home, "USER": plan["user"]},
                          cwd="/", timeout=120)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")

for cmd in plan["setup"]:
    shell(cmd)
code, err = engine(plan["small"].encode("latin-1"), {})
assert code == 0, err
before = photo()
for cmd in plan["fault"]:
    shell(cmd)
big = plan["big"].encode("latin-1") + b"0123456789abcdef" * (plan["big_size"] // 16)
code, err = engine(big, plan["limits"])
after = photo()
print(json.dumps({"code": code, "stderr": err, "before": before, "after": after}))
"""


def _userdb_server(path, behaviour):
    """A unix-socket 'Dovecot auth' that hangs or answers garbage; returns a stopper."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(8)
    stop = threading.Event()
    held = []

    def loop():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            held.append(conn)
            if behaviour == "garbage":
                conn.sendall(b"\x00\xffHELLO there\tgarbage\n" * 3)
            # "hang": accept, read nothing, answer nothing
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def close():
        stop.set()
        thread.join()
        for c in held:
            c.close()
        srv.close()
    return close


# name: (format, setup (root shell, before the first message), fault (root shell,
#        after it), rlimits for the engine, settings, words the reason must hold)
FAULTS = {
    "enospc": ("maildir", ["mount -t tmpfs -o size=300k,mode=0700 tmpfs $HOME",
                           "chown {uid}:{gid} $HOME"], [], {}, {},
               ["No space left on device", "Maildir"]),
    "efbig": ("maildir", [], [], {"RLIMIT_FSIZE": 100_000}, {},
              ["RLIMIT_FSIZE", "EFBIG"]),
    "read-only": ("maildir", [], ["mount --bind $HOME/Maildir $HOME/Maildir",
                                  "mount -o remount,ro,bind $HOME/Maildir"], {}, {},
                  ["Read-only file system", "Maildir"]),
    "inodes": ("maildir", ["mount -t tmpfs -o size=20m,nr_inodes=40,mode=0700 tmpfs $HOME",
                           "chown {uid}:{gid} $HOME"],
               ["mkdir $HOME/fill && i=0; while touch $HOME/fill/$i 2>/dev/null; "
                "do i=$((i+1)); done"], {}, {},
               ["No space left on device", "Maildir"]),
    "mbox-enospc": ("mbox", ["mount -t tmpfs -o size=300k,mode=0700 tmpfs $HOME",
                             "chown {uid}:{gid} $HOME"], [], {}, {},
                    ["No space left on device", "inbox"]),
    "mbox-efbig": ("mbox", [], [], {"RLIMIT_FSIZE": 100_000}, {},
                   ["RLIMIT_FSIZE", "EFBIG"]),
    "mbox-read-only": ("mbox", [], ["mount --bind $HOME/mail $HOME/mail",
                                    "mount -o remount,ro,bind $HOME/mail"], {}, {},
                       ["Read-only file system", "mail"]),
    "mbox-lock-held": ("mbox", [], ["setsid sleep 600 </dev/null >/dev/null 2>&1 & "
                                    "echo \"$!:$(uname -n)\" > $HOME/mail/inbox.lock"],
                       {}, {"mbox_lock_timeout": "3s"},
                       ["Timeout while waiting for lock", "inbox"]),
    "userdb-hangs": ("maildir", [], [], {}, {"userdb_timeout": "2s", "userdb": "hang"},
                     ["no answer within 2"]),
    "userdb-garbage": ("maildir", [], [], {}, {"userdb": "garbage"}, ["userdb"]),
}
# Every open-files limit from what the interpreter itself needs upwards.
for _n in (4, 5, 6, 7, 8, 10, 12, 16):
    FAULTS[f"nofile-{_n}"] = ("maildir", [], [], {"RLIMIT_NOFILE": _n}, {},
                              ["Too many open files"])


class Scene:
    """A user, a home and a config for one fault."""

    def __init__(self, name):
        self.name = name
        fmt, self.setup, self.fault, self.limits, self.settings, self.words = FAULTS[name]
        self.fmt = fmt
        self.token = os.urandom(3).hex()
        self.user = f"mslt-f{self.token}"
        self.base = world_tempdir("mailslot-fault-")
        self.home = os.path.join(self.base, "home")
        self.entry = ensure_user(self.user, self.home)
        self.conf = os.path.join(self.base, "mailslot.yaml")
        self.stoppers = []

    def config(self):
        loc = "maildir:~/Maildir" if self.fmt == "maildir" else \
            "mbox:~/mail:INBOX=~/mail/inbox"
        lines = [f"mail_location: {loc}", f"log_path: {self.base}/engine.log",
                 "hostname: fault.example.org", "first_valid_uid: 100"]
        for key, value in self.settings.items():
            if key == "userdb":
                sock = os.path.join(self.base, "auth-userdb")
                self.stoppers.append(_userdb_server(sock, value))
                lines += ["userdb:", "  - driver: dovecot", f"    args: {sock}"]
            else:
                lines.append(f"{key}: {value}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o644)
        open(f"{self.base}/engine.log", "a").close()
        os.chown(f"{self.base}/engine.log", self.entry.pw_uid, self.entry.pw_gid)

    def run(self):
        self.config()
        fmt = {"uid": self.entry.pw_uid, "gid": self.entry.pw_gid}
        userdb = "userdb" in self.settings
        plan = {"home": self.home, "uid": self.entry.pw_uid, "gid": self.entry.pw_gid,
                "user": self.user, "engine": ENGINE, "conf": self.conf,
                "setup": [c.format(**fmt) for c in self.setup],
                "fault": [c.format(**fmt) for c in self.fault],
                "limits": self.limits, "small": SMALL.decode("latin-1"),
                "big": BIG.decode("latin-1"), "big_size": BIG_SIZE,
                # The mbox journal is mailslot's own bookkeeping, no mail.
                "ignore": ["fill/", "mail/inbox.lock", "mail/.imap/", ".mailslot"],
                "args": ["-d", self.user] if userdb else []}
        if userdb:
            # The first message must get through: the faulty userdb comes after it.
            plan["setup"] = []
        argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I",
                "-c", SCENARIO, json.dumps(plan)]
        if userdb:
            argv = [sys.executable, "-I", "-c", SCENARIO.replace(
                'code, err = engine(plan["small"]', 'code, err = 0, ""  # ').replace(
                "assert code == 0, err", "pass"), json.dumps(plan)]
        proc = subprocess.run(argv, capture_output=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"scenario {self.name} failed: {proc.stderr.decode()[-2000:]}")
        return json.loads(proc.stdout)

    def close(self):
        for stop in self.stoppers:
            stop()
        subprocess.run(["pkill", "-KILL", "-u", str(self.entry.pw_uid)], check=False)
        remove_user(self.user)
        shutil.rmtree(self.base, ignore_errors=True)


def verdict(name, result):
    """The problems with a fault's result ([] when the engine did the right thing)."""
    words = FAULTS[name][5]
    problems = []
    if name.startswith("nofile-"):
        # A limit below what the interpreter needs may stop it before it reads the
        # message: any exit but 0 is a failure the MTA retries, never a loss; what
        # counts is that no partial file is left and a 0 means it was saved.
        if result["code"] == 0:
            if len(result["after"]) <= len(result["before"]):
                problems.append("exit 0 but nothing saved")
            return problems
        if result["code"] != 75:
            problems.append(f"exit {result['code']}, not 75: {result['stderr'][-300:]}")
    elif result["code"] != 75:
        problems.append(f"exit {result['code']}, not 75: {result['stderr'][-300:]}")
    for word in words:
        if word not in result["stderr"]:
            problems.append(f"the reason does not say {word!r}: {result['stderr'][-300:]!r}")
    if result["before"] != result["after"]:
        changed = set(result["before"].items()) ^ set(result["after"].items())
        problems.append(f"the mailbox changed: {sorted(changed)[:4]}")
    if "Traceback" in result["stderr"]:
        problems.append("a traceback on stderr")
    # The MTA puts stderr in the bounce or the log: one line, the reason (a `.pth`
    # file's "Error processing line" came before it at 6 open files).
    if len(result["stderr"].splitlines()) != 1:
        problems.append(f"stderr is not one line: {result['stderr'][-500:]!r}")
    return problems


def run_fault(name):
    scene = Scene(name)
    try:
        return scene.run()
    finally:
        scene.close()


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or list(FAULTS)
    bad = 0
    for name in names:
        result = run_fault(name)
        problems = verdict(name, result)
        bad += bool(problems)
        print(json.dumps({"fault": name, "code": result["code"],
                          "reason": result["stderr"].strip().splitlines()[-1:],
                          "problems": problems}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
