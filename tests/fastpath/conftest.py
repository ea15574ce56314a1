"""Fixtures for the fast path (issue 18): a build of mailslot-lda-front pointing
into a temp directory, and mailslot-handoffd running as a test user.

    front     a FrontBuild: .front (the hardened build), .asan, .debug, .handoff_dir,
              .socket_for(uid), .engine (the installed mailslot-lda it falls back to)
    server    start_server(user, **kw) -> a running Server (stop() / kill())

start_server is parametrized by worker_max_use: every test that starts a server
runs twice, with workers used once (--max-use 1: a fresh fork per hand-off) and
with the default of handoff_worker_max_use (read from a settings file that does
not set it), so that each test holds on both. A test that needs one particular
reuse passes max_use= (or its own extra_argv) itself.

The front is built with HANDOFF_DIR=<temp>/handoff and ENGINE_PATH=<installed
engine>; the socket directory <temp>/handoff/<uid> is made as the systemd unit
makes it (owned by the uid, 0700).
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.support import REPO, world_tempdir

HELPER_C = os.path.join(REPO, "helper_c")


class FrontBuild:
    def __init__(self, base, engine):
        self.base = base
        self.out = os.path.join(base, "out")
        self.handoff_dir = os.path.join(base, "handoff")
        self.engine = engine
        self.front = os.path.join(self.out, "mailslot-lda-front")
        self.asan = os.path.join(self.out, "asan", "mailslot-lda-front")
        self.debug = os.path.join(self.out, "debug", "mailslot-lda-front")
        self.server_entry = os.path.join(os.path.dirname(engine), "mailslot-handoffd")

    def socket_dir(self, uid):
        return os.path.join(self.handoff_dir, str(uid))

    def socket_for(self, uid):
        return os.path.join(self.socket_dir(uid), "socket")

    def make_socket_dir(self, entry):
        path = self.socket_dir(entry.pw_uid)
        os.makedirs(path, exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(path, 0o700)
        return path


@pytest.fixture(scope="session")
def front(installed):
    base = world_tempdir("mailslot-front-")
    engine = os.path.join(installed, "mailslot-lda")
    build = FrontBuild(base, engine)
    os.makedirs(build.handoff_dir, mode=0o755)
    subprocess.run(["make", "-s", "-C", HELPER_C, f"OUT={build.out}",
                    f"HANDOFF_DIR={build.handoff_dir}", f"ENGINE_PATH={engine}",
                    "HANDSHAKE_TIMEOUT_MS=2000", build.front, build.asan, build.debug],
                   check=True)
    yield build
    shutil.rmtree(base, ignore_errors=True)


class Server:
    """mailslot-handoffd as a user (setpriv), in the foreground of a Popen."""

    def __init__(self, build, entry, socket, extra_argv=(), prefix=(), groups=None):
        self.socket = socket
        group_opt = ["--init-groups"] if groups is None else [f"--groups={groups}"]
        cmd = list(prefix) + ["setpriv", f"--reuid={entry.pw_uid}",
                              f"--regid={entry.pw_gid}"] + group_opt + [
            "--", build.server_entry, "--socket", socket] + list(extra_argv)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd="/",
                                     env={"PATH": "/usr/bin:/bin"})
        self.rest = ""
        line = self.banner = self.proc.stderr.readline().decode()
        assert "listening on" in line, line + self.proc.stderr.read().decode()

    @property
    def pid(self):
        return self.proc.pid

    def workers(self):
        """The server's live children (spare workers and workers in flight)."""
        out = subprocess.run(["pgrep", "-P", str(self.server_pid())], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def workers_reading(self, stdin):
        """The workers whose fd 0 is the pipe stdin (a file object, or the pipe's
        inode number): the ones delivering for the front we gave that pipe. Found
        through /proc, so also after the server itself is gone."""
        ino = stdin if isinstance(stdin, int) else os.fstat(stdin.fileno()).st_ino
        wanted = f"pipe:[{ino}]"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/fd/0") != wanted:
                    continue
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if b"mailslot-handoffd" in cmdline:
                found.append(int(entry))
        return found

    def server_pid(self):
        # setpriv execs the server: the Popen's pid is the server's.
        return self.proc.pid

    def stop(self):
        """Stop the server; return what it wrote to stderr after "listening"."""
        if self.proc.stderr.closed:
            return self.rest
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.rest = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return self.rest

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture(params=[1, "default"], ids=["max_use=1", "max_use=default"])
def worker_max_use(request):
    """1, or "default": handoff_worker_max_use as the settings leave it."""
    return request.param


@pytest.fixture
def start_server(front, worker_max_use):
    started = []
    # The server's own settings file: nothing about workers in it, so "default"
    # is the setting's default, whatever /etc/mailslot holds on this machine.
    server_conf = os.path.join(front.base, "handoffd.yaml")
    if not os.path.exists(server_conf):
        with open(server_conf, "w") as f:
            f.write("hostname: test.example.org\n")
        os.chmod(server_conf, 0o644)

    def start(entry, socket=None, make_dir=True, max_use=None, extra_argv=(), **kw):
        if make_dir:
            front.make_socket_dir(entry)
        use = worker_max_use if max_use is None else max_use
        argv = ["-c", server_conf] + ([] if use == "default" else ["--max-use", str(use)])
        server = Server(front, entry, socket or front.socket_for(entry.pw_uid),
                        extra_argv=argv + list(extra_argv), **kw)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
