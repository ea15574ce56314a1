"""Crash harness (issue 21, build 1): SIGKILL the engine at random points, check all.

    python3 -m tests.reliability.crash --format maildir|mbox [--sieve] --trials N
                                       [--path pipe|fast] [--seed S]

One private system user (mslt-r<token>, removed at the end) with a home that a
private Debian Dovecot (tests/dovecot_env.py) also serves. Each trial pipes one
message into the engine (pyside's mailslot.cli, Debian's python3 -I -S, as that
user through setpriv) -- from a pipe or a regular file, 1 KB to 600 KB, now and
then 3 MB -- and sends SIGKILL after a random delay drawn from 0 to 1.3 times the
measured time of a whole delivery. A killed delivery is retried as an MTA would
(the same bytes, no kill) and must then exit 0; a delivery that ended before the
kill must have exited 0 too. Sometimes Dovecot (doveadm fetch, which syncs the
mailbox) runs between the kill and the retry, as an IMAP login would.

With --sieve the user's script files messages whose subject says "odd" into the
folder Odd and discards a message the `duplicate` test (RFC 7352, the Message-ID)
has seen before: a duplicate mark left by a killed delivery whose message was not
stored would make the retry discard it -- a lost message the checks catch.

After every trial: every acknowledged message (exit 0) is visible exactly once, in
the mailbox its subject picks, with the body its X-Digest header names (twice at
most when a kill came after the commit and the retry filed it again -- without
Sieve's duplicate test an LDA cannot know; counted as retry_copies); nothing
else is visible (no partial file in new/ or cur/, the mbox whole: tests/mbox's
strict reader); every dovecot-uidlist parses, its UIDs rise line by line and every
name in it is a file in new/ or cur/; maildirsize parses if there is one; the
duplicate database loads. Every tenth trial and at the end, doveadm fetches every
mailbox and must list exactly the messages we see, and Dovecot's log must stay
free of errors and warnings.

With --path fast the delivery goes through the fast path (issue 18): the C front
(mailslot-lda-front) hands it over a unix socket to a worker of mailslot-handoffd
running as the user (tests/reliability/fastrig.py builds and starts them as
tests/fastpath does). Each trial kills one of the three, chosen at random: the front
(the MTA's view: the worker is told by the hang-up and must file whole or
nothing), the worker delivering this message (found as the handoffd process that
holds its stdin; the front must then answer 75, never 0), or the server (in-flight
workers finish, the next connection finds a stale socket and the front falls back
to the installed engine; the server is started again before or after the retry).
Only the front's exit 0 counts as acknowledged; after a kill, the harness waits
until no worker holds the message's stdin before it checks, and the same checks
as above run after every trial.

Prints a summary (JSON): trials, kills that landed mid-delivery,
retries, Dovecot interleavings, messages acknowledged, messages lost (must be 0).
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

from tests.dovecot_env import DovecotEnv
from tests.mbox.mboxtest import check_structure
from tests.support import REPO, ensure_user, remove_user, world_tempdir

PYSIDE = os.path.join(REPO, "pyside")
ENGINE = ("import sys; sys.path.insert(0, %r)\n"
          "from mailslot.cli import main\nsys.exit(main())\n" % PYSIDE)
LOCATIONS = {"maildir": "maildir:~/Maildir",
             "mbox": "mbox:~/mail:INBOX=~/mail/inbox"}
SIEVE_SCRIPT = b"""require ["fileinto", "mailbox", "duplicate"];
if duplicate { discard; stop; }
if header :contains "subject" "odd" { fileinto :create "Odd"; }
"""
DIGEST = re.compile(rb"^X-Digest: ([0-9a-f]{64})$", re.M)
MSGID = re.compile(rb"^Message-ID: <([^>]+)>$", re.M | re.I)
# The mailboxes are checked whole after every trial: they start empty again after
# this many trials (and a doveadm check), so that a long run stays linear.
ROTATE_EVERY = 50
UIDLIST_LINE = re.compile(rb"^(\d+)(?: [^:]*)? :(.+)$")


class Failure(AssertionError):
    pass


def make_message(rng, token, n):
    size = rng.choice([1_000, 5_000, 40_000, 200_000, 600_000] * 4 + [3_000_000])
    line = (f"trial {n} " + "abcdefghij" * 7 + "\n").encode()
    body = line * max(1, size // len(line))
    odd = n % 3 == 0
    head = (f"From: crash@example.org\nTo: user@example.org\n"
            f"Subject: crash {n}{' odd' if odd else ''}\n"
            f"Message-ID: <c{n}.{token}@example.org>\n"
            f"X-Digest: {hashlib.sha256(body).hexdigest()}\n\n").encode()
    return f"c{n}.{token}@example.org", ("Odd" if odd else "INBOX"), head + body


class Rig:
    """The user, the home, the config, Dovecot; delivering and checking."""

    def __init__(self, fmt, sieve, rng, path="pipe"):
        self.fmt, self.sieve, self.rng, self.path = fmt, sieve, rng, path
        self.token = os.urandom(3).hex()
        self.name = f"mslt-r{self.token}"
        self.entry = ensure_user(self.name, "/nonexistent-" + self.token)
        self.dc = DovecotEnv.create(mail_location=LOCATIONS[fmt], separator="/",
                                    uid=self.entry.pw_uid, gid=self.entry.pw_gid,
                                    user=self.name)
        subprocess.run(["usermod", "-d", self.dc.home, self.name], check=True)
        self.home = self.dc.home
        self.confdir = world_tempdir("mailslot-crash-")
        self.conf = os.path.join(self.confdir, "mailslot.yaml")
        self.log = os.path.join(self.home, "mailslot.log")
        with open(self.conf, "w") as f:
            f.write(f"mail_location: {LOCATIONS[fmt]}\nlog_path: {self.log}\n"
                    f"hostname: {os.uname().nodename}\nfirst_valid_uid: 100\n")
        os.chmod(self.conf, 0o644)
        if sieve:
            script = os.path.join(self.home, ".dovecot.sieve")
            with open(script, "wb") as f:
                f.write(SIEVE_SCRIPT)
            os.chown(script, self.entry.pw_uid, self.entry.pw_gid)
        self.spool = os.path.join(self.confdir, "msg")
        self.acked = {}             # message id -> (mailbox, digest)
        self.tried = {}             # every message id delivered or attempted
        self.attempts = {}          # message id -> deliveries (2 after a kill)
        self.stats = {"trials": 0, "killed_mid_delivery": 0, "finished_before_kill": 0,
                      "retries": 0, "dovecot_between": 0, "doveadm_checks": 0,
                      "acknowledged": 0, "retry_copies": 0, "rotations": 0, "lost": 0,
                      "duplicated": 0, "partial_visible": 0}
        self.fast = None
        self.trial_no = 0
        if self.path == "fast":
            from tests.reliability.fastrig import FastPath
            try:
                self.fast = FastPath(self.entry)
            except BaseException:
                self.close()
                raise
            self.stats.update(killed_front=0, killed_worker=0, killed_server=0,
                              worker_not_found=0, front_75_after_kill=0,
                              acknowledged_after_kill=0, server_restarts=0)

    def close(self):
        if getattr(self, "fast", None) is not None:
            self.fast.close()
            self.fast = None
        self.dc.cleanup()
        shutil.rmtree(self.confdir, ignore_errors=True)
        remove_user(self.name)

    # -- delivering ------------------------------------------------------------------

    def _argv(self):
        engine = self.fast.argv(self.conf) if self.fast else \
            ["/usr/bin/python3", "-I", "-S", "-c", ENGINE, "-c", self.conf]
        return ["setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
                "--init-groups", "--"] + engine

    def start(self, data, from_file):
        env = {"PATH": "/usr/bin:/bin", "USER": self.name, "HOME": self.home,
               "LOGNAME": self.name}
        if from_file:
            # A new file each time: the fast path finds a worker by its stdin.
            self.trial_no += 1
            spool = f"{self.spool}-{self.trial_no}"
            with open(spool, "wb") as f:
                f.write(data)
            stdin = open(spool, "rb")
            os.unlink(spool)
            proc = subprocess.Popen(self._argv(), stdin=stdin, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=env, cwd="/")
            st = os.fstat(stdin.fileno())
            proc.stdin_ident = (st.st_dev, st.st_ino)
            stdin.close()
            return proc
        proc = subprocess.Popen(self._argv(), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd="/")
        st = os.fstat(proc.stdin.fileno())
        proc.stdin_ident = (st.st_dev, st.st_ino)
        # Written by a thread: a big message fills the pipe before the engine reads.
        import threading

        def feed():
            try:
                proc.stdin.write(data)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        proc.feeder = threading.Thread(target=feed, daemon=True)
        proc.feeder.start()
        return proc

    def deliver(self, data, from_file=True):
        proc = self.start(data, from_file)
        err = _finish(proc)
        if self.fast:
            self.fast.settle(proc.stdin_ident)
        if proc.returncode != 0:
            raise Failure(f"delivery exited {proc.returncode}: {err.decode(errors='replace')}")

    def timed(self, data):
        start = time.monotonic()
        self.deliver(data)
        return time.monotonic() - start

    # -- one trial ---------------------------------------------------------------------

    def trial(self, n, typical):
        msgid, box, data = make_message(self.rng, self.token, n)
        box = box if self.sieve else "INBOX"
        self.tried[msgid] = box
        self.stats["trials"] += 1
        proc = self.start(data, from_file=self.rng.random() < 0.5)
        # The fast path's worker is warm after the first hand-offs: its deliveries
        # are quicker than the warm-up's median, so its kills are drawn earlier.
        reach = 0.7 if self.fast else 1.3
        delay = self.rng.uniform(0, reach * typical * max(1, len(data) / 200_000))
        time.sleep(delay)
        if self.fast:
            killed = self._fast_kill(proc)
        else:
            killed = proc.poll() is None
            if killed:
                proc.kill()
        err = _finish(proc)
        if self.fast:
            self.fast.settle(proc.stdin_ident)
            killed = self._fast_outcome(killed, proc, err)
        # Not acknowledged: the killed process's -9, or the front's 75 after its
        # worker or the server was killed. Retried as the MTA would.
        if killed and (proc.returncode == -9 or (self.fast and proc.returncode == 75)):
            self.stats["killed_mid_delivery"] += 1
            if self.rng.random() < 0.25:
                self.stats["dovecot_between"] += 1
                self.doveadm_rows()     # Dovecot syncs the mailboxes first
            self.stats["retries"] += 1
            self.attempts[msgid] = 2
            restart_first = self.rng.random() < 0.5
            if self.fast and restart_first:
                self._restart_server()
            self.deliver(data, from_file=self.rng.random() < 0.5)
        elif proc.returncode != 0:
            raise Failure(f"trial {n}: exit {proc.returncode}: "
                          f"{err.decode(errors='replace')}")
        else:
            self.stats["finished_before_kill"] += 1
        if self.fast:
            self._restart_server()      # a killed server serves the next trial again
        digest = DIGEST.search(data).group(1).decode()
        self.acked[msgid] = (box, digest)
        self.stats["acknowledged"] += 1
        seen = self.check()
        if len(seen.get(msgid, ())) > 1:
            self.stats["retry_copies"] += 1
        if n % 10 == 0:
            self.check_dovecot()
        if n % ROTATE_EVERY == 0:
            self.rotate()

    def _fast_kill(self, proc):
        """Kill the front, the worker delivering this message, or the server;
        what was killed (None: the delivery had ended, or no worker held it)."""
        if proc.poll() is not None:
            return None
        target = self.rng.choices(["front", "worker", "server"], [2, 2, 1])[0]
        if target == "front":
            proc.kill()
        elif target == "worker":
            pids = [p for p in self.fast.holders(proc.stdin_ident)
                    if p != self.fast.server.pid]
            if not pids:
                self.stats["worker_not_found"] += 1
                return None
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        else:
            self.fast.kill_server()
        self.stats[f"killed_{target}"] += 1
        return target

    def _fast_outcome(self, killed, proc, err):
        """True when the delivery must be retried (the front killed, or its 75
        after a worker or the server was killed); 0 is an acknowledgement."""
        if killed is None:
            return False
        if killed == "front":
            return proc.returncode == -9
        if proc.returncode == 0:
            self.stats["acknowledged_after_kill"] += 1
            return False
        if proc.returncode == 75:
            self.stats["front_75_after_kill"] += 1
            return True
        raise Failure(f"the front exited {proc.returncode} after the {killed} was "
                      f"killed: {err.decode(errors='replace')}")

    def _restart_server(self):
        if not self.fast.server_alive():
            self.stats["server_restarts"] += 1
            self.fast.ensure_server()

    def rotate(self):
        """Start on empty mailboxes (the checks read every message each trial)."""
        for name in ("Maildir", "mail"):
            shutil.rmtree(os.path.join(self.home, name), ignore_errors=True)
        self.acked.clear()
        self.attempts.clear()
        self.stats["rotations"] += 1

    # -- checks ------------------------------------------------------------------------

    def visible(self):
        """{message id: [(mailbox, digest ok)]} of every message a reader can see."""
        seen = {}
        for box, raw in self._messages():
            head, _, body = raw.partition(b"\n\n")
            m, d = MSGID.search(head + b"\n"), DIGEST.search(head + b"\n")
            if not m or not d:
                self.stats["partial_visible"] += 1
                raise Failure(f"a message without its headers in {box}: {raw[:200]!r}")
            ok = hashlib.sha256(body).hexdigest() == d.group(1).decode()
            seen.setdefault(m.group(1).decode(), []).append((box, ok))
        return seen

    def _messages(self):
        if self.fmt == "maildir":
            root = os.path.join(self.home, "Maildir")
            for box, path in (("INBOX", root), ("Odd", os.path.join(root, ".Odd"))):
                for sub in ("new", "cur"):
                    d = os.path.join(path, sub)
                    for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
                        with open(os.path.join(d, name), "rb") as f:
                            yield box, f.read()
                check_uidlist(path)
                check_maildirsize(root)
        else:
            import mailbox
            for box, path in (("INBOX", os.path.join(self.home, "mail", "inbox")),
                              ("Odd", os.path.join(self.home, "mail", "Odd"))):
                if not os.path.exists(path):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                try:
                    check_structure(data)
                except AssertionError as exc:
                    self.stats["partial_visible"] += 1
                    raise Failure(f"{path} is not whole messages: {exc}") from None
                mb = mailbox.mbox(path, create=False)
                try:
                    for key in mb.keys():
                        raw = mb.get_bytes(key)
                        yield box, _unquote(_strip_dovecot(raw))
                finally:
                    mb.close()

    def check(self):
        seen = self.visible()
        for msgid, (box, _digest) in self.acked.items():
            copies = seen.get(msgid, [])
            if not copies:
                self.stats["lost"] += 1
                raise Failure(f"acknowledged message {msgid} is not there")
            # A delivery killed after its commit and before its exit left a whole
            # copy, and the MTA's retry files another: the one allowed duplicate.
            if len(copies) > self.attempts.get(msgid, 1):
                self.stats["duplicated"] += 1
                raise Failure(f"{msgid} is there {len(copies)} times: {copies}")
            if any(c != (box, True) for c in copies):
                raise Failure(f"{msgid}: {copies} (expected {box}, intact)")
        extra = set(seen) - set(self.acked)
        if extra:
            raise Failure(f"messages never acknowledged are visible: {sorted(extra)[:5]}")
        self._check_duplicates()
        return seen

    def _check_duplicates(self):
        """The duplicate database is whole: its header, then only well-formed
        entries, each line ended (a torn write would show as a bad or cut line).
        That it agrees with the mailbox is what the retries check: a mark without
        the stored message would make the retry discard it, a lost message."""
        dupes = os.path.join(self.home, ".mailslot.lda-dupes")
        if not os.path.exists(dupes):
            if self.sieve and self.stats["acknowledged"]:
                raise Failure("Sieve's duplicate test ran but there is no database")
            return
        with open(dupes, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        if lines[0] != b"mailslot-duplicates 1" or lines[-1] != b"":
            raise Failure(f"{dupes}: bad header or a cut last line: {data[:60]!r}")
        for line in lines[1:-1]:
            if not re.fullmatch(rb"[0-9a-f]{32} \d{1,12}", line):
                raise Failure(f"{dupes}: bad entry {line[:80]!r}")
        self.stats["duplicate_entries"] = len(lines) - 2

    def visible_pairs(self):
        pairs = {}
        for msgid, copies in self.visible().items():
            for box, _ok in copies:
                pairs.setdefault(box, []).append(msgid)
        return pairs.items()

    def doveadm_rows(self):
        rows = self.dc.doveadm_rows("fetch", "mailbox hdr.message-id", "ALL")
        return rows

    def check_dovecot(self):
        self.stats["doveadm_checks"] += 1
        rows = self.doveadm_rows()
        got = sorted((r["mailbox"], r["hdr.message-id"].strip("<>")) for r in rows)
        want = sorted((box, msgid) for box, msgids in self.visible_pairs()
                      for msgid in msgids)
        if got != want:
            raise Failure(f"doveadm lists {len(got)} messages, we have {len(want)}: "
                          f"{sorted(set(got) ^ set(want))[:5]}")
        problems = self.dc.log_problems()
        if problems:
            raise Failure(f"Dovecot's log: {problems[:3]}")


def check_uidlist(path, missing=None):
    """A Maildir's dovecot-uidlist parses, its UIDs rise, every name is a file
    (missing: a list that gets the names not in new/ or cur/ instead of a Failure,
    for a caller that judges them itself)."""
    uidlist = os.path.join(path, "dovecot-uidlist")
    if not os.path.exists(uidlist):
        return
    with open(uidlist, "rb") as f:
        lines = f.read().split(b"\n")
    header = lines[0].split(b" ")
    if header[0] != b"3" or not any(h.startswith(b"N") for h in header):
        raise Failure(f"{uidlist}: bad header {lines[0][:100]!r}")
    files = set()
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        files.update(n.split(":2,")[0] for n in os.listdir(d)) if os.path.isdir(d) else None
    last = 0
    if lines[-1] != b"":
        raise Failure(f"{uidlist}: last line not ended: {lines[-1][:100]!r}")
    for line in lines[1:-1]:
        m = UIDLIST_LINE.match(line)
        if not m:
            raise Failure(f"{uidlist}: bad line {line[:100]!r}")
        uid = int(m.group(1))
        # N is not rewritten on append (Dovecot's rule): only the order counts.
        if uid <= last:
            raise Failure(f"{uidlist}: UID {uid} after {last}")
        last = uid
        name = m.group(2).decode().split(":2,")[0]
        if name not in files and missing is not None:
            missing.append(name)
        elif name not in files:
            raise Failure(f"{uidlist}: lists {name}, which is not in new/ or cur/")

def check_maildirsize(root):
    """maildirsize, if there is one, parses."""
    path = os.path.join(root, "maildirsize")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for line in lines[1:]:
        if line and not re.fullmatch(rb"-?\d+ -?\d+", line):
            raise Failure(f"{path}: bad line {line!r}")


def _finish(proc):
    """Wait for proc; its stderr (stdin may be a pipe a feeder thread closed)."""
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait(timeout=300)
    feeder = getattr(proc, "feeder", None)
    if feeder is not None:
        feeder.join(timeout=60)
    return err


def _strip_dovecot(raw):
    """Dovecot's metadata fields out of an mbox message's header (a doveadm sync
    adds them; they are not part of what was delivered)."""
    head, sep, body = raw.partition(b"\n\n")
    keep = [line for line in head.split(b"\n") if not re.match(
        rb"(?i)^(x-uid|x-imapbase|x-imap|status|x-status|x-keywords|content-length):", line)
        and not line.startswith((b" ", b"\t")) or False]
    return b"\n".join(keep) + sep + body


def _unquote(raw):
    """mboxrd: one '>' off every '>+From ' line; Python's reader keeps the
    trailing blank line of the separator out already."""
    return re.sub(rb"(?m)^>(>*From )", rb"\1", raw)


# When fewer kills than asked landed inside a delivery (a load spike made the
# warm-up slow, so the drawn delays overshoot), more trials are run, each drawn
# from a shorter reach, up to this many times the trials asked for.
TOP_UP_FACTOR = 3
TOP_UP_SHRINK = 0.5


def run(fmt, sieve, trials, seed=None, path="pipe", min_mid_delivery=0):
    """trials SIGKILL trials; then more (at most TOP_UP_FACTOR x trials in all)
    while fewer than min_mid_delivery kills landed inside a delivery."""
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    rig = Rig(fmt, sieve, rng, path)
    try:
        samples = []
        for i in range(3):
            _msgid, _box, data = make_message(random.Random(i), "warm", -1 - i)
            samples.append(rig.timed(data.replace(b"warm@", f"warm{i}@".encode())))
        typical = statistics.median(samples)
        rig.acked.clear()
        rig.__dict__["warm"] = True
        # The warm-up messages are real: count them as acknowledged.
        for i in range(3):
            _msgid, box, data = make_message(random.Random(i), "warm", -1 - i)
            data = data.replace(b"warm@", f"warm{i}@".encode())
            m = MSGID.search(data).group(1).decode()
            rig.acked[m] = (box if sieve else "INBOX", DIGEST.search(data).group(1).decode())
        started = time.monotonic()
        for n in range(1, trials + 1):
            rig.trial(n, typical)
        extra = 0
        while rig.stats["killed_mid_delivery"] < min_mid_delivery and \
                trials + extra < TOP_UP_FACTOR * trials:
            if extra % 5 == 0:
                typical *= TOP_UP_SHRINK
            extra += 1
            rig.trial(trials + extra, typical)
        rig.check_dovecot()
        summary = dict(rig.stats, format=fmt, sieve=sieve, seed=seed, path=path,
                       typical_delivery_s=round(typical, 3),
                       seconds=round(time.monotonic() - started, 1))
        return summary
    finally:
        rig.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=sorted(LOCATIONS), default="maildir")
    parser.add_argument("--sieve", action="store_true")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--path", choices=["pipe", "fast"], default="pipe")
    args = parser.parse_args(argv)
    import signal
    # SIGTERM (make stopped, a timeout) unwinds: the user and the homes go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(json.dumps(run(args.format, args.sieve, args.trials, args.seed, args.path)))


if __name__ == "__main__":
    sys.exit(main())
