"""The sql userdb's settings file (Dovecot's dovecot-sql.conf.ext format) and query compiler."""

import os

import pytest

from mailslot import errors, variables
from mailslot.userdb.sql import (MODIFIER_LETTERS, compile_query, read_sql_conf,
                                 render_query)

# (file text, expected dict) -- what Dovecot's settings reader makes of it.
CONF_CASES = {
    "plain": ("driver = sqlite\nconnect = /db\nuser_query = SELECT 1\n",
              {"driver": "sqlite", "connect": "/db", "user_query": "SELECT 1"}),
    "comments and blanks": ("# c\n\n   # indented\ndriver = pgsql # trailing\n",
                            {"driver": "pgsql"}),
    "continuation": ("user_query = SELECT home \\\n   FROM users \\\n  WHERE u = '%u'\n",
                     {"user_query": "SELECT home FROM users WHERE u = '%u'"}),
    "double quotes": ('connect = "host=/run/pg password=a#b"\n',
                      {"connect": "host=/run/pg password=a#b"}),
    "single quotes and escapes": ("user_query = 'SELECT \\'x\\''\n",
                                  {"user_query": "SELECT 'x'"}),
    "hash inside sql quotes": ("user_query = SELECT '#' AS x # comment\n",
                               {"user_query": "SELECT '#' AS x"}),
    "passdb keys ignored": ("password_query = SELECT p\niterate_query = x\n"
                            "default_pass_scheme = SHA512-CRYPT\nupdate_query = u\n"
                            "userdb_warning_disable = yes\n",
                            {"password_query": "SELECT p", "iterate_query": "x",
                             "default_pass_scheme": "SHA512-CRYPT", "update_query": "u",
                             "userdb_warning_disable": "yes"}),
    "crlf": ("driver = sqlite\r\nconnect = /db\r\n", {"driver": "sqlite", "connect": "/db"}),
    "last wins": ("driver = pgsql\ndriver = sqlite\n", {"driver": "sqlite"}),
    "no spaces": ("driver=sqlite\n", {"driver": "sqlite"}),
}


@pytest.mark.parametrize("case", sorted(CONF_CASES))
def test_conf_is_read_as_dovecot_reads_it(tmp_path, case):
    text, expected = CONF_CASES[case]
    path = tmp_path / "sql.conf"
    path.write_text(text)
    assert read_sql_conf(str(path)) == expected


@pytest.mark.parametrize("text,words", [
    ("drivr = sqlite\n", ["Unknown setting: drivr", "line 1"]),
    ("driver sqlite\n", ["Expecting '='"]),
    ("# x\nconnect = $ENV:PGPASS\n", ["$ENV:", "line 2"]),
    ("!include missing.conf\n", ["missing.conf", "No such file"]),
])
def test_conf_errors_are_temporary_and_located(tmp_path, text, words):
    path = tmp_path / "sql.conf"
    path.write_text(text)
    with pytest.raises(errors.UserdbError) as info:
        read_sql_conf(str(path))
    for word in words:
        assert word in str(info.value)
    assert errors.exit_code_for(info.value) == errors.EX_TEMPFAIL


def test_include_is_relative_to_the_file(tmp_path):
    (tmp_path / "secret.conf").write_text("connect = host=/x password=s\n")
    (tmp_path / "sql.conf").write_text("driver = pgsql\n!include secret.conf\n"
                                       "!include_try absent.conf\n")
    assert read_sql_conf(str(tmp_path / "sql.conf")) == {
        "driver": "pgsql", "connect": "host=/x password=s"}


def test_include_loop_is_bounded(tmp_path):
    (tmp_path / "sql.conf").write_text("!include sql.conf\n")
    with pytest.raises(errors.UserdbError) as info:
        read_sql_conf(str(tmp_path / "sql.conf"))
    assert "nested too deeply" in str(info.value)


def test_missing_and_oversized_files(tmp_path):
    with pytest.raises(errors.UserdbError) as info:
        read_sql_conf(str(tmp_path / "absent.conf"))
    assert "Can't open configuration file" in str(info.value)
    big = tmp_path / "big.conf"
    big.write_text("# x\n" * 300000)
    with pytest.raises(errors.UserdbError) as info:
        read_sql_conf(str(big))
    assert "larger than" in str(info.value)


# --- the query compiler --------------------------------------------------------------

VALUES = variables.user_values("Ann@Example.org", None)

