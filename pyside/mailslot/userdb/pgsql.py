"""PostgreSQL for the sql userdb: one query with one deadline, through psycopg2.

query_pgsql(connect, sql, params, timeout) runs sql (with "%s" placeholders) and
returns (column names, up to two rows). connect is Dovecot's pgsql connect string:
a libpq conninfo where several host= name servers to try in order (Dovecot's
sqlpool does the same) and maxconns= is Dovecot's own (ignored: one lookup needs
one connection).

Connection and query use psycopg2's asynchronous mode: libpq never blocks, and
select() waits on the socket until one deadline, userdb_timeout after the start,
so a server that accepts and never answers, or a query that never ends, costs at
most the timeout. statement_timeout is also set for the session (unless the
conninfo sets options=) so the server stops such a query itself. A host name is
resolved before the first poll, by libpq, without that bound: name the server by
address or unix socket directory where that matters.

Errors: errors.UserdbError for a missing psycopg2 (Debian's python3-psycopg2), no
server reachable, a query error, a timeout. A query error is not retried on the
next host (the next one would say the same); a connection failure is.

Security: the parameters go to psycopg2 as query parameters: it quotes each with
libpq's escaping for the connection's encoding (standard_conforming_strings
aware), so no value can end its string literal. The installed engine runs without
site-packages (python3 -I -S): sitepath.enable_site_packages() adds the system's
before the import, as for PyYAML.
"""

import time

from mailslot import errors

# Keys of Dovecot's pgsql connect string that are not libpq's.
DOVECOT_ONLY_KEYS = ("maxconns",)


def query_pgsql(connect, sql, params, timeout):
    """Return (names, rows) for sql with params; rows holds at most two rows."""
    psycopg2 = _import_psycopg2()
    hosts, conninfo = split_connect(connect)
    deadline = time.monotonic() + timeout
    failures = []
    for host in hosts or [None]:
        dsn = conninfo if host is None else f"host={host} {conninfo}".rstrip()
        where = f"sql pgsql({host or 'default'})"
        try:
            connection = _connect(psycopg2, dsn, deadline, timeout, where)
        except errors.UserdbError as exc:
            failures.append(str(exc))
            continue
        try:
            return _run(psycopg2, connection, sql, params, deadline, timeout, where)
        finally:
            connection.close()
    raise errors.UserdbError("; ".join(failures))


def split_connect(connect):
    """Return (hosts in order, conninfo without host= and Dovecot's own keys)."""
    hosts, rest = [], []
    for word in connect.split():
        key = word.partition("=")[0]
        if key == "host":
            hosts.append(word[len("host="):])
        elif key not in DOVECOT_ONLY_KEYS:
            rest.append(word)
    return hosts, " ".join(rest)


def _import_psycopg2():
    from mailslot.sitepath import enable_site_packages
    enable_site_packages()
    try:
        import psycopg2
        import psycopg2.extensions
    except ImportError:
        raise errors.UserdbError("userdb sql: driver pgsql needs psycopg2 "
                                 "(Debian: apt-get install python3-psycopg2)") from None
    return psycopg2


def _connect(psycopg2, dsn, deadline, timeout, where):
    extra = {"client_encoding": "UTF8"}
    if "options=" not in dsn:
        # The server gives up on a query we no longer wait for.
        extra["options"] = f"-c statement_timeout={max(1, int(timeout * 1000))}"
    try:
        connection = psycopg2.connect(dsn, async_=1, **extra)
    except psycopg2.Error as exc:
        raise errors.UserdbError(f"{where}: {_first_line(exc)}") from None
    try:
        _wait(psycopg2, connection, deadline, timeout, where, "connect")
    except BaseException:
        connection.close()
        raise
    return connection


def _run(psycopg2, connection, sql, params, deadline, timeout, where):
    try:
        cursor = connection.cursor()
        cursor.execute(sql, params)
        _wait(psycopg2, connection, deadline, timeout, where, "User query")
        names = [column.name for column in cursor.description or ()]
        rows = cursor.fetchmany(2)
    except psycopg2.Error as exc:
        raise errors.UserdbError(f"{where}: User query failed: {_first_line(exc)}") from None
    return names, rows


def _wait(psycopg2, connection, deadline, timeout, where, what):
    """Drive connection.poll() until it is ready, waiting no later than deadline."""
    import select
    extensions = psycopg2.extensions
    while True:
        try:
            state = connection.poll()
        except psycopg2.Error as exc:
            raise errors.UserdbError(f"{where}: {what} failed: {_first_line(exc)}") from None
        if state == extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining > 0:
            fd = connection.fileno()
            if state == extensions.POLL_READ:
                ready = select.select([fd], [], [], remaining)[0]
            else:
                ready = select.select([], [fd], [], remaining)[1]
            if ready:
                continue
        raise errors.UserdbError(f"{where}: {what}: no answer within {timeout} s")


def _first_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return text.split("\n", 1)[0]
