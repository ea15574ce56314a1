"""The dovecot userdb: ask a running Dovecot's auth service, as dovecot-lda does.

    userdb:
      - driver: dovecot
        args: /var/run/dovecot/auth-userdb     # optional: auth_socket_path by default

So a site's existing Dovecot userdb (LDAP, SQL, passwd-file, anything Dovecot
reads) serves mailslot unchanged. A relative path is taken under Dovecot's default
base_dir, /var/run/dovecot, as dovecot-lda takes "auth-userdb".

The auth-master protocol (Dovecot 2.3: lib-auth/auth-master.c is the client,
auth/auth-master-connection.c the server), one lookup per connection:

    client: VERSION\\t1\\t0\\n  USER\\t1\\t<user>\\tservice=lda\\n
    server: VERSION\\t1\\t<minor>\\n  SPID\\t<pid>\\n, then one of
            USER\\t1\\t<user>\\t<key=value>...   found (fields uid, gid, home, mail ...)
            NOTFOUND\\t1                         unknown user
            FAIL\\t1[\\treason=...]                the userdb failed (temporary)

Every value is tab-escaped (strescape.c): byte 0x01 followed by '0', '1', 't', 'r',
'n' stands for NUL, 0x01, TAB, CR, LF. A name holding TAB, CR, LF or NUL is never
sent (auth-master.c: "the user can't exist"): it is unknown. The name Dovecot
returns is the user's name from then on (its auth_username_format applies there too).

Errors: errors.UserdbError, temporary, for: no socket, permission denied, no
answer within userdb_timeout (one deadline for connect, request and the whole
answer, however the server drips or streams it), a closed connection, a reply that
breaks the protocol (another major version, a line over MAX_REPLY_LINE, more than
MAX_REPLY_LINES lines, an unknown reply, another request id), FAIL, an empty user
name. So a hostile or broken server holds a delivery at most userdb_timeout and
MAX_REPLY_LINE * MAX_REPLY_LINES bytes of memory.

Security: nothing from the name reaches the protocol unescaped. Dovecot's own
rule applies on its side: a listener with mode 0666 answers a client only about
users with the client's own uid, so the relay's lookup child (another uid) needs a
listener it may use without that restriction (docs/userdb.md).
"""

import os

from mailslot import errors
from mailslot.userdb.common import printable, setting

AUTH_MASTER_PROTOCOL_MAJOR = 1      # AUTH_MASTER_PROTOCOL_MAJOR_VERSION
AUTH_MASTER_PROTOCOL_MINOR = 0
# auth-master.c MAX_INBUF_SIZE: the longest reply line a client accepts.
MAX_REPLY_LINE = 8192
# Lines a lookup reads in all: Dovecot sends VERSION, SPID, then the reply (3); more
# than this is a server streaming handshakes (issue 20.5), not Dovecot.
MAX_REPLY_LINES = 16
SERVICE = "lda"
REQUEST_ID = "1"
# Dovecot's default base_dir, for a relative auth_socket_path ("auth-userdb").
DOVECOT_BASE_DIR = "/var/run/dovecot"

_ESCAPES = {"\0": "\x010", "\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n"}
_UNESCAPES = {"0": "\0", "1": "\x01", "t": "\t", "r": "\r", "n": "\n"}


def lookup_dovecot(name, args, values, warnings, settings):
    """Ask Dovecot's auth service about name; return its fields or None."""
    path = args.strip() or setting(settings, "auth_socket_path")
    if not path.startswith("/"):
        path = f"{DOVECOT_BASE_DIR}/{path}"
    if not name or any(c in name for c in "\t\r\n\0"):
        return None
    request = (f"VERSION\t{AUTH_MASTER_PROTOCOL_MAJOR}\t{AUTH_MASTER_PROTOCOL_MINOR}\n"
               f"USER\t{REQUEST_ID}\t{tab_escape(name)}\tservice={SERVICE}\n")
    where = f"userdb dovecot {path}"
    reply = _exchange(path, request.encode("utf-8", "surrogateescape"),
                      setting(settings, "userdb_timeout"), where)
    return parse_reply(reply, name, where)



def tab_escape(text):
    """Dovecot's str_tabescape (NUL included, as str_append_tabescaped_n does)."""
    if not any(c in text for c in _ESCAPES):
        return text
    return "".join(_ESCAPES.get(c, c) for c in text)


