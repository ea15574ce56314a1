"""Power loss below Python: real deliveries on a FUSE disk that keeps only what was
made durable, cut at every operation (issue 21).

    python3 -m tests.reliability.fusecrash [--format maildir|mbox] [--sieve]
                                           [--points K] [--drop-sync N]
                                           [--path pipe|fast|lmtp]
                                           [--sends vacation|redirect|forward]

SIGKILL (crash.py) never loses the page cache, and powerloss.py sees the engine's
os calls only. Here the engine runs unchanged (Debian's python3 -I -S, as a test
user) on tests/reliability/fusedisk.py, a FUSE file system that applies POSIX's
strict rule -- a file's bytes are durable at its fsync/fdatasync, a name at its
directory's fsync -- as the kernel passes the engine's system calls to it. The
mailbox starts with one message delivered and read by Dovecot (its index files
too). A first run counts the operations of a delivery (T); then for every crash
point k = 1..T the same delivery runs on a fresh copy and the power goes after
its k-th operation (the engine gets SIGKILL inside that call, every later call
fails with EIO); the state the disk comes back with is written out as a real tree
and checked -- three states per point (fusedisk.py's modes): only what was
synced (strict), also every name as it was (names: directories written back
before file data), and also the file written last (tail: an append's pages written
back before anything else) --

  - Maildir: every file in new/ and cur/ is a whole message (its X-Digest matches
    its body), the old message is there once, the new one at most once;
    dovecot-uidlist parses, its UIDs rise and it names only files that exist;
    doveadm lists exactly those messages and Dovecot's log has no error.
  - mbox: the old mbox survives byte for byte at the front; after the next
    delivery (the one that heals a cut append) the mbox is whole messages only:
    the old one, the healing one, and the cut one only if it survived whole;
    doveadm agrees.
  - A dotlock the cut left on the disk (the names and tail states keep the lock's
    name without its content) is counted: Dovecot would wait it out (120 s)
    before reading, so doveadm reads only after the next delivery broke it; one
    in a mailbox the next delivery does not touch (the Sieve folder) is removed
    as Dovecot's stale timeout would, and counted by name.
  - After the run that was not cut (the crash "right after exit 0"), the new
    message is there, whole: acknowledged means durable.
  - With --sieve the user's script files the new message into a folder it
    creates (`fileinto :create "Odd"`: the folder's directories, or a new mbox
    file, made during the cut delivery; the next delivery goes there too, as
    the one that heals a cut mbox append must) and marks it in the duplicate
    database:
    the message counts only in that folder, and the duplicate database must
    parse (a torn database could make a retry discard the message).
  - Either way, a next delivery succeeds on the state the crash left (no lock
    left behind blocks it) and the checks hold again.

--path fast delivers the cut message through the fast path instead (the C front and
a worker of mailslot-handoffd, tests/reliability/fastrig.py): the cut kills the
worker, whose front must answer 75; the next delivery (after the "reboot") is the
pipe engine's.

--path lmtp delivers it through mailslot-lmtpd (lmtp_processes 1, started as the
user on the mounted disk, a passwd-file userdb, a unix socket): the cut kills the
daemon inside its system call; acknowledged means the client read the recipient's
250 after DATA, and a cut delivery must have none. The daemon's Maildir save runs
new/'s fsync in a flusher thread while it syncs the uidlist (storage/maildir.py
PARALLEL_SYNC, set by the server) through the group commit of storage/dirs.py
sync_directory: the daemon's wrapper logs the thread each directory sync runs in,
and the run that is not cut must show one in a flusher thread (with one client;
with several at once the daemon syncs in turn). The next delivery
is the pipe engine's.

--sends vacation|redirect|forward (pipe path): the user's script answers the cut
message with a vacation reply, forwards it with :copy, or only forwards it;
outgoing mail goes to a capturing sendmail_path, and after every cut state the
MTA's retry delivers the message again (tests/reliability/fusesend.py has the
rules: a reply at most once in all, a forward at most twice and never not at
all, the duplicate database read by the retry).

--drop-sync N makes the engine skip its N-th fsync()/fdatasync() of a file on the
FUSE disk (a monkeypatch in this harness's engine wrapper only; the product has
no such knob): the run must then find violations, which shows the model catches
a missing fsync. --points K checks only K crash points spread over 1..T (make
test); without it every point (make stress). Prints a JSON summary.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

from tests.dovecot_env import DovecotEnv
from tests.reliability import fuselmtp
from tests.mbox.mboxtest import check_structure
from tests.reliability.crash import (DIGEST, MSGID, Failure, _strip_dovecot, _unquote,
                                     check_uidlist)
from tests.support import REPO, empty_directory, ensure_user, remove_user, world_tempdir

FUSEDISK = os.path.join(REPO, "tests", "reliability", "fusedisk.py")
SYSTEM_PYTHON = "/usr/bin/python3"      # Debian's, with python3-llfuse
LOCATIONS = {"maildir": "maildir:~/Maildir",
             "mbox": "mbox:~/mail:INBOX=~/mail/inbox"}
# The engine's and the daemon's --drop-sync (formatted with drop and home).
DROP_SYNC = r"""
DROP = %(drop)d
if DROP:
    # Test build only: the DROP-th fsync/fdatasync of a file under HOME is skipped.
    home = os.path.realpath(%(home)r) + "/"
    count = [0]

    def skipping(real):
        def call(fd):
            try:
                path = os.readlink("/proc/self/fd/%%d" %% fd)
            except OSError:
                path = ""
            if path.startswith(home):
                count[0] += 1
                if count[0] == DROP:
                    return None
            return real(fd)
        return call
    os.fsync, os.fdatasync = skipping(os.fsync), skipping(os.fdatasync)
