"""Real servers for the userdb tests, and a way to run lookups as the engine runs.

PgServer     a private PostgreSQL from Debian's packages (initdb + pg_ctl), run by
             an unprivileged account, listening only on a unix socket in a temp
             dir (no TCP), fsync off; psql() runs SQL as its superuser.
SilentServer a unix socket that accepts connections and never answers (a hung
             database or auth service); optional canned bytes first.
ChattyServer a unix socket that answers VERSION, then streams one line forever
             (or drips it a byte at a time): a hostile auth service.
lookup_as()  runs userdb.lookup in Debian's /usr/bin/python3 -I -S as an
             unprivileged uid, as the installed engine and the relay's lookup
             child do (so psycopg2 comes from the system's site-packages through
             sitepath, exactly as in production); returns a dict.

Everything skips with a reason naming the Debian package when it is missing.
"""

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time

import pytest

from tests.support import REPO, world_tempdir

PYSIDE = os.path.join(REPO, "pyside")
DEBIAN_PYTHON = "/usr/bin/python3"


def pg_bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def unprivileged_account(preferred="postgres"):
    for name in (preferred, "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("no unprivileged account (postgres, nobody) to run the server as")


def as_account(entry):
    """argv prefix that runs a command as entry when we are root."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
            "--init-groups", "--"]


class PgServer:
    """One private PostgreSQL cluster on a unix socket."""

    PORT = 5499          # only names the socket file: the server listens on no TCP port
    SUPERUSER = "mslt_admin"

    def __init__(self, bindir, owner):
        self.bindir, self.owner = bindir, owner
        self.base = world_tempdir("mailslot-pg-")
        self.data = os.path.join(self.base, "data")
        self.socket_dir = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "server.log")
        os.makedirs(self.socket_dir)
        os.chmod(self.socket_dir, 0o755)
        if os.geteuid() == 0:
            for path in (self.base, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def _run(self, argv, **kw):
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": self.base}
        return subprocess.run(as_account(self.owner) + argv, env=env, cwd=self.base,
                              capture_output=True, text=True, timeout=120, **kw)

    def start(self):
        init = self._run([f"{self.bindir}/initdb", "-D", self.data, "-U", self.SUPERUSER,
                          "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
                          "--auth-local=trust", "--auth-host=reject"])
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr}")
        # scram for the password role first, trust for everyone else (unix socket only).
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        with open(hba, "w") as f:
            f.write("local all mslt_pw scram-sha-256\n" + text)
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.socket_dir} "
                   f"-c port={self.PORT} -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=20 -c shared_buffers=16MB")
        started = self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-l", self.log,
                             "-o", options, "-w", "-t", "60", "start"])
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{self.read_log()}")

    def stop(self):
        self._run([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                   "stop"])
        shutil.rmtree(self.base, ignore_errors=True)

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def psql(self, sql, database="postgres"):
        run = self._run([f"{self.bindir}/psql", "-X", "-q", "-h", self.socket_dir,
                         "-p", str(self.PORT), "-U", self.SUPERUSER, "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"], input=sql)
        if run.returncode != 0:
            raise RuntimeError(f"psql failed: {run.stderr}")
        return run.stdout

    def connect(self, **keys):
        """A Dovecot pgsql connect string for this server."""
        words = {"host": self.socket_dir, "port": str(self.PORT), "dbname": "mail",
                 "user": "mslt_mail"}
        words.update(keys)
        return " ".join(f"{k}={v}" for k, v in words.items() if v is not None)


class SilentServer:
    """A unix socket that accepts, sends `greeting`, then says nothing more.

    With close=True it closes each connection after the greeting (and after
    reading what the client sent). received holds what each client sent.
    """

    def __init__(self, path, greeting=b"", close=False):
        self.path, self.greeting, self.close_after = path, greeting, close
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.listen(16)
        self.clients = []
        self.received = []
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            client.settimeout(0.5)
            data = b""
            try:
                while b"USER\t" not in data or not data.endswith(b"\n"):
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            self.received.append(data)
            if self.greeting:
                try:
                    client.sendall(self.greeting)
                except OSError:
                    pass
            if self.close_after:
                client.close()

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for client in self.clients:
            client.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


LOOKUP_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from mailslot import userdb, errors
name, dbs, settings = json.loads(sys.argv[2])
warnings = []
start = time.monotonic()
try:
    user = userdb.lookup(name, dbs, settings=settings, warnings=warnings)
    out = {"found": user is not None}
    if user is not None:
        out.update(name=user.name, uid=user.uid, gid=user.gid, home=user.home,
                   fields=user.fields, source=user.source)
except errors.MailslotError as exc:
    out = {"error": type(exc).__name__, "message": str(exc),
           "exit": errors.exit_code_for(exc)}
out["warnings"] = warnings
out["elapsed"] = time.monotonic() - start
out["psycopg2_loaded"] = "psycopg2" in sys.modules
print(json.dumps(out))
"""


class ChattyServer:
    """A unix socket that sends `hello`, then `line` over and over until the client
    goes away; with drip, one byte every `drip` seconds instead of as fast as it can."""

    def __init__(self, path, hello=b"VERSION\t1\t2\n", line=b"SPID\t1\n", drip=None):
        self.path, self.hello, self.line, self.drip = path, hello, line, drip
        self.sent = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            client, _ = self.sock.accept()
        except OSError:
            return
        with client:
            try:
                client.recv(65536)
                client.sendall(self.hello)
                block = self.line * (65536 // len(self.line))
                while True:
                    if self.drip:
                        for byte in self.line:
                            client.sendall(bytes([byte]))
                            self.sent += 1
                            time.sleep(self.drip)
                    else:
                        client.sendall(block)
                        self.sent += len(block)
            except OSError:
                return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def lookup_as(name, userdbs, settings=None, *, account="nobody", timeout=120):
    """userdb.lookup in Debian's python3 -I -S as account; the result as a dict."""
    entry = pwd.getpwnam(account)
    argv = as_account(entry) + [DEBIAN_PYTHON, "-I", "-S", "-c", LOOKUP_SCRIPT, PYSIDE,
                                json.dumps([name, userdbs, settings or {}])]
    start = time.monotonic()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                         env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    out["wall"] = time.monotonic() - start
    return out
