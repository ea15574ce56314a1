"""The fast path for the crash harness (crash.py --path fast): the C front, the
installed engine it falls back to, mailslot-handoffd as the test user; what to kill.

Built and started through the public interface only, as tests/fastpath does: `make
install` into a private DESTDIR (the engine and mailslot-handoffd), the front built
by helper_c's Makefile with HANDOFF_DIR pointing into a private directory (the
per-uid socket directory made as the systemd unit makes it: owned by the uid,
0700), the server started as the user with setpriv. Whatever the server does
inside (one worker per delivery, or workers that serve several), the processes
delivering a given message are found from outside: the mailslot-handoffd
processes that hold the message's stdin (the pipe, or the spool file) open.

Not a test module; errors are exceptions (a build or a server that does not
start is a broken rig, not a finding).
"""

import os
import shutil
import signal
import subprocess
import time

from tests.support import REPO, world_tempdir

SERVER_START_S = 30             # the server imports the whole engine before listening
SETTLE_S = 120                  # a worker still filing a 3 MB message after a kill


class FastPath:
    def __init__(self, entry):
        self.entry = entry
        self.base = world_tempdir("mailslot-crashfast-")
        dest = os.path.join(self.base, "inst")
        subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        libdir = os.path.join(dest, "usr/lib/mailslot")
        self.engine = os.path.join(libdir, "mailslot-lda")
        self.server_entry = os.path.join(libdir, "mailslot-handoffd")
        handoff = os.path.join(self.base, "handoff")
        os.makedirs(handoff, mode=0o755)
        os.chmod(handoff, 0o755)
        sockdir = os.path.join(handoff, str(entry.pw_uid))
        os.mkdir(sockdir, 0o700)
        os.chown(sockdir, entry.pw_uid, entry.pw_gid)
        self.socket = os.path.join(sockdir, "socket")
        out = os.path.join(self.base, "out")
        self.front = os.path.join(out, "mailslot-lda-front")
        subprocess.run(["make", "-s", "-C", os.path.join(REPO, "helper_c"), f"OUT={out}",
                        f"HANDOFF_DIR={handoff}", f"ENGINE_PATH={self.engine}",
                        "HANDSHAKE_TIMEOUT_MS=2000", self.front],
                       check=True, stdout=subprocess.DEVNULL)
        self.server = None
        self.server_log = os.path.join(self.base, "server.log")
        self.start_server()

    # -- the server ----------------------------------------------------------------

    def start_server(self):
        """Start mailslot-handoffd as the user; return once it listens."""
        log = open(self.server_log, "ab")
        start = log.tell()
        cmd = ["setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
               "--init-groups", "--", self.server_entry, "--socket", self.socket]
        self.server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=log, cwd="/",
                                       env={"PATH": "/usr/bin:/bin"})
        log.close()
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            with open(self.server_log, "rb") as f:
                f.seek(start)
                if b"listening on" in f.read():
                    return
            if self.server.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("mailslot-handoffd did not start: "
                           + open(self.server_log, errors="replace").read()[-2000:])

    def server_alive(self):
        return self.server is not None and self.server.poll() is None

    def kill_server(self):
        # setpriv execs the server: the Popen's pid is the server's.
        self.server.kill()
        self.server.wait()

    def ensure_server(self):
        if not self.server_alive():
            self.start_server()

    # -- delivering ----------------------------------------------------------------

    def argv(self, conf):
        return [self.front, "-c", conf]

    def holders(self, ident):
        """pids of mailslot-handoffd processes (the server or its workers) holding
        the file ident ((st_dev, st_ino) of a delivery's stdin) open."""
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"mailslot-handoffd" not in f.read():
                        continue
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (st.st_dev, st.st_ino) == ident:
                        found.append(int(pid))
                        break
            except OSError:         # gone meanwhile, or an fd closed under us
                continue
        return found

    def settle(self, ident):
        """Wait until no handoffd process holds the delivery's stdin: a worker
        whose front was killed is stopped or finishes; only then is the mailbox
        what a reader will find for good."""
        deadline = time.monotonic() + SETTLE_S
        while self.holders(ident):
            if time.monotonic() > deadline:
                raise RuntimeError(f"a worker still holds {ident} after {SETTLE_S} s")
            time.sleep(0.01)

    def close(self):
        if self.server_alive():
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        shutil.rmtree(self.base, ignore_errors=True)