def tab_unescape(text):
    """Undo tab_escape; a 0x01 before an unknown letter stands for that letter."""
    if "\x01" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\x01" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_reply(lines, name, where):
    """Turn the server's lines (handshake, then the reply) into fields or None."""
    if not lines or not lines[0].startswith("VERSION\t"):
        raise errors.UserdbError(f"{where}: the server did not start with VERSION")
    version = lines[0].split("\t")
    if len(version) < 3 or version[1] != str(AUTH_MASTER_PROTOCOL_MAJOR) \
            or not version[2].isdigit():
        raise errors.UserdbError(f"{where}: auth-master protocol version "
                                 f"{_shown(lines[0])} is not {AUTH_MASTER_PROTOCOL_MAJOR}")
    replies = [line for line in lines[1:] if not line.startswith("SPID\t")]
    if not replies:
        raise errors.UserdbError(f"{where}: no reply to the USER request")
    args = [tab_unescape(arg) for arg in replies[0].split("\t")]
    command = args[0]
    if len(args) < 2 or args[1] != REQUEST_ID:
        raise errors.UserdbError(f"{where}: reply for another request: {_shown(replies[0])}")
    if command == "NOTFOUND":
        return None
    if command == "FAIL":
        reason = next((a[len("reason="):] for a in args[2:] if a.startswith("reason=")), "")
        raise errors.UserdbError(
            f"{where}: Dovecot's auth service could not look up {_shown(name)}"
            + (f": {_shown(reason)}" if reason else
               " (see Dovecot's log; a listener with mode 0666 answers a uid only "
               "about users with that uid)"))
    if command != "USER":
        raise errors.UserdbError(f"{where}: unknown reply {_shown(command)}")
    if len(args) < 3 or not args[2]:
        raise errors.UserdbError(f"{where}: Userdb lookup failed: "
                                 "Lookup didn't return username")
    fields = {"user": args[2]}
    for arg in args[3:]:
        if arg:
            key, _, value = arg.partition("=")
            fields[key] = value
    return fields


def _exchange(path, request, timeout, where):
    """Send request, return the reply's lines up to the USER/NOTFOUND/FAIL line."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(request)
            return _read_reply(sock, deadline, where)
        except socket.timeout:
            raise errors.UserdbError(f"{where}: no answer within {timeout} s") from None
        except FileNotFoundError:
            raise errors.UserdbError(
                f"{where}: the socket does not exist (is Dovecot running? "
                "auth_socket_path names it)") from None
        except ConnectionRefusedError:
            raise errors.UserdbError(f"{where}: nothing listens there (is Dovecot "
                                     "running?)") from None
        except PermissionError:
            raise errors.UserdbError(
                f"{where}: permission denied for uid {os.getuid()} (the auth-userdb "
                "listener's mode, user and group decide who may connect)") from None
        except OSError as exc:
            raise errors.UserdbError(f"{where}: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _read_reply(sock, deadline, where):
    import socket
    import time

    lines, buffer = [], b""
    while True:
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            if len(raw) > MAX_REPLY_LINE:
                raise errors.UserdbError(
                    f"{where}: reply line longer than {MAX_REPLY_LINE} bytes")
            line = raw.decode("utf-8", "surrogateescape")
            lines.append(line)
            if not line.startswith(("VERSION\t", "SPID\t")):
                return lines
            if len(lines) >= MAX_REPLY_LINES:
                raise errors.UserdbError(
                    f"{where}: more than {MAX_REPLY_LINES} lines without a reply "
                    f"to the USER request")
        if len(buffer) > MAX_REPLY_LINE:
            raise errors.UserdbError(f"{where}: reply line longer than {MAX_REPLY_LINE} bytes")
        # One deadline for the whole answer: a server that keeps sending must not
        # renew it (each recv() alone would wait its own timeout).
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        sock.settimeout(left)
        chunk = sock.recv(MAX_REPLY_LINE)
        if not chunk:
            raise errors.UserdbError(f"{where}: the auth service closed the connection "
                                     "before answering")
        buffer += chunk


def _shown(text):
    """A protocol line or value for a message: bounded, control characters escaped."""
    return printable(text)
