"""The sql userdb against a real SQLite database: answers, hostile names, locks, timeouts."""

import os
import sqlite3
import time

import pytest

from mailslot import errors, userdb
from mailslot.config import default_settings
from mailslot.recipient import find_user

ROWS = [
    ("ann", "example.org", "/v/ann", 5000, 5000, "maildir:~/M", "*:storage=1G", None),
    ("o'hara", "example.org", "/v/ohara", 5001, 5001, None, None, None),
    ("x'; DROP TABLE users; --", "example.org", "/v/drop", 5002, 5002, None, None, None),
    ("semi;colon", "example.org", "/v/semi", 5003, 5003, None, None, None),
    ("50%", "example.org", "/v/pct", 5004, 5004, None, None, None),
    ("back\\slash", "example.org", "/v/back", 5005, 5005, None, None, None),
    ("tab\tuser", "example.org", "/v/tab", 5006, 5006, None, None, None),
    ("nl\nuser", "example.org", "/v/nl", 5007, 5007, None, None, None),
    ("twice", "example.org", "/v/twice1", 5008, 5008, None, None, None),
    ("twice", "example.org", "/v/twice2", 5009, 5009, None, None, None),
    ("named", "example.org", "/v/named", "nobody", "nogroup", None, None, None),
    ("renamed", "example.org", "/v/renamed", 5010, 5010, None, None, "real@example.org"),
]
QUERY = ("SELECT home, uid, gid, mail, quota_rule, realname AS user FROM users "
         "WHERE username = '%n' AND domain = '%d'")


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "users.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (username TEXT, domain TEXT, home TEXT, uid, gid, "
               "mail TEXT, quota_rule TEXT, realname TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    db.commit()
    db.close()
    return path


def conf(tmp_path, database, query=QUERY, extra=""):
    path = tmp_path / "sql.conf"
    path.write_text(f"driver = sqlite\nconnect = {database}\nuser_query = {query}\n{extra}")
    return [{"driver": "sql", "args": str(path)}]


def test_found_user_with_fields(tmp_path, database):
    user = userdb.lookup("ann@example.org", conf(tmp_path, database))
    assert (user.name, user.uid, user.gid, user.home) == ("ann@example.org", 5000, 5000, "/v/ann")
    assert user.fields == {"mail": "maildir:~/M", "quota_rule": "*:storage=1G"}
    assert user.source == "userdb sql"


def test_null_columns_are_left_out_and_names_resolve(tmp_path, database):
    user = userdb.lookup("named@example.org", conf(tmp_path, database))
    assert user.fields == {}
    assert user.uid == __import__("pwd").getpwnam("nobody").pw_uid


def test_user_column_renames(tmp_path, database):
    assert userdb.lookup("renamed@example.org", conf(tmp_path, database)).name == \
        "real@example.org"


def test_unknown_user_falls_through_to_the_next_userdb(tmp_path, database):
    dbs = conf(tmp_path, database) + [{"driver": "static",
                                       "args": "uid=7 gid=7 home=/s/%u allow_all_users"}]
    assert userdb.lookup("nobody-here@example.org", dbs).home == "/s/nobody-here@example.org"
    assert userdb.lookup("nobody-here@example.org", dbs[:1]) is None


def test_first_row_wins_with_a_warning(tmp_path, database):
    warnings = []
    user = userdb.lookup("twice@example.org", conf(tmp_path, database), warnings=warnings)
    assert user.home in ("/v/twice1", "/v/twice2")
    assert any("more than one row" in w for w in warnings)


@pytest.mark.parametrize("local", ["o'hara", "x'; DROP TABLE users; --", "semi;colon",
                                   "50%", "back\\slash", "tab\tuser", "nl\nuser"])
def test_hostile_names_are_quoted_and_find_their_own_row(tmp_path, database, local):
    user = userdb.lookup(f"{local}@example.org", conf(tmp_path, database))
    expected = next(row for row in ROWS if row[0] == local)
    assert user.home == expected[2]
    db = sqlite3.connect(database)
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == len(ROWS)


@pytest.mark.parametrize("name", ["%u@example.org", "' OR '1'='1@example.org", "x\0@example.org",
                                  "ann'--@example.org", "%@example.org"])
def test_hostile_names_match_nothing_else(tmp_path, database, name):
    assert userdb.lookup(name, conf(tmp_path, database)) is None


@pytest.mark.parametrize("name", ["o'hara@example.org", "semi;colon@example.org",
                                  "50%@example.org", "tab\tuser@example.org",
                                  "nl\nuser@example.org", "x\0@example.org"])
