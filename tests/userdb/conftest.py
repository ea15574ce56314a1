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