# (template, SQL with '?' placeholders, parameters)
QUERY_CASES = {
    "dovecot default": ("SELECT home, uid, gid FROM users WHERE username = '%n' AND domain = '%d'",
                        "SELECT home, uid, gid FROM users WHERE username = ? AND domain = ?",
                        ["Ann", "Example.org"]),
    "long names": ("WHERE u = '%{user}'", "WHERE u = ?", ["Ann@Example.org"]),
    "several variables in one literal": ("WHERE u = '%n@%d'", "WHERE u = ?",
                                         ["Ann@Example.org"]),
    "modifiers and substrings": ("WHERE u = '%Ln' AND p = '%1Ln' AND x = '%{domain}'",
                                 "WHERE u = ? AND p = ? AND x = ?",
                                 ["ann", "a", "Example.org"]),
    "unquoted variable": ("WHERE u = %Lu", "WHERE u = ?", ["ann@example.org"]),
    "percent literal in a quoted string": ("WHERE m LIKE 'a%%'", "WHERE m LIKE ?", ["a%"]),
    "percent outside quotes": ("SELECT 7 %% 3 WHERE u = '%u'", "SELECT 7 % 3 WHERE u = ?",
                               ["Ann@Example.org"]),
    "doubled quote kept in the value": ("WHERE u = '%n''s'", "WHERE u = ?", ["Ann's"]),
    "plain literals stay SQL": ("SELECT 'maildir:~/M' AS mail WHERE u = '%u'",
                                "SELECT 'maildir:~/M' AS mail WHERE u = ?",
                                ["Ann@Example.org"]),
    "identifiers stay": ('SELECT "home%" FROM t WHERE u=\'%n\'',
                         'SELECT "home%" FROM t WHERE u=?', ["Ann"]),
    "comments stay": ("SELECT 1 -- it's '%u'\nWHERE u = '%n' /* '%d */",
                      "SELECT 1 -- it's '%u'\nWHERE u = ? /* '%d */", ["Ann"]),
}


@pytest.mark.parametrize("case", sorted(QUERY_CASES))
def test_variables_become_bound_parameters(case):
    template, sql, params = QUERY_CASES[case]
    parts, got = compile_query(template, VALUES, "test")
    assert render_query(parts, "?") == sql
    assert got == params


def test_pyformat_rendering_doubles_literal_percent():
    parts, params = compile_query("SELECT 7 %% 3, x FROM t WHERE u = '%u'", VALUES, "t")
    assert render_query(parts, "%s", double_percent=True) == \
        "SELECT 7 %% 3, x FROM t WHERE u = %s"


@pytest.mark.parametrize("name", ["o'hara", "x'; DROP TABLE users; --", "a\\'b", "50%",
                                  "%u", "tab\there", "new\nline", "?", "%s", "nul\0"])
def test_hostile_names_never_reach_the_sql_text(name):
    values = variables.user_values(name, None)
    template = "SELECT home FROM users WHERE u = '%u' AND n = %n"
    parts, params = compile_query(template, values, "t")
    assert render_query(parts, "?") == "SELECT home FROM users WHERE u = ? AND n = ?"
    assert params == [name, name.partition("@")[0]]


@pytest.mark.parametrize("template,words", [
    ("WHERE u = '%u", ["unclosed '"]),
    ('SELECT "x', ['unclosed "']),
    ("WHERE u = '%q'", ["%q"]),
    ("WHERE u = '%h'", ["home"]),
    ("WHERE u = %", ["lone '%'"]),
    ("WHERE u = %{user", ["unclosed '%{'"]),
    ("SELECT 1 /* x", ["unclosed /*"]),
])
def test_bad_queries_are_userdb_errors(template, words):
    with pytest.raises(errors.UserdbError) as info:
        compile_query(template, VALUES, "sql /x: user_query")
    for word in words:
        assert word in str(info.value)
    assert "user_query" in str(info.value)


def test_modifier_letters_match_the_variables_module():
    assert set(MODIFIER_LETTERS) == set(variables._MODIFIERS)


def test_double_quoted_variable_is_a_parameter_for_sqlite_and_refused_for_pgsql():
    parts, params = compile_query('SELECT h FROM t WHERE u = "%n" AND "col" = 1', VALUES, "t")
    assert render_query(parts, "?") == 'SELECT h FROM t WHERE u = ? AND "col" = 1'
    assert params == ["Ann"]
    with pytest.raises(errors.UserdbError) as info:
        compile_query('SELECT h FROM t WHERE u = "%n"', VALUES, "t", driver="pgsql")
    assert "column name" in str(info.value)
