"""The sql userdb: Dovecot's user_query against SQLite (built in) or PostgreSQL.

    userdb:
      - driver: sql
        args: /etc/mailslot/sql.conf        # Dovecot's dovecot-sql.conf.ext format

args is the path of a file in Dovecot's dovecot-sql.conf.ext format (db-sql.c,
read as lib-settings/settings.c reads it: "key = value" lines, '#' comments, a
trailing '\\' continues a line, "..." or '...' quote a value, !include and
!include_try with paths relative to the file):

    driver = sqlite | pgsql
    connect = /var/lib/mailslot/users.sqlite              (sqlite: the database file)
    connect = host=/run/postgresql dbname=mail user=mail  (pgsql: a libpq conninfo;
              several host= are tried in order, as Dovecot does; maxconns= is ignored)
    user_query = SELECT home, uid, gid, mail FROM users \\
                 WHERE username = '%n' AND domain = '%d'

password_query, iterate_query, update_query, default_pass_scheme and
userdb_warning_disable are accepted and ignored (they are the passdb's); any other
key is an error, as in Dovecot. user_query defaults to Dovecot's default.

The query: every %variable is sent to the database as a bound parameter, never
pasted into the SQL. A quoted SQL string that holds %variables ('%n', '%n@%d',
'%u%%') becomes one parameter whose value is the expanded string; a %variable
outside quotes becomes a parameter of its own; '%%' is '%'. So '%u' in a Dovecot
query means exactly what it meant there, whatever the name holds (quotes,
semicolons, backslashes). A double-quoted "%n" is a string to SQLite (Dovecot
pastes the name there, and SQLite takes a double-quoted word that names no column
as a string): one parameter too; to PostgreSQL it is a column name, refused. As in
Dovecot, LIKE '%n' compares with the name as a pattern: a '_' or '%' in the name
matches any character(s) -- write '=' unless that is meant. As in Dovecot, the first row answers, its columns are
the userdb fields (uid, gid, home, mail, quota_rule, user, any setting override),
NULL columns are left out; no row means "unknown user". More than one row adds a
warning.

Errors (all errors.UserdbError, temporary, never a bounce): the file missing or
unreadable, a syntax error, an unknown key or driver, a query whose %variables do
not expand, the database unreachable, a query error, no answer within
userdb_timeout (SQLite: busy or running too long; PostgreSQL: connect and query
together, through non-blocking I/O with one deadline).

Security: the settings file may hold a database password; the lookup runs both as
the relay's lookup user and as each recipient's uid, so both must be able to read
it (docs/userdb.md). SQLite databases are opened read-only, never created.
"""

import os

from mailslot import errors
from mailslot.userdb.common import setting
from mailslot.variables import expand, referenced

# Dovecot's defaults (src/auth/db-sql.c, default_db_sql_settings).
DEFAULT_USER_QUERY = ("SELECT home, uid, gid FROM users "
                      "WHERE username = '%n' AND domain = '%d'")
SQL_DRIVERS = ("sqlite", "pgsql")
# Keys of dovecot-sql.conf.ext that only the passdb uses: accepted, ignored.
IGNORED_KEYS = frozenset({"password_query", "iterate_query", "update_query",
                          "default_pass_scheme", "userdb_warning_disable"})
USED_KEYS = frozenset({"driver", "connect", "user_query"})
# Bounds on the settings file: its size, and how deep !include may nest.
MAX_CONF_SIZE = 1 << 20
MAX_INCLUDE_DEPTH = 10
# Dovecot's variable modifiers (lib/var-expand.c): letters between '%' and the key.
MODIFIER_LETTERS = "LUEXRHNMDT"


def lookup_sql(name, args, values, warnings, settings):
    """Return the first row of user_query for name as fields, or None."""
    path = args.strip()
    if not path.startswith("/"):
        raise errors.UserdbError(
            f"userdb sql: args must be the absolute path of a SQL settings file, not {path!r}")
    conf = read_sql_conf(path)
    driver = conf.get("driver")
    if driver not in SQL_DRIVERS:
        raise errors.UserdbError(
            f"sql {path}: driver {driver!r} is not supported (use {' or '.join(SQL_DRIVERS)})"
            if driver else f"sql: driver not set in configuration file {path}")
    connect = conf.get("connect")
    if not connect:
        raise errors.UserdbError(f"sql: connect string not set in configuration file {path}")
    template = conf.get("user_query", DEFAULT_USER_QUERY)
    parts, params = compile_query(template, values, f"sql {path}: user_query",
                                  driver=driver)
    if any("\0" in p for p in params):
        return None  # no database row can be asked for with a NUL in its key
    timeout = setting(settings, "userdb_timeout")
    if driver == "sqlite":
        names, rows = query_sqlite(connect, render_query(parts, "?"), params, timeout)
    else:
        from mailslot.userdb.pgsql import query_pgsql
        names, rows = query_pgsql(connect, render_query(parts, "%s", double_percent=True),
                                  params, timeout)
    if not rows:
        return None
    if len(rows) > 1:
        warnings.append(f"sql {path}: user_query returned more than one row for "
                        f"{name}; using the first")
    return {column: text_of(value) for column, value in zip(names, rows[0])
            if column and value is not None}



