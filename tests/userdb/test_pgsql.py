"""The sql userdb against a real PostgreSQL (Debian's postgresql, private, unix socket).

Lookups run in Debian's python3 -I -S as nobody (tests/userdb/servers.py lookup_as),
as the installed engine and the relay's lookup child run them: psycopg2 comes from
the system's site-packages, added by sitepath on demand.
"""

import os

import pytest

from tests.support import needs_root
from tests.userdb.conftest import PG_USERS
from tests.userdb.servers import SilentServer, lookup_as, world_tempdir

pytestmark = needs_root

QUERY = ("SELECT home, uid, gid, mail, quota_rule FROM users "
         "WHERE username = '%n' AND domain = '%d'")


def write_conf(directory, connect, query=QUERY, mode=0o644):
    path = os.path.join(directory, "sql.conf")
    with open(path, "w") as f:
        f.write(f"# private test server\ndriver = pgsql\nconnect = {connect}\n"
                f"user_query = {query}\n")
    os.chmod(path, mode)
    return [{"driver": "sql", "args": path}]


@pytest.fixture
def confdir():
    path = world_tempdir("mailslot-pgconf-")
    yield path
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def test_found_user_with_fields(pg_server, confdir):
    out = lookup_as("pgann@example.org", write_conf(confdir, pg_server.connect()))
    assert out["found"], out
    assert (out["uid"], out["gid"], out["home"]) == (5100, 5100, "/var/vmail/example.org/pgann")
    assert out["fields"] == {"mail": "maildir:~/Maildir", "quota_rule": "*:storage=1G"}
    assert out["psycopg2_loaded"]


def test_unknown_user(pg_server, confdir):
    out = lookup_as("nobody-here@example.org", write_conf(confdir, pg_server.connect()))
    assert out == dict(out, found=False, warnings=[])


def test_first_of_two_rows_with_a_warning(pg_server, confdir):
    out = lookup_as("twice@example.org", write_conf(confdir, pg_server.connect()))
    assert out["home"] in ("/var/vmail/twice1", "/var/vmail/twice2")
    assert any("more than one row" in w for w in out["warnings"])


@pytest.mark.parametrize("local", [row[0] for row in PG_USERS if row[0] not in ("pgann", "twice")])
def test_hostile_names_are_quoted_and_find_their_own_row(pg_server, confdir, local):
    out = lookup_as(f"{local}@example.org", write_conf(confdir, pg_server.connect()))
    expected = next(row for row in PG_USERS if row[0] == local)
    assert out["found"] and out["home"] == expected[2], out


@pytest.mark.parametrize("name", [
    "x'; DROP TABLE victims; --@example.org",
    "' OR '1'='1@example.org",
    "'; SELECT pg_sleep(5); --@example.org",
    "\\'; DROP TABLE victims; --@example.org",
    "%u@example.org",
    "%s@example.org",
    "nul\0@example.org",
])
def test_injection_attempts_match_nothing_and_change_nothing(pg_server, confdir, name):
    out = lookup_as(name, write_conf(confdir, pg_server.connect()))
    assert out["found"] is False, out
    assert out["elapsed"] < 4
    assert pg_server.psql("SELECT count(*) FROM victims;", database="mail").strip() == "1"


def test_unquoted_variable_and_literal_percent(pg_server, confdir):
    query = ("SELECT home, uid, gid, 'maildir:/m/%%d' AS mail FROM users "
             "WHERE username = %n AND domain LIKE 'example.%%' AND 10 %% 3 = 1")
    out = lookup_as("o'hara@example.org", write_conf(confdir, pg_server.connect(), query))
    assert out["found"], out
    assert out["fields"] == {"mail": "maildir:/m/%d"}


def test_password_role(pg_server, confdir):
    good = write_conf(confdir, pg_server.connect(user="mslt_pw", password="'Secret pw'"),
                      mode=0o644)
    assert lookup_as("pgann@example.org", good)["uid"] == 5100
    bad = write_conf(confdir, pg_server.connect(user="mslt_pw", password="wrong"))
    out = lookup_as("pgann@example.org", bad)
    assert out["error"] == "UserdbError" and out["exit"] == 75
    assert "password authentication failed" in out["message"]


def test_first_reachable_host_answers(pg_server, confdir):
    connect = f"host={confdir}/no-server-here " + pg_server.connect() + " maxconns=4"
    out = lookup_as("pgann@example.org", write_conf(confdir, connect))
    assert out["uid"] == 5100, out


def test_no_server_is_temporary(pg_server, confdir):
    connect = pg_server.connect(host=f"{confdir}/no-server-here")
    out = lookup_as("pgann@example.org", write_conf(confdir, connect))
    assert (out["error"], out["exit"]) == ("UserdbError", 75)
    assert "no-server-here" in out["message"]


@pytest.mark.parametrize("query,words", [
    ("SELEC home FROM users", ["User query failed", "syntax error"]),
    ("SELECT home FROM nosuch WHERE username = '%n'", ["does not exist"]),
])
def test_query_errors_are_temporary(pg_server, confdir, query, words):
    out = lookup_as("pgann@example.org", write_conf(confdir, pg_server.connect(), query))
    assert (out["error"], out["exit"]) == ("UserdbError", 75), out
    for word in words:
        assert word in out["message"]


def test_slow_query_times_out(pg_server, confdir):
    query = "SELECT home, uid, gid FROM users, pg_sleep(30) WHERE username = '%n'"
    out = lookup_as("pgann@example.org", write_conf(confdir, pg_server.connect(), query),
                    {"userdb_timeout": 2})
    assert (out["error"], out["exit"]) == ("UserdbError", 75), out
    # Our deadline, or the server's statement_timeout that we set: both within it.
    assert 1.5 <= out["elapsed"] < 6


def test_server_that_never_answers_times_out(confdir):
    sock = os.path.join(confdir, ".s.PGSQL.5499")
    silent = SilentServer(sock)
    try:
        out = lookup_as("pgann@example.org",
                        write_conf(confdir, f"host={confdir} port=5499 dbname=mail user=x"),
                        {"userdb_timeout": 2})
    finally:
        silent.close()
    assert (out["error"], out["exit"]) == ("UserdbError", 75), out
    assert "no answer within 2 s" in out["message"]
    assert 1.9 <= out["elapsed"] < 6


def test_psycopg2_is_not_loaded_for_other_userdbs(confdir):
    out = lookup_as("nobody", [{"driver": "passwd"}])
    assert out["found"] and not out["psycopg2_loaded"]