def test_with_default_settings_hostile_names_are_refused_first(tmp_path, database, name):
    settings = default_settings()
    settings["userdb"] = conf(tmp_path, database)
    with pytest.raises(errors.UserUnknownError):
        find_user(name, settings)
    settings["auth_username_chars"] = ""
    settings["auth_username_format"] = ""
    if "\0" in name:
        with pytest.raises(errors.UserUnknownError):
            find_user(name, settings)
    else:
        assert find_user(name, settings).home.startswith("/v/")


def test_default_user_query_is_dovecots(tmp_path, database):
    path = tmp_path / "plain.conf"
    path.write_text(f"driver = sqlite\nconnect = {database}\n")
    user = userdb.lookup("ann@example.org", [{"driver": "sql", "args": str(path)}])
    assert (user.uid, user.home, user.fields) == (5000, "/v/ann", {})


@pytest.mark.parametrize("text,words", [
    ("driver = sqlite\nconnect = {db}\nuser_query = SELEC home\n", ["syntax error"]),
    ("driver = sqlite\nconnect = {db}\nuser_query = SELECT nosuch FROM users\n",
     ["no such column"]),
    ("driver = mysql\nconnect = host=x\n", ["'mysql' is not supported"]),
    ("connect = {db}\n", ["driver not set"]),
    ("driver = sqlite\n", ["connect string not set"]),
    ("driver = sqlite\nconnect = {missing}\n", ["unable to open database"]),
    ("driver = sqlite\nconnect = relative.db\n", ["absolute path"]),
])
def test_broken_databases_are_temporary(tmp_path, database, text, words):
    path = tmp_path / "bad.conf"
    path.write_text(text.format(db=database, missing=tmp_path / "absent.sqlite"))
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann@example.org", [{"driver": "sql", "args": str(path)}])
    for word in words:
        assert word in str(info.value)
    assert errors.exit_code_for(info.value) == errors.EX_TEMPFAIL


def test_missing_database_is_not_created(tmp_path, database):
    missing = tmp_path / "absent.sqlite"
    with pytest.raises(errors.UserdbError):
        userdb.lookup("ann@example.org", conf(tmp_path, missing))
    assert not missing.exists()


def test_args_must_be_an_absolute_path():
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", [{"driver": "sql", "args": "sql.conf"}])
    assert "absolute path" in str(info.value)


def test_locked_database_is_a_timeout_not_a_hang(tmp_path, database):
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(errors.UserdbError) as info:
            userdb.lookup("ann@example.org", conf(tmp_path, database),
                          settings={"userdb_timeout": 1})
        elapsed = time.monotonic() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked" in str(info.value)
    assert 0.9 <= elapsed < 5


def test_endless_query_is_interrupted_at_the_deadline(tmp_path, database):
    forever = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT home, uid, gid FROM users, n WHERE username = '%n' AND i < 0")
    start = time.monotonic()
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann@example.org", conf(tmp_path, database, forever),
                      settings={"userdb_timeout": 1})
    elapsed = time.monotonic() - start
    assert "no answer within 1 s" in str(info.value)
    assert 0.9 <= elapsed < 5


def test_database_is_opened_read_only(tmp_path, database):
    before = os.stat(database).st_mtime_ns
    write = "UPDATE users SET home = 'x' WHERE username = '%n' RETURNING home, uid, gid"
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann@example.org", conf(tmp_path, database, write))
    assert "readonly" in str(info.value)
    assert os.stat(database).st_mtime_ns == before


# Issue 20.8: Dovecot pastes the name into "%n" and SQLite reads a double-quoted word
# that names no column as a string, so such a query finds the user there.
@pytest.mark.parametrize("query", [
    'SELECT home, uid, gid FROM users WHERE username = "%n" AND domain = "%d"',
    'SELECT home, uid, gid FROM users WHERE username || \'@\' || domain = "%n@%d"',
])
def test_double_quoted_variables_mean_what_they_mean_to_dovecot(tmp_path, database, query):
    user = userdb.lookup("ann@example.org", conf(tmp_path, database, query))
    assert (user.uid, user.home) == (5000, "/v/ann")
    hostile = userdb.lookup('x" OR 1=1 --@example.org', conf(tmp_path, database, query))
    assert hostile is None                      # a value, never SQL


def test_double_quoted_column_names_stay_identifiers(tmp_path, database):
    query = 'SELECT "home", uid, gid FROM "users" WHERE "username" = \'%n\''
    assert userdb.lookup("ann@example.org", conf(tmp_path, database, query)).home == "/v/ann"


def test_like_takes_the_name_as_a_pattern_as_in_dovecot(tmp_path, database):
    """docs/userdb.md: with LIKE '%n' a '_' in the name matches any character."""
    query = "SELECT home, uid, gid FROM users WHERE username LIKE '%n'"
    assert userdb.lookup("a_n", conf(tmp_path, database, query)).home == "/v/ann"