"""
ENGINE = r"""
import os, sys
sys.path.insert(0, %(pyside)r)
if %(boot)d:
    # After a cut the machine "reboots": locks left on the disk are from before.
    import mailslot.storage.locking
    mailslot.storage.locking.boot_time = lambda: %(boot)d
""" + DROP_SYNC + r"""
from mailslot.cli import main
sys.exit(main())
"""
MOUNT_TIMEOUT_S = 30
# mailslot-lmtpd for --path lmtp, as the user; it logs (to stderr, off the FUSE
# disk) the thread every directory sync of a Maildir save runs in.
DAEMON = fuselmtp.DAEMON_HEAD + DROP_SYNC + fuselmtp.DAEMON_BODY
DAEMON_START_S = 30
# Lock files that stay (an fcntl lock is taken on them), not dotlocks.
PERSISTENT_LOCKS = (".mailslot.lda-dupes.lock",)
# The delivery after a cut must not wait out a lock the cut left (120 s stale rules).
NEXT_DELIVERY_MAX_S = 20
# The states a cut may leave (fusedisk.py --mode): only what was synced; every name
# written back too; and the file being written written back too.
MODES = ("strict", "names", "tail")
SIEVE_SCRIPT = b"""require ["fileinto", "mailbox", "duplicate"];
if duplicate { discard; stop; }
if header :contains "subject" ["new-", "next-"] { fileinto :create "Odd"; }
"""
FOLDERS = {"maildir": {"INBOX": "Maildir", "Odd": "Maildir/.Odd"},
           "mbox": {"INBOX": "mail/inbox", "Odd": "mail/Odd"}}


def message(tag, size=300_000):
    """A message whose body the kernel passes in several writes (128 KB each)."""
    line = f"{tag} power cut line " .encode() + b"0123456789" * 6 + b"\n"
    body = line * (size // len(line))
    head = (f"From: power@example.org\nTo: user@example.org\nSubject: {tag}\n"
            f"Message-ID: <{tag}@power.example.org>\n"
            f"X-Digest: {hashlib.sha256(body).hexdigest()}\n\n").encode()
    return head + body


class Rig:
    def __init__(self, fmt, drop=0, sieve=False, path="pipe", skip_dirsync=False,
                 clients=1, sends=None):
        self.fmt, self.drop, self.sieve, self.path = fmt, drop, sieve, path
        self.sends = None           # --sends: fusesend.Sends (the script, the capture)
        self.retried = False        # --sends: the MTA's retry ran in this state
        self.skip_dirsync = skip_dirsync
        self.clients = clients
        self.broken_group = False   # run(broken_group=True): see DAEMON
        self.err_mark = 0           # where the daemon's stderr of the last run begins
        self.acked_at_cuts = []     # --clients: how many had their 250, per cut
        self.uidlist_missing = []   # (Maildir, name) the uidlist lists, not in new/ cur/
        self.uidlist_not_renamed = 0    # states where that was a save cut mid-commit
        self.fast = None
        self.lmtp = path == "lmtp"
        self.locks_left = 0         # cut states with a dotlock on the disk
        self.locks_waited_out = {}  # lock -> states where only Dovecot's timeout ends it
        self.token = os.urandom(3).hex()
        self.name = f"mslt-w{self.token}"
        self.entry = ensure_user(self.name, "/nonexistent-" + self.token)
        self.dc = None
        self.base = world_tempdir("mailslot-fusecrash-")
        try:
            self.dc = DovecotEnv.create(mail_location=LOCATIONS[fmt], separator="/",
                                        uid=self.entry.pw_uid, gid=self.entry.pw_gid,
                                        user=self.name)
            subprocess.run(["usermod", "-d", self.dc.home, self.name], check=True)
            self.home = self.dc.home
            self.conf = os.path.join(self.base, "mailslot.yaml")
            log = self.log = os.path.join(self.base, "engine.log")
            if sends:
                from tests.reliability.fusesend import Sends
                self.sends = Sends(sends)
            with open(self.conf, "w") as f:
                f.write(f"mail_location: {LOCATIONS[fmt]}\nlog_path: {log}\n"
                        "hostname: power.example.org\nfirst_valid_uid: 100\n"
                        + (self.sends.settings() if self.sends else ""))
            os.chmod(self.conf, 0o644)
            open(log, "a").close()
            os.chown(log, self.entry.pw_uid, self.entry.pw_gid)
            self.source = os.path.join(self.base, "source")
            self.old, self.new, self.next = (message(f"old-{self.token}"),
                                             message(f"new-{self.token}"),
                                             message(f"next-{self.token}", 2000))
            # --clients N: N connections deliver at once, GROUP_ROUNDS messages
            # each, one after the other (the tags new<i>r<j>-); one: "new".
            self.news = ({f"new-{self.token}": self.new} if clients == 1 else
                         {f"new{i}r{j}-{self.token}": message(f"new{i}r{j}-{self.token}",
                                                              fuselmtp.GROUP_MESSAGE_SIZE)
                          for i in range(clients) for j in range(fuselmtp.GROUP_ROUNDS)})
            self._prepare()
            if path == "fast":
                from tests.reliability.fastrig import FastPath
                self.fast = FastPath(self.entry)
            if path == "lmtp":
                self._lmtpd_conf(log)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.fast is not None:
            self.fast.close()
        if self.dc is not None:
            subprocess.run(["umount", "-l", self.dc.home], capture_output=True)
            self.dc.cleanup()
        if self.sends is not None:
            self.sends.capture.cleanup()
        shutil.rmtree(self.base, ignore_errors=True)
        remove_user(self.name)

    # -- running ---------------------------------------------------------------------

    def engine(self, data, drop=0, rebooted=False):
        code = ENGINE % {"pyside": os.path.join(REPO, "pyside"), "drop": drop,
                         "home": self.home,
                         "boot": int(time.time()) + 1 if rebooted else 0}
        argv = ["setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
                "--init-groups", "--", SYSTEM_PYTHON, "-I", "-S", "-c", code,
                "-c", self.conf]
        if self.sends is not None:
            # The envelope sender the vacation reply goes to.
            from tests.reliability.fusesend import SENDER
            argv += ["-f", SENDER]
        env = {"PATH": "/usr/bin:/bin", "USER": self.name, "HOME": self.home,
               "LOGNAME": self.name}
        proc = subprocess.run(argv, input=data, capture_output=True, env=env, cwd="/",
                              timeout=300)
        return proc.returncode, proc.stderr.decode(errors="replace")

    def front(self, data):
        """The delivery through the fast path: the C front hands it to a worker
        of mailslot-handoffd (the one the cut kills); the front's exit."""
        argv = ["setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
                "--init-groups", "--"] + self.fast.argv(self.conf)
        env = {"PATH": "/usr/bin:/bin", "USER": self.name, "HOME": self.home,
               "LOGNAME": self.name}
        proc = subprocess.run(argv, input=data, capture_output=True, env=env, cwd="/",
                              timeout=300)
        self.fast.ensure_server()
        return proc.returncode, proc.stderr.decode(errors="replace")

    def _lmtpd_conf(self, log):
        """mailslot-lmtpd's settings: one process, the user from a passwd-file, a
        unix socket and a spool directory off the FUSE disk."""
        uid, gid = self.entry.pw_uid, self.entry.pw_gid
        run = os.path.join(self.base, "lmtpd")
        os.mkdir(run, 0o700)
        os.chown(run, uid, gid)
        self.lmtp_socket = os.path.join(run, "socket")
        self.lmtpd_err = os.path.join(self.base, "lmtpd.err")
        users = os.path.join(self.base, "users")
        with open(users, "w") as f:
            f.write(f"{self.name}::{uid}:{gid}::{self.home}::\n")
        self.lmtpd_conf = os.path.join(self.base, "lmtpd.yaml")
        with open(self.lmtpd_conf, "w") as f:
            f.write(f"mail_location: {LOCATIONS[self.fmt]}\nlog_path: {log}\n"
                    f"mail_temp_dir: {run}\nhostname: power.example.org\n"
                    "first_valid_uid: 100\nlmtp_processes: 1\n"
                    f"lmtp_listen: [\"unix:{self.lmtp_socket}\"]\n"
                    "lmtp_message_size_limit: 10M\n"
                    f"userdb:\n  - driver: passwd-file\n    args: username_format=%n {users}\n")
        for path in (users, self.lmtpd_conf):
            os.chmod(path, 0o644)

    def lmtpd(self, data):
        """The delivery through mailslot-lmtpd, started on the mounted disk: 0 when
        the client read the recipient's 250 after DATA; else the daemon's exit (the
        cut kills it: -9), or 75 when it answered and lives on. With --clients the
        messages of self.news at once, one connection each: (exit as above, the
        tags whose 250 a client read)."""
        from tests.lmtp.lmtpsite import Client
        code = DAEMON % {"pyside": os.path.join(REPO, "pyside"), "conf": self.lmtpd_conf,
                         "drop": self.drop, "home": self.home,
                         "skip_dirsync": self.skip_dirsync,
                         "dir_delay": fuselmtp.GROUP_DIR_DELAY_S if self.clients > 1 else 0,
                         "broken_group": self.broken_group}
        self.err_mark = len(self._lmtpd_err())
        argv = ["setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
                "--init-groups", "--", SYSTEM_PYTHON, "-I", "-S", "-c", code]
        with open(self.lmtpd_err, "ab") as err:
            daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err, cwd="/",
                                      env={"PATH": "/usr/bin:/bin"})
        try:
            deadline = time.monotonic() + DAEMON_START_S
            while True:
                if daemon.poll() is not None:
                    raise Failure(f"mailslot-lmtpd exited {daemon.returncode}: "
                                  + self._lmtpd_err()[-2000:])
                try:
                    client = Client.unix(self.lmtp_socket)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise Failure("mailslot-lmtpd did not listen: "
                                      + self._lmtpd_err()[-2000:]) from None
                    time.sleep(0.05)
            if self.clients > 1:
                client.close()
                acked, finals = self._at_once()
                if len(acked) == len(self.news):
                    return (0, acked), " / ".join(finals)
                try:
                    return (daemon.wait(DAEMON_START_S), acked), " / ".join(finals)
                except subprocess.TimeoutExpired:
                    return (75, acked), " / ".join(finals)
            final = "no reply"
            try:
                client.hello()
                rcpt, finals = client.transaction("power@example.org",
                                                  [f"{self.name}@power.example.org"], data)
                final = finals[0] if finals else f"RCPT: {rcpt}"
            except (OSError, EOFError, AssertionError) as exc:
                final = f"connection lost: {exc}"
            finally:
                client.close()
            if isinstance(final, list):
                final = " / ".join(final)
            if final.startswith("250"):
                return 0, final
            try:
                return daemon.wait(DAEMON_START_S), final + self._lmtpd_err()[-300:]
            except subprocess.TimeoutExpired:
                return 75, final
        finally:
            # The power is gone (or, not cut, the machine goes down right after).
            if daemon.poll() is None:
                daemon.kill()
            daemon.wait()

    def _at_once(self):
        return fuselmtp.deliver_at_once(self.lmtp_socket, self.clients, self.news,
                                        f"{self.name}@power.example.org", DAEMON_START_S)

    def dir_syncs(self, sub="new"):
        """The daemon's directory syncs of Maildir/<sub> in the last run: (calls of
        sync_directory, fsyncs the FUSE disk saw are counted by the caller)."""
        end = "/Maildir/" + sub
        return sum(line.startswith("fusecrash: directory sync in thread ")
                   and line.endswith(end)
                   for line in self._lmtpd_err()[self.err_mark:].splitlines())

    def _lmtpd_err(self):
        try:
            with open(self.lmtpd_err, errors="replace") as f:
                return f.read()
        except FileNotFoundError:       # before the daemon's first start
            return ""

    def flusher_syncs(self):
        """Directory syncs the daemon ran in a flusher thread (PARALLEL_SYNC)."""
        return sum("directory sync in thread flush" in line
                   for line in self._lmtpd_err().splitlines())

    def handed_off(self):
        """The new message was saved by a handoff worker (its log line says so)."""
        with open(os.path.join(self.base, "engine.log"), errors="replace") as f:
            return any("<handoff>" in line and f"new-{self.token}" in line for line in f)

    def _empty_home(self):
        empty_directory(self.home)

    def _prepare(self):
        """The state before the delivery: one message, read by Dovecot."""
        if self.sieve or self.sends:
            script = os.path.join(self.home, ".dovecot.sieve")
            with open(script, "wb") as f:
                f.write(self.sends.script if self.sends else SIEVE_SCRIPT)
            os.chown(script, self.entry.pw_uid, self.entry.pw_gid)
        code, err = self.engine(self.old)
        if code != 0:
            raise Failure(f"the first delivery failed: {err}")
        self.dc.doveadm_rows("fetch", "mailbox hdr.message-id", "ALL")
        os.makedirs(self.source)
        subprocess.run(["cp", "-a", self.home + "/.", self.source], check=True)
        self._empty_home()

    def cut(self, crash_after, mode="strict"):
        """Deliver the new message on the FUSE disk, the power going after its
        crash_after-th operation (0: never); the engine's exit and the ops log."""
        self._empty_home()
        self.retried = False
        if self.sends is not None:
            self.sends.clear()
        status = os.path.join(self.base, "status")
        disk = subprocess.Popen([SYSTEM_PYTHON, FUSEDISK, self.source, self.home, status,
                                 "--crash-after", str(crash_after), "--mode", mode],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = disk.stdout.readline()
            if line.strip() != b"mounted":
                raise Failure(f"the FUSE disk did not mount: {disk.stderr.read()[-2000:]!r}")
            if self.lmtp:
                code, err = self.lmtpd(self.new)
            elif self.fast:
                code, err = self.front(self.new)
            else:
                code, err = self.engine(self.new, self.drop)
        finally:
            self._unmount(disk)
        with open(status) as f:
            lines = [json.loads(line) for line in f]
        return code, err, lines[:-1], lines[-1]

    def _unmount(self, disk):
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while disk.poll() is None:
            proc = subprocess.run(["umount", self.home], capture_output=True)
            if proc.returncode == 0 or disk.poll() is not None:
                break
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", self.home], capture_output=True)
                break
            time.sleep(0.05)
        disk.wait(timeout=MOUNT_TIMEOUT_S)
        err = disk.stderr.read()
        disk.stdout.close()
        disk.stderr.close()
        if disk.returncode != 0:
            raise Failure(f"the FUSE disk failed: {err[-2000:]!r}")

    # -- checking ----------------------------------------------------------------------

    def visible(self):
        """[(mailbox, message tag, intact)] of every message a reader finds now."""
        out = []
        for box, raw in self._raw_messages():
            head, _, body = raw.partition(b"\n\n")
            m, d = MSGID.search(head + b"\n"), DIGEST.search(head + b"\n")
            if not m or not d:
                out.append((box, "partial", False))
                continue
            out.append((box, m.group(1).decode().split("@")[0],
                        hashlib.sha256(body).hexdigest() == d.group(1).decode()))
        return out

    def _raw_messages(self):
        for box, rel in FOLDERS[self.fmt].items():
            path = os.path.join(self.home, rel)
            if self.fmt == "maildir":
                for sub in ("new", "cur"):
                    d = os.path.join(path, sub)
                    for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
                        with open(os.path.join(d, name), "rb") as f:
                            yield box, f.read()
                missing = []
                check_uidlist(path, missing)
                self.uidlist_missing += [(path, name) for name in missing]
                continue
            import mailbox
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                check_structure(f.read())
            mb = mailbox.mbox(path, create=False)
            try:
                for key in mb.keys():
                    yield box, _unquote(_strip_dovecot(mb.get_bytes(key)))
            finally:
                mb.close()

    def _check_uidlist_names(self, acked):
        """A name the uidlist lists must be in new/ or cur/ -- unless the power went
        while that save committed: the daemon syncs new/ (in its flusher thread,
        perhaps after group commit's wait for another fsync) while it syncs the
        uidlist, so the uidlist can be durable before the rename is. That message
        was never acknowledged; it is in tmp/ (or nowhere: tmp/ is not synced) and
        its UID stays unused, as after an expunge (doveadm and Dovecot's log are
        checked below). So: no acknowledged message among them, and no more of
        them than messages not acknowledged."""
        problems = []
        unacked = len(set(self.news) - set(acked))
        if len(self.uidlist_missing) > unacked:
            problems.append(f"the uidlist lists {len(self.uidlist_missing)} names not in "
                            f"new/ or cur/ ({self.uidlist_missing[0][1]}, ...), but only "
                            f"{unacked} messages were not acknowledged")
        for path, name in self.uidlist_missing:
            try:
                with open(os.path.join(path, "tmp", name.split(",")[0]), "rb") as f:
                    head = f.read(4096)
            except FileNotFoundError:
                continue
            m = MSGID.search(head)
            if m and m.group(1).decode().split("@")[0] in acked:
                problems.append(f"{path}/dovecot-uidlist lists {name}, acknowledged, "
                                "which is only in tmp/")
        if self.uidlist_missing and not problems:
            self.uidlist_not_renamed += 1
        return problems

    def _locks_left(self):
        """Dotlocks in the home (not the temp files they are born in)."""
        found = []
        for root, _dirs, files in os.walk(self.home):
            found += [os.path.join(root, n) for n in files
                      if n.endswith(".lock") and not n.startswith(".temp.")
                      and n not in PERSISTENT_LOCKS]
        return found

    def _check_duplicates(self):
        """The duplicate database parses (crash.py's rule), if there is one."""
        path = os.path.join(self.home, ".mailslot.lda-dupes")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        if lines[0] != b"mailslot-duplicates 1" or lines[-1] != b"" or not all(
                re.fullmatch(rb"[0-9a-f]{32} \d{1,12}", line) for line in lines[1:-1]):
            return [f"the duplicate database is torn: {lines[:3]!r}"]
        return []

    def check(self, acked, healed):
        """Problems with the state in the home now ([] when none). acked: the tags
        of the new messages acknowledged (exit 0, a 250) before the cut."""
        tags = {"old": f"old-{self.token}", "next": f"next-{self.token}"}
        self.uidlist_missing = []
        try:
            seen = self.visible()
        except (AssertionError, Failure) as exc:
            return [f"does not parse: {exc}"]
        problems = self._check_duplicates() + self._check_uidlist_names(acked)
        counts = {}
        new_box = "Odd" if self.sieve else "INBOX"
        if self.sends is not None and not self.sends.saves:
            acked = set()       # forwarded, not filed: fusesend.py checks it
        for box, tag, ok in seen:
            if not ok:
                problems.append(f"a partial message is visible ({box}: {tag})")
            if tag in self.news and box != new_box:
                problems.append(f"the new message {tag} is in {box}, not {new_box}")
            counts[tag] = counts.get(tag, 0) + 1
        want = {tags["old"]: 1}
        if healed:
            want[tags["next"]] = 1
        for tag, n in want.items():
            if counts.get(tag, 0) != n:
                problems.append(f"{tag} is there {counts.get(tag, 0)} times, not {n}")
        for tag in sorted(self.news):
            if tag in acked and counts.get(tag, 0) != 1:
                problems.append(f"{tag} acknowledged (exit 0, 250) but there "
                                f"{counts.get(tag, 0)} times after the power cut")
            # The MTA's retry (--sends) of a message the cut saved but never
            # acknowledged files it a second time: a duplicate, never a loss.
            if counts.get(tag, 0) > 1 + (self.retried and tag not in acked):
                problems.append(f"the new message {tag} is there "
                                f"{counts.get(tag, 0)} times")
        extra = set(counts) - set(tags.values()) - set(self.news)
        if extra:
            problems.append(f"unknown messages: {sorted(extra)}")
        locks = self._locks_left()
        if not healed and locks:
            # Dovecot waits out a lock it finds (120 s for dovecot-uidlist.lock)
            # and has no rule for locks from before the boot: mailslot's next
            # delivery breaks it (storage/locking.py), then Dovecot reads.
            self.locks_left += 1
        elif self.fmt == "maildir" or healed:
            for path in locks:
                # Left in a mailbox the next delivery did not touch (the Sieve
                # folder): Dovecot breaks it after its 120 s stale timeout; the
                # harness does that at once, and counts it.
                name = os.path.relpath(path, self.home)
                self.locks_waited_out[name] = self.locks_waited_out.get(name, 0) + 1
                os.unlink(path)
            try:
                rows = self.dc.doveadm_rows("fetch", "mailbox hdr.message-id", "ALL")
            except AssertionError as exc:       # doveadm's exit 75 on a torn file
                return problems + [f"doveadm cannot read it: {str(exc)[:300]}"]
            got = sorted((r["mailbox"], r["hdr.message-id"].strip("<>").split("@")[0])
                         for r in rows)
            mine = sorted((box, tag) for box, tag, _ok in seen)
            if got != mine:
                problems.append(f"doveadm lists {got}, the files hold {mine}")
            log = self.dc.log_problems()
            if log:
                problems.append(f"Dovecot's log: {log[:2]}")
        return problems

    def point(self, crash_after, mode="strict"):
        """One crash point: cut, check, deliver the next message, check again."""
        code, err, ops, end = self.cut(crash_after, mode)
        cut = end["crashed"]
        if self.clients > 1:
            # Several clients: the cut may come after some (in a run with more
            # operations than the one counted, after all) of them read their 250.
            code, acked = code
            if cut and code == 0:
                code = -9
            if cut:
                self.acked_at_cuts.append(len(acked))
        else:
            acked = set(self.news) if code == 0 else set()
        # The fast path: the cut kills the worker, and its front answers 75. LMTP:
        # the cut kills the daemon, the client never reads a 250.
        if cut and code != (75 if self.fast else -9):
            return end, [f"the engine exited {code} after the power cut: {err[-300:]}"], ops
        if not cut and code != 0:
            return end, [f"the delivery failed without a cut: {err[-300:]}"], ops
        problems = []
        if self.fmt == "mbox":
            with open(os.path.join(self.home, "mail", "inbox"), "rb") as f:
                if not f.read().startswith(self._old_mbox()):
                    problems.append("the old mbox did not survive")
        else:
            problems += self.check(acked, healed=False)
        if self.sends is not None:
            # The MTA's retry of the cut message, and what went out (fusesend.py).
            problems += self.sends.after_cut(self, acked, cut)
            self.retried = not acked
        # The next delivery runs on what the crash left (and heals a cut mbox append).
        started = time.monotonic()
        code2, err2 = self.engine(self.next, rebooted=True)
        waited = time.monotonic() - started
        if waited > NEXT_DELIVERY_MAX_S:
            problems.append(f"the next delivery took {waited:.0f} s (a lock left behind?)")
        if code2 != 0:
            problems.append(f"the next delivery exited {code2}: {err2[-300:]}")
        else:
            problems += [f"after the next delivery: {p}" for p in self.check(acked, True)]
        where = ops[-1] if cut and ops else {"name": "exit 0"}
        return end, [f"{mode} crash after op {crash_after} ({where['name']} "
                     f"{where.get('path', '')}): {p}" for p in problems], ops

    def _old_mbox(self):
        with open(os.path.join(self.source, "mail", "inbox"), "rb") as f:
            return f.read()


def spread(total, k):
    """k crash points spread over 1..total (all of them when k >= total)."""
    if k >= total:
        return list(range(1, total + 1))
    return sorted({1 + round(i * (total - 1) / max(1, k - 1)) for i in range(k)})


def run(fmt, points=None, drop=0, sieve=False, path="pipe", skip_dirsync=False,
        clients=1, broken_group=False, sends=None):
    """skip_dirsync (--path lmtp): the daemon skips the directory fsyncs of its
    Maildir saves (the one its flusher thread runs): the run must find violations.
    clients (--path lmtp): that many connections deliver to the one user at once;
    broken_group: their daemon's group commit is replaced by a wrong one (a save
    waits for an fsync already under way): the run must find violations."""
    rig = Rig(fmt, drop, sieve, path, skip_dirsync, clients, sends)
    rig.broken_group = broken_group
    try:
        started = time.monotonic()
        # The run that is not cut: counts the operations; its state is the crash
        # "right after exit 0".
        end, problems, ops = rig.point(0)
        total = end["operations"]
        violations = list(problems)
        group = {}
        if clients > 1 and fmt == "maildir":
            # Group commit: more saves asked for new/'s sync than the disk saw
            # fsyncs of it -- at least one fsync covered several messages.
            group = {"new_syncs_asked": rig.dir_syncs(),
                     "new_fsyncs_on_disk": sum(o["name"] == "fsyncdir"
                                               and o["path"].endswith("/Maildir/new")
                                               for o in ops)}
            if group["new_syncs_asked"] != len(rig.news):
                violations.append(f"{group['new_syncs_asked']} saves synced new/, "
                                  f"not {len(rig.news)}")
        if rig.fast and not rig.handed_off():
            violations.append("the delivery did not go through the fast path")
        # One client only: with other deliveries in flight the daemon makes the
        # sync itself, in turn (lmtp/server.py _parallel_sync); the group-commit
        # count above still checks that every save synced new/.
        if rig.lmtp and fmt == "maildir" and clients <= 1 and not rig.flusher_syncs():
            violations.append("no directory sync ran in the daemon's flusher thread "
                              "(PARALLEL_SYNC not in use)")
        chosen = spread(total, points) if points is not None else list(range(1, total + 1))
        cut = 0
        for k in chosen:
            for mode in MODES:
                end, problems, _ops = rig.point(k, mode)
                cut += bool(end["crashed"])
                violations += problems
        kinds = {}
        for op in ops:
            kinds[op["name"]] = kinds.get(op["name"], 0) + 1
        return {"format": fmt, "sieve": sieve, "path": path, "operations": total, "operation_kinds": kinds,
                "crash_points": len(chosen) + 1, "states_checked": len(chosen) * len(MODES) + 1,
                "cut": cut, "drop_sync": drop, "states_with_a_lock_left": rig.locks_left,
                "locks_dovecot_waits_out": rig.locks_waited_out,
                "violation_count": len(violations), "violations": violations[:8],
                "clients": clients, "group_commit": group, "sends": sends and {
                    "kind": sends, "retries": rig.sends.retries,
                    "mails_about_the_cut_message": rig.sends.sent_total,
                    "states_nothing_went_out": rig.sends.nothing_sent,
                    "states_one_extra_copy": rig.sends.extra},
                "acked_at_cuts": sorted(rig.acked_at_cuts),
                "uidlist_names_not_renamed": rig.uidlist_not_renamed,
                "syncs": [f"{o['name']} {o['path'].replace(rig.home, '~')}"
                          for o in ops if o["name"] in ("fsync", "fsyncdir")],
                "seconds": round(time.monotonic() - started, 1)}
    finally:
        rig.close()


def fuse_missing():
    """Why a FUSE disk cannot be mounted here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import llfuse"], capture_output=True)
    if probe.returncode != 0:
        return "python3-llfuse is not installed (make deps-test)"
    # A trivial mount: a container without CAP_SYS_ADMIN has /dev/fuse and llfuse
    # and still cannot mount.
    base = world_tempdir("mailslot-fuseprobe-")
    try:
        source, mnt = os.path.join(base, "source"), os.path.join(base, "mnt")
        os.mkdir(source)
        os.mkdir(mnt)
        disk = subprocess.Popen([SYSTEM_PYTHON, FUSEDISK, source, mnt,
                                 os.path.join(base, "status")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        mounted = disk.stdout.readline().strip() == b"mounted"
        subprocess.run(["umount", mnt], capture_output=True)
        try:
            _out, err = disk.communicate(timeout=MOUNT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
            disk.kill()
            _out, err = disk.communicate()
        if not mounted:
            return f"a FUSE file system cannot be mounted here: {err.decode()[-300:]}"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=sorted(LOCATIONS), action="append")
    parser.add_argument("--points", type=int)
    parser.add_argument("--drop-sync", type=int, default=0)
    parser.add_argument("--sieve", action="store_true")
    parser.add_argument("--path", choices=["pipe", "fast", "lmtp"], default="pipe")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--sends", choices=["vacation", "redirect", "forward"])
    args = parser.parse_args(argv)
    reason = fuse_missing()
    if reason:
        print(f"fusecrash: {reason}", file=sys.stderr)
        return 75
    bad = 0
    for fmt in args.format or ["maildir", "mbox"]:
        result = run(fmt, args.points, args.drop_sync, args.sieve, args.path,
                     clients=args.clients, sends=args.sends)
        bad += result["violation_count"]
        print(json.dumps(result))
    return 1 if bad and not args.drop_sync else 0


if __name__ == "__main__":
    sys.exit(main())
