"""A private mailslot-lmtpd for tests: its own uid, users, homes, sockets.

    site = Site.create()                # users alice, bob, carol (Sieve ereject),
    site.start()                        # broken (unwritable home); a unix + TCP socket
    client = Client.unix(site.socket)   # reads EVERY reply (smtplib.LMTP reads one)
    ...
    site.stop(); site.cleanup()

The daemon runs as an unprivileged uid that has no passwd entry (setpriv), exactly as
it would as "vmail"; the passwd-file userdb gives every user that uid. It runs from
the source tree with `python3 -I`, in the foreground, its stderr in site.stderr_path.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from tests.support import REPO, free_uid, world_tempdir

EREJECT = b'require "ereject";\nereject "no thanks";\n'
USERS = ("alice", "bob", "carol", "broken")


class Site:
    def __init__(self, top, uid, port):
        self.top, self.uid, self.port = top, uid, port
        self.socket = os.path.join(top, "run", "lmtp")
        self.conf = os.path.join(top, "mailslot.yaml")
        self.stderr_path = os.path.join(top, "lmtpd.err")
        self.proc = None

    @classmethod
    def create(cls, *, extra="", uid_start=4700, users_extra="",
               location="maildir:~/Maildir", size_limit="200k"):
        uid = free_uid(uid_start)
        top = world_tempdir("mailslot-lmtp-")
        port = _free_port()
        site = cls(top, uid, port)
        for d in ("run", "log", "tmp"):
            os.mkdir(os.path.join(top, d))
        with open(os.path.join(top, "users"), "w") as f:
            for name in USERS:
                home = site.home(name)
                os.mkdir(home, 0o700)
                f.write(f"{name}::{uid}:{uid}::{home}::\n")
            f.write(users_extra.replace("%UID%", str(uid)).replace("%TOP%", top))
        with open(os.path.join(site.home("carol"), ".dovecot.sieve"), "wb") as f:
            f.write(EREJECT)
        with open(site.conf, "w") as f:
            f.write(f"mail_location: {location}\n"
                    f"log_path: {top}/log/mailslot.log\n"
                    f"mail_temp_dir: {top}/tmp\n"
                    f"hostname: lmtp.test\nfirst_valid_uid: 100\n"
                    f"lmtp_listen: [\"unix:{site.socket}\", \"127.0.0.1:{port}\"]\n"
                    f"lmtp_message_size_limit: {size_limit}\n"
                    f"userdb:\n  - driver: passwd-file\n    args: username_format=%n {top}/users\n" + extra)
        for root, dirs, files in os.walk(top):
            for entry in dirs + files:
                os.chown(os.path.join(root, entry), uid, uid)
        # broken's home is root's: its deliveries fail (temporarily), RCPT still works.
        os.chown(site.home("broken"), 0, 0)
        return site

    def home(self, name):
        return os.path.join(self.top, "home-" + name)

    def maildir(self, name, folder=""):
        """The files in name's Maildir new/ (folder: a Maildir++ folder like ".x")."""
        new = os.path.join(self.home(name), "Maildir", folder, "new")
        if not os.path.isdir(new):
            return []
        return sorted(os.path.join(new, n) for n in os.listdir(new))

    def messages(self, name, folder=""):
        out = []
        for path in self.maildir(name, folder):
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    def argv(self):
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                "--", sys.executable, "-I", "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); "
                "from mailslot.lmtp.server import main; sys.exit(main(sys.argv[2:]))",
                os.path.join(REPO, "pyside"), "-c", self.conf, "--foreground"]

    def start(self, env=None, pass_fds=()):
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stderr=err, stdin=subprocess.DEVNULL,
                                     cwd=self.top, pass_fds=pass_fds,
                                     env=env or {"PATH": "/usr/bin:/bin"})
        err.close()
        self.wait_listening()
        return self.proc

    def start_activated(self):
        """Start the daemon as systemd socket activation does: a unix socket bound
        here (run/activated, returned) handed over as fd 3 with LISTEN_PID (the
        daemon's own pid: sh execs it) and LISTEN_FDS=1. Returns the socket's path;
        it may not be served yet: callers retry their connect or wait for workers."""
        path = os.path.join(self.top, "run", "activated")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(8)
        fd = listener.fileno()
        wrapper = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh"] + \
            self.argv()
        err = open(self.stderr_path, "ab")
        # dup2 clears close-on-exec on the copy at fd 3.
        self.proc = subprocess.Popen(wrapper, stderr=err, stdin=subprocess.DEVNULL,
                                     cwd=self.top, env={"PATH": "/usr/bin:/bin"},
                                     pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
        err.close()
        listener.close()
        return path

    def wait_listening(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailslot-lmtpd exited {self.proc.returncode}: "
                                     + self.stderr())
            try:
                Client.unix(self.socket).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mailslot-lmtpd did not listen: " + self.stderr())

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=30):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return None if self.proc is None else self.proc.returncode

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            # With lmtp_processes, the workers go too (never left to drain or orphaned).
            children = self.children()
            self.proc.kill()
            self.proc.wait()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.top, ignore_errors=True)

    def children(self):
        """The pids of the daemon's live child processes (its workers)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                    found.append(int(entry))
        return found


class Client:
    """A raw LMTP client that reads every reply line (multi-line replies joined)."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(60)
        self.buf = b""

    @classmethod
    def unix(cls, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError:
            s.close()
            raise
        return cls(s)

    @classmethod
    def tcp(cls, port, host="127.0.0.1"):
        return cls(socket.create_connection((host, port)))

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8")

    def reply(self):
        """One whole reply: its lines (a multi-line reply ends with 'NNN ')."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines if len(lines) > 1 else lines[0]

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def hello(self):
        greeting = self.reply()
        self.send(b"LHLO client.test\r\n")
        return greeting, self.reply()

    def transaction(self, sender, rcpts, body, *, bdat=None):
        """Send one transaction pipelined; return (rcpt replies, final replies).
        Reads exactly one final reply per accepted recipient."""
        out = f"MAIL FROM:<{sender}>\r\n".encode()
        out += b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts)
        self.send(out)
        assert self.reply().startswith("250 "), "MAIL refused"
        rcpt_replies = self.replies(len(rcpts))
        accepted = sum(r.startswith("250") for r in rcpt_replies)
        if not accepted:
            return rcpt_replies, []
        if bdat:
            for i in range(0, len(body), bdat):
                piece = body[i:i + bdat]
                last = i + bdat >= len(body)
                self.send(f"BDAT {len(piece)}{' LAST' if last else ''}\r\n".encode() + piece)
                if not last:
                    assert self.reply().startswith("250 ")
            return rcpt_replies, self.replies(accepted)
        self.send(b"DATA\r\n")
        assert self.reply().startswith("354")
        self.send(stuff(body) + b".\r\n")
        return rcpt_replies, self.replies(accepted)

    def close(self):
        self.sock.close()


def assert_sigterm_drains(site, busy, idle):
    """SIGTERM in the middle of busy's DATA: idle is told 421 and closed, no new
    connection is accepted, busy's transaction is finished (250, then 421), the
    daemon exits 0 and the message is stored whole."""
    import pytest
    busy.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    assert busy.replies(3)[-1] == "354 OK"
    busy.send(b"Subject: half\r\n\r\nfirst half\r\n")
    time.sleep(0.3)
    site.signal(signal.SIGTERM)
    assert idle.reply().startswith("421 4.3.2")           # idle: told and closed
    time.sleep(0.3)
    with pytest.raises(OSError):
        Client.unix(site.socket).hello()                   # no new connections
    busy.send(b"second half\r\n.\r\n")
    assert busy.reply() == "250 2.0.0 <alice@example.org> Saved"
    assert busy.reply().startswith("421 4.3.2")
    assert site.proc.wait(20) == 0
    (stored,) = site.messages("alice")
    assert stored.endswith(b"first half\nsecond half\n")


def workers(site, timeout=20, count=2, other_than=()):
    """The pids of the daemon's worker processes (its children), once there are
    `count` of them none of which is in other_than."""
    deadline = time.time() + timeout
    while True:
        found = site.children()
        if len(found) == count and not set(found) & set(other_than):
            return sorted(found)
        assert time.time() < deadline, (found, site.stderr())
        time.sleep(0.05)


def assert_alice_over_the_limit(client, timeout=20):
    """While a delivery to alice is under way elsewhere (lmtp_user_concurrency_limit
    1), a transaction for alice and bob must answer 451 for alice and 250 for bob.
    The first delivery may take a moment to start on a loaded machine: ask again
    (RSET between) until it is under way; only the limit can answer 451 here."""
    deadline = time.time() + timeout
    while True:
        client.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\n"
                    b"RCPT TO:<bob@example.org>\r\n")
        replies = client.replies(3)
        if replies[1].startswith("451") or time.time() > deadline:
            break
        client.send(b"RSET\r\n")
        assert client.reply() == "250 2.0.0 OK"
        time.sleep(0.1)
    assert replies == [
        "250 2.1.0 OK",
        "451 4.3.0 <alice@example.org> Too many concurrent deliveries for user",
        "250 2.1.5 OK"]


def stuff(body):
    """CRLF line ends and dot-stuffing (RFC 5321 4.5.2), ending in CRLF."""
    body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
