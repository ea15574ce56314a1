"""Fixtures for the userdb tests: a private PostgreSQL with a users table.

The server (tests/userdb/servers.py) is started once per session by an
unprivileged account on a unix socket in a temp dir and stopped at the end.
"""

import os

import pytest

from tests.userdb.servers import PgServer, pg_bindir, unprivileged_account

# Rows of mail.users: (username, domain, home, uid, gid, mail, quota_rule).
PG_USERS = [
    ("pgann", "example.org", "/var/vmail/example.org/pgann", 5100, 5100,
     "maildir:~/Maildir", "*:storage=1G"),
    ("o'hara", "example.org", "/var/vmail/example.org/ohara", 5101, 5101, None, None),
    ("semi;colon", "example.org", "/var/vmail/semi", 5102, 5102, None, None),
    ("back\\slash", "example.org", "/var/vmail/back", 5103, 5103, None, None),
    ("pct%", "example.org", "/var/vmail/pct", 5104, 5104, None, None),
    ("tab\tuser", "example.org", "/var/vmail/tab", 5105, 5105, None, None),
    ("nl\nuser", "example.org", "/var/vmail/nl", 5106, 5106, None, None),
    ("twice", "example.org", "/var/vmail/twice1", 5107, 5107, None, None),
    ("twice", "example.org", "/var/vmail/twice2", 5108, 5108, None, None),
]


def sql_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'").replace(
        "\t", "\\t").replace("\n", "\\n") + "'"


@pytest.fixture(scope="session")
def pg_server():
    """A running private PostgreSQL holding database mail, table users, two roles."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    if not os.path.exists("/usr/lib/python3/dist-packages/psycopg2"):
        pytest.skip("psycopg2 is not installed (Debian: apt-get install python3-psycopg2)")
    server = PgServer(bindir, unprivileged_account("postgres"))
    try:
        server.start()
        rows = ",\n".join("(" + ", ".join(sql_literal(v) for v in row) + ")"
                          for row in PG_USERS)
        server.psql("CREATE ROLE mslt_mail LOGIN;\n"
                    "CREATE ROLE mslt_pw LOGIN PASSWORD 'Secret pw';\n"
                    "CREATE DATABASE mail OWNER mslt_admin;\n")
        server.psql("CREATE TABLE users (username text NOT NULL, domain text NOT NULL,"
                    " home text, uid integer, gid integer, mail text, quota_rule text);\n"
                    f"INSERT INTO users VALUES\n{rows};\n"
                    "CREATE TABLE victims (x integer); INSERT INTO victims VALUES (1);\n"
                    "GRANT SELECT ON users, victims TO mslt_mail, mslt_pw;\n",
                    database="mail")
        yield server
    finally:
        server.stop()


# --- a private Dovecot auth service --------------------------------------------------

DOVECOT = "/usr/sbin/dovecot"
NOBODY_UID = 65534
# Dovecot's passwd-file userdb for the private auth service.
DOVECOT_USERS = (
    "dvann:{PLAIN}x:5200:5200::/var/vmail/dvann::userdb_mail=maildir:~/Mail "
    "userdb_quota_rule=*:storage=2G userdb_sieve_after=/etc/after.sieve\n"
    "dvbob@example.org:{PLAIN}x:5201:5202::/var/vmail/example.org/dvbob\n"
    f"own:{{PLAIN}}x:{NOBODY_UID}:{NOBODY_UID}::/var/vmail/own\n"
    "noids:{PLAIN}x:::::\n"
)


class DovecotAuth:
    """Paths of the running private Dovecot's listeners."""

    def __init__(self, base):
        self.base = base
        self.run = os.path.join(base, "run")
        self.open_socket = os.path.join(self.run, "auth-userdb")       # mode 0777
        self.own_socket = os.path.join(self.run, "own-userdb")         # mode 0666
        self.private_socket = os.path.join(self.run, "private-userdb")  # 0600 root
        self.log = os.path.join(base, "dovecot.log")

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@pytest.fixture(scope="session")
def dovecot_auth():
    """A private Dovecot (no protocols) whose auth service reads DOVECOT_USERS."""
    import shutil
    import subprocess
    import time

    from tests.support import world_tempdir

    if os.geteuid() != 0 or not os.access(DOVECOT, os.X_OK):
        pytest.skip("needs root and Dovecot (Debian: apt-get install dovecot-core)")
    base = world_tempdir("mailslot-dvauth-")
    auth = DovecotAuth(base)
    users = os.path.join(base, "users")
    with open(users, "w") as f:
        f.write(DOVECOT_USERS)
    os.chmod(users, 0o644)
    os.makedirs(os.path.join(base, "state"))
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"base_dir = {auth.run}\nstate_dir = {base}/state\n"
                f"instance_name = mailslot-userdb-{os.getpid()}\nprotocols =\nssl = no\n"
                f"log_path = {auth.log}\n"
                f"passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
                f"userdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
                "service auth {\n"
                "  unix_listener auth-userdb {\n    mode = 0777\n  }\n"
                "  unix_listener own-userdb {\n    mode = 0666\n  }\n"
                "  unix_listener private-userdb {\n    mode = 0600\n    user = root\n  }\n"
                "}\n")
    master = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if all(os.path.exists(p) for p in (auth.open_socket, auth.own_socket,
                                                auth.private_socket)):
                break
            if master.poll() is not None:
                pytest.fail(f"dovecot exited: {master.stderr.read().decode()}")
            time.sleep(0.05)
        else:
            pytest.fail("Dovecot's auth-userdb sockets did not appear")
        auth.conf = conf
        yield auth
    finally:
        master.terminate()
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        shutil.rmtree(base, ignore_errors=True)
