"""Fuzzing the userdb protocol clients and parsers (userdb/).

  - Dovecot's auth-master replies (userdb/dovecot.py): tab escaping round-trips for
    any text; any list of reply lines parses to None, a dict, or a UserdbError --
    nothing else; a USER reply built from any fields gives those fields back.
  - passwd-file lines (userdb/lookup.py): any line parses to an entry, the
    "passdb only" mark or None, never an exception; uid and gid are digits.
  - SQL query templates (userdb/sql.py): any template compiles to parts and
    parameters or a UserdbError; a user name is always a bound parameter, never
    SQL text.
"""

from hypothesis import given
from hypothesis import strategies as st

from mailslot import errors
import importlib

from mailslot.userdb import dovecot, sql

# The module, not the function the package exports under the same name.
lookup = importlib.import_module("mailslot.userdb.lookup")

text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=40)
TOKENS = ["VERSION\t1\t0", "VERSION\t2\t0", "VERSION\t1\tx", "SPID\t42", "USER\t1\tbob",
          "USER\t2\tbob", "NOTFOUND\t1", "FAIL\t1", "FAIL\t1\treason=x", "USER\t1\t",
          "USER\t1\tbob\tuid=1000\tgid=1000\thome=/h", "\x01", "\t", "=", "\x01t"]
line = st.one_of(st.sampled_from(TOKENS), text,
                 st.lists(st.sampled_from(TOKENS) | text, max_size=4).map("\t".join))


@given(text)
def test_tab_escape_round_trips(value):
    escaped = dovecot.tab_escape(value)
    assert not any(c in escaped for c in "\t\r\n\0")
    assert dovecot.tab_unescape(escaped) == value


@given(st.lists(line, max_size=6), text)
def test_any_reply_is_fields_none_or_a_userdb_error(lines, name):
    try:
        result = dovecot.parse_reply(lines, name, "userdb dovecot test")
    except errors.UserdbError:
        return
    assert result is None or (isinstance(result, dict) and result.get("user"))


@given(text.filter(bool), st.dictionaries(text.filter(lambda k: k and "=" not in k), text,
                                          max_size=5))
def test_user_reply_gives_its_fields_back(user, fields):
    reply = "\t".join(["USER", "1", dovecot.tab_escape(user)] +
                      [dovecot.tab_escape(f"{k}={v}") for k, v in fields.items()])
    got = dovecot.parse_reply(["VERSION\t1\t0", "SPID\t7", reply], user, "test")
    want = {"user": user}
    want.update(fields)
    assert got == want


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x17F,
                                      blacklist_characters="\n"), max_size=80))
def test_any_passwd_file_line_parses_or_is_skipped(entry):
    warnings = []
    result = lookup._parse_entry(entry, "passwd-file test", warnings)
    if isinstance(result, tuple) and result is not lookup._PASSDB_ONLY:
        uid, gid, home, extra = result
        assert uid == "" or uid.isdigit()
        assert gid == "" or gid.isdigit()
        assert isinstance(extra, list) and all(extra)


@given(st.lists(st.sampled_from(["SELECT ", "'", '"', "%n", "%u", "%d", "%%", "--", "/*",
                                 "*/", "\\", " WHERE x=", "%{user}", "%{bad", "%", "'%n'",
                                 '"%n"', ";", "\n"]) | text, max_size=12).map("".join),
       st.sampled_from(["sqlite", "pgsql"]),
       st.text(max_size=20))
def test_sql_template_compiles_or_is_refused(template, driver, user):
    values = {"n": user, "u": user, "d": "", "user": user, "username": user, "domain": ""}
    try:
        parts, params = sql.compile_query(template, values, "userdb sql test", driver=driver)
    except errors.UserdbError:
        return
    assert parts.count(None) == len(params)
    if user and len(user) > 3:
        # The name is data: bound, never pasted into the SQL text.
        assert not any(p is not None and user in p for p in parts if user not in template)