# --- the settings file ------------------------------------------------------------

def read_sql_conf(path):
    """Return {key: value} from a dovecot-sql.conf.ext-style file."""
    conf = {}
    _read_conf_file(path, conf, 0, required=True)
    return conf


def _read_conf_file(path, conf, depth, *, required):
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_CONF_SIZE + 1)
    except FileNotFoundError:
        if not required:
            return
        raise errors.UserdbError(f"sql: Can't open configuration file {path}: "
                                 "No such file or directory") from None
    except OSError as exc:
        raise errors.UserdbError(
            f"sql: Can't open configuration file {path}: {exc.strerror} "
            f"(running as uid {os.getuid()})") from None
    if len(data) > MAX_CONF_SIZE:
        raise errors.UserdbError(f"sql {path}: larger than {MAX_CONF_SIZE} bytes")
    pending = ""
    for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        line = _strip_comment(raw.strip(" \t\r"))
        if line.endswith("\\"):
            pending += line[:-1].rstrip(" \t") + " "
            continue
        line, pending = pending + line, ""
        if not line:
            continue
        where = f"sql: Error in configuration file {path} line {number}"
        key, _, rest = line.partition("=")
        key = key.strip(" \t")
        word = line.split(None, 1)
        if word[0] in ("!include", "!include_try"):
            if depth >= MAX_INCLUDE_DEPTH:
                raise errors.UserdbError(f"{where}: !include nested too deeply")
            target = word[1].strip() if len(word) > 1 else ""
            if not target.startswith("/"):
                target = os.path.join(os.path.dirname(path), target)
            _read_conf_file(target, conf, depth + 1, required=word[0] == "!include")
            continue
        if "=" not in line or not key or any(c in key for c in " \t"):
            raise errors.UserdbError(f"{where}: Expecting '='")
        if key not in USED_KEYS and key not in IGNORED_KEYS:
            raise errors.UserdbError(f"{where}: Unknown setting: {key}")
        conf[key] = _value_of(rest.strip(" \t"), where)


def _strip_comment(line):
    """Cut a '#' comment that is outside quotes (settings.c's rule)."""
    if line.startswith("#"):
        return ""
    i, quote = 0, None
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#":
            return line[:i].rstrip(" \t")
        i += 1
    return line


