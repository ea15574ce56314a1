"""The two systems under test, set up identically for one case.

For each case, `prepare(base, case, inst)` writes mailslot's settings and Dovecot's
configuration under base/<case>/{mailslot,dovecot}, the same Sieve script for both,
and the same pre-filled mailbox, and returns the argv of each side plus the
reference processes timed beside them on the 2 KB Maildir case ("python floor":
start python3 -I -S and do a durable write, nothing else; "python start": the
interpreter alone). Both LDAs run without -d (no userdb lookup), with
mail_fsync=optimized and their logs in files.
"""

import os
import subprocess

from cases import make_message, make_sieve_script

DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
SIDES = ("mailslot", "dovecot")
FAST_CASES = ("maildir-2k", "mbox-2k", "sieve-200")
FAST_SIDE = "mailslot fast path"
FALLBACK_SIDE = "mailslot front, no server"
FAST_DIR = "fastpath"           # base/<case>/fastpath: the fast path's own mailbox
AGAINST_DIR = "against"         # base/<case>/against: an older mailslot's own mailbox

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


def _location(root, side, fmt):
    if fmt == "mbox":
        return f"mbox:{root}/{side}/home/mail:INBOX={root}/{side}/home/mail/inbox"
    return f"maildir:{root}/{side}/home/Maildir"


def _prefill(root, side, case):
    """Put case.prefill messages into the side's INBOX, as a mailbox of old mail."""
    home = os.path.join(root, side, "home")
    if case.fmt == "mbox":
        os.makedirs(os.path.join(home, "mail"), exist_ok=True)
        with open(os.path.join(home, "mail", "inbox"), "wb") as f:
            for i in range(case.prefill):
                f.write(b"From alice@example.org Sun Nov 22 10:00:00 2026\n")
                f.write(make_message(case.size, serial=i).replace(b"\nFrom ", b"\n>From "))
                f.write(b"\n")
        return
    maildir = os.path.join(home, "Maildir")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    for i in range(case.prefill):
        data = make_message(case.size, serial=i)
        name = f"{1700000000 + i}.M{i}P1.bench,S={len(data)}:2,S"
        with open(os.path.join(maildir, "cur", name), "wb") as f:
            f.write(data)


def against_side(label):
    return f"mailslot @{label}"


def prepare(base, case, inst, against=None):
    """Write both sides' configuration for case; return {side: argv}.

    against, if given, is (label, engine path) of another mailslot installation
    (run_bench.py --against REV): a reference side with its own mailbox and the
    same settings, so that two versions of the engine alternate run by run."""
    root = os.path.join(base, case.name)
    for side in SIDES:
        os.makedirs(os.path.join(root, side, "home"), exist_ok=True)
    fast = case.name in FAST_CASES
    ms_sides = ("mailslot", FAST_DIR) if fast else ("mailslot",)
    if against:
        ms_sides += (AGAINST_DIR,)
    for side in ms_sides[1:]:
        os.makedirs(os.path.join(root, side, "home"), exist_ok=True)
    sieve_dc = ""
    script = make_sieve_script(case.sieve_rules) if case.sieve_rules else None
    if script:
        for side in SIDES + ms_sides[1:]:
            with open(os.path.join(root, side, "home", "rules.sieve"), "w") as f:
                f.write(script)
        sieve_dc = ("protocol lda {\n  mail_plugins = sieve\n}\n"
                    f"plugin {{\n  sieve = {root}/dovecot/home/rules.sieve\n}}\n")
    for side in ms_sides:
        sieve_ms = (f"sieve: {root}/{side}/home/rules.sieve\n" if script
                    else f"sieve: {root}/{side}/home/none.sieve\n")
        with open(os.path.join(root, side, "mailslot.yaml"), "w") as f:
            f.write(f"mail_location: {_location(root, side, case.fmt)}\n"
                    f"log_path: {root}/{side}/mailslot.log\nmail_fsync: optimized\n"
                    "first_valid_uid: 1\n" + sieve_ms)
    with open(os.path.join(root, "dovecot", "dovecot.conf"), "w") as f:
        f.write(f"base_dir = {root}/dovecot/run\nstate_dir = {root}/dovecot/state\n"
                f"log_path = {root}/dovecot/dovecot.log\nssl = no\nprotocols =\n"
                f"mail_location = {_location(root, 'dovecot', case.fmt)}\n"
                "mail_fsync = optimized\nfirst_valid_uid = 1\n" + sieve_dc)
    for side in SIDES + ms_sides[1:]:
        if case.prefill:
            _prefill(root, side, case)
        subprocess.run(["chmod", "-R", "a+rX", os.path.join(root, side)], check=True)
    argv = {
        "mailslot": [os.path.join(inst, "usr/lib/mailslot/mailslot-lda"), "-c",
                     os.path.join(root, "mailslot", "mailslot.yaml"), "-f", "a@example.org"],
        "dovecot": [DOVECOT_LDA, "-c", os.path.join(root, "dovecot", "dovecot.conf"),
                    "-f", "a@example.org"],
    }
    if case.name == "maildir-2k":
        argv["python floor"] = ["/usr/bin/python3", "-I", "-S", "-c", FLOOR_SCRIPT,
                                os.path.join(root, "mailslot", "floor")]
        argv["python start"] = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
    if against:
        label, engine = against
        argv[against_side(label)] = [engine, "-c", os.path.join(root, AGAINST_DIR,
                                                               "mailslot.yaml"),
                                     "-f", "a@example.org"]
    if fast:
        front = fast_path_front(base)
        argv[FAST_SIDE] = [front, "-c", os.path.join(root, FAST_DIR, "mailslot.yaml"),
                           "-f", "a@example.org"]
        if case.name == "maildir-2k":
            # The same front built to look for a socket nobody serves.
            argv[FALLBACK_SIDE] = [fast_path_front(base, serving=False)] + argv[FAST_SIDE][1:]
    return argv


def fast_path_front(base, serving=True):
    name = "serving" if serving else "unserved"
    return os.path.join(base, "front", name, "mailslot-lda-front")


def fast_path_socket_root(base, serving=True):
    return os.path.join(base, "handoff" if serving else "handoff-none")


def fast_path_build(base, inst, repo):
    """Build the two fronts of this run: one whose socket directory the server
    will use, one whose directory stays empty."""
    engine = os.path.join(inst, "usr/lib/mailslot/mailslot-lda")
    for serving in (True, False):
        out = os.path.dirname(fast_path_front(base, serving))
        subprocess.run(["make", "-s", "-C", os.path.join(repo, "helper_c"), f"OUT={out}",
                        f"HANDOFF_DIR={fast_path_socket_root(base, serving)}",
                        f"ENGINE_PATH={engine}", os.path.join(out, "mailslot-lda-front")],
                       check=True, stdout=subprocess.DEVNULL)
        os.makedirs(fast_path_socket_root(base, serving), mode=0o755, exist_ok=True)


def case_dirs(base, case, against=False):
    """The directories the timing user must own for case."""
    sides = SIDES + ((FAST_DIR,) if case.name in FAST_CASES else ())
    sides += (AGAINST_DIR,) if against else ()
    return [os.path.join(base, case.name, side) for side in sides]