def _value_of(text, where):
    """A value as Dovecot reads it: quotes removed and '\\' escapes undone."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body, out, i = text[1:-1], [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    if "$ENV:" in text:
        # The engine runs with a cleaned environment: $ENV: would silently be "".
        raise errors.UserdbError(f"{where}: $ENV: values are not supported")
    return text


# --- the query --------------------------------------------------------------------

def compile_query(template, values, where, *, driver="sqlite"):
    """Split template into SQL text and bound parameters.

    Returns (parts, params): parts is a list of SQL text strings and None, one None
    per parameter, in order. Raises errors.UserdbError when a quoted string or a
    comment is not closed or a %variable does not expand.

    A double-quoted "%n": Dovecot pastes the name between the double quotes, and
    SQLite reads a double-quoted word that names no column as a string literal,
    so for SQLite it is one parameter, as '%n' is. PostgreSQL reads it as a column
    name (Dovecot's query fails there), so for pgsql it is an error saying so.
    """
    parts, params, text = [], [], []
    i, end = 0, len(template)

    def flush():
        if text:
            parts.append("".join(text))
            text.clear()

    def bind(value):
        flush()
        parts.append(None)
        params.append(value)

    while i < end:
        c = template[i]
        if c == "'":
            close, content = _quoted(template, i, "'", where)
            if "%" in content:
                bind(_expand(content, values, where))
            else:
                text.append(template[i:close + 1])
            i = close + 1
        elif c == '"':
            close, content = _quoted(template, i, '"', where)
            if "%" in content and _has_variables(content):
                if driver != "sqlite":
                    raise errors.UserdbError(
                        f"{where}: {template[i:close + 1]} is a column name to "
                        f"{driver} (Dovecot's query fails there too): write "
                        f"'{content}' for the value")
                bind(_expand(content, values, where))
            else:
                text.append(template[i:close + 1])      # an identifier: kept as is
            i = close + 1
        elif template.startswith("--", i):
            close = template.find("\n", i)
            close = end if close < 0 else close
            text.append(template[i:close])
            i = close
        elif template.startswith("/*", i):
            close = template.find("*/", i + 2)
            if close < 0:
                raise errors.UserdbError(f"{where}: unclosed /* comment")
            text.append(template[i:close + 2])
            i = close + 2
        elif c == "%":
            stop = _variable_end(template, i, where)
            token = template[i:stop]
            if token == "%%":
                text.append("%")
            else:
                bind(_expand(token, values, where))
            i = stop
        else:
            text.append(c)
            i += 1
    flush()
    return parts, params


def render_query(parts, placeholder, *, double_percent=False):
    """Join parts with placeholder for each parameter ('?' SQLite, '%s' psycopg2).

    With double_percent, a literal '%' in the SQL text is written '%%', as a
    pyformat driver requires when parameters are given.
    """
    out = []
    for part in parts:
        if part is None:
            out.append(placeholder)
        else:
            out.append(part.replace("%", "%%") if double_percent else part)
    return "".join(out)


def _quoted(template, start, quote, where):
    """Return (index of the closing quote, content with doubled quotes undone)."""
    content, i = [], start + 1
    while i < len(template):
        if template[i] == quote:
            if template.startswith(quote, i + 1):
                content.append(quote)
                i += 2
                continue
            return i, "".join(content)
        content.append(template[i])
        i += 1
    raise errors.UserdbError(f"{where}: unclosed {quote} in the query")


def _variable_end(template, i, where):
    """Index just past the %variable at template[i] (var-expand.c's syntax)."""
    end, j = len(template), i + 1
    for allowed in ("-", "0"):
        if j < end and template[j] == allowed:
            j += 1
    while j < end and template[j].isdigit():
        j += 1
    if j < end and template[j] == ".":
        j += 1
        for allowed in ("0", "-"):
            if j < end and template[j] == allowed:
                j += 1
        while j < end and template[j].isdigit():
            j += 1
    while j < end and template[j] in MODIFIER_LETTERS:
        j += 1
    if j >= end:
        raise errors.UserdbError(f"{where}: lone '%' at the end of the query")
    if template[j] != "{":
        return j + 1
    depth = 0
    for k in range(j, end):
        if template[k] == "{":
            depth += 1
        elif template[k] == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    raise errors.UserdbError(f"{where}: unclosed '%{{' in the query")


def _has_variables(text):
    """True if text holds a %variable (not only '%%' or a stray '%')."""
    try:
        return bool(referenced(text))
    except ValueError:
        return False


def _expand(text, values, where):
    try:
        return expand(text, values)
    except ValueError as exc:
        raise errors.UserdbError(f"{where}: {exc}") from None


def text_of(value):
    """A column's value as the text Dovecot would have read from the database."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


# --- SQLite -----------------------------------------------------------------------

# How many SQLite virtual machine steps run between two deadline checks.
SQLITE_PROGRESS_STEPS = 1000


def query_sqlite(path, sql, params, timeout):
    """Run sql on the database file at path, read-only; return (names, up to 2 rows)."""
    import sqlite3
    import time

    if not path.startswith("/"):
        raise errors.UserdbError(f"sql: sqlite connect must be an absolute path: {path!r}")
    deadline = time.monotonic() + timeout
    # mode=ro: a lookup never creates or changes the database (a missing file is
    # an error, not a new empty database).
    uri = "file:" + "".join("%%%02x" % ord(c) if c in "%?#" else c for c in path) + "?mode=ro"
    connection = None
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        # A query that runs past the deadline is interrupted (SQLITE_INTERRUPT).
        connection.set_progress_handler(lambda: time.monotonic() > deadline,
                                        SQLITE_PROGRESS_STEPS)
        cursor = connection.execute(sql, params)
        names = [column[0] for column in cursor.description or ()]
        rows = cursor.fetchmany(2)
    except sqlite3.Error as exc:
        late = time.monotonic() > deadline
        reason = f"no answer within {timeout} s ({exc})" if late else str(exc)
        raise errors.UserdbError(f"sql sqlite {path}: {reason}") from None
    finally:
        if connection is not None:
            connection.close()
    return names, rows
