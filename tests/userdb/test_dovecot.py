"""The dovecot userdb: a real Dovecot auth service, and the protocol's edge cases.

Against a private Dovecot from Debian's packages (conftest.dovecot_auth), lookups
run as nobody in Debian's python3 -I -S, as the engine and the relay's lookup child
do. Replies a real Dovecot never sends (broken versions, foreign ids, over-long
lines, silence) come from a scripted unix socket.
"""

import os
import time

import pytest

from mailslot import errors, userdb
from mailslot.userdb.dovecot import tab_escape, tab_unescape
from tests.support import needs_root, world_tempdir
from tests.userdb.conftest import NOBODY_UID
from tests.userdb.servers import ChattyServer, SilentServer, lookup_as


def dovecot(path=""):
    return [{"driver": "dovecot", "args": path}]


# --- against the real auth service ----------------------------------------------------

@needs_root
def test_found_user_with_extra_fields(dovecot_auth):
    out = lookup_as("dvann", dovecot(dovecot_auth.open_socket))
    assert out["found"], out
    assert (out["name"], out["uid"], out["gid"], out["home"]) == (
        "dvann", 5200, 5200, "/var/vmail/dvann")
    assert out["fields"] == {"mail": "maildir:~/Mail", "quota_rule": "*:storage=2G",
                             "sieve_after": "/etc/after.sieve"}
    assert out["source"] == "userdb dovecot"


@needs_root
def test_socket_path_comes_from_auth_socket_path(dovecot_auth):
    out = lookup_as("dvbob@example.org", dovecot(),
                    {"auth_socket_path": dovecot_auth.open_socket})
    assert (out["uid"], out["gid"], out["home"]) == (5201, 5202,
                                                     "/var/vmail/example.org/dvbob")


@needs_root
def test_dovecot_normalises_the_name_it_returns(dovecot_auth):
    out = lookup_as("DvAnn", dovecot(dovecot_auth.open_socket))
    assert out["name"] == "dvann" and out["uid"] == 5200


@needs_root
def test_unknown_user_falls_through(dovecot_auth):
    dbs = dovecot(dovecot_auth.open_socket)
    assert lookup_as("nobody-here", dbs)["found"] is False
    chained = dbs + [{"driver": "static", "args": "uid=7 gid=7 home=/s/%u allow_all_users"}]
    assert lookup_as("nobody-here", chained)["home"] == "/s/nobody-here"


@needs_root
def test_user_without_ids_is_temporary(dovecot_auth):
    out = lookup_as("noids", dovecot(dovecot_auth.open_socket))
    assert (out["error"], out["exit"]) == ("UserdbError", 75)
    assert "no valid uid" in out["message"]


@needs_root
def test_mode_0666_listener_answers_only_about_the_callers_uid(dovecot_auth):
    # Dovecot's rule: another uid's user is refused with FAIL -- a temporary failure.
    out = lookup_as("dvann", dovecot(dovecot_auth.own_socket))
    assert (out["error"], out["exit"]) == ("UserdbError", 75), out
    assert "mode 0666" in out["message"]
    own = lookup_as("own", dovecot(dovecot_auth.own_socket))
    assert own["uid"] == NOBODY_UID


@needs_root
def test_permission_denied_is_temporary(dovecot_auth):
    out = lookup_as("dvann", dovecot(dovecot_auth.private_socket))
    assert (out["error"], out["exit"]) == ("UserdbError", 75)
    assert "permission denied for uid" in out["message"]


@needs_root
@pytest.mark.parametrize("name", ["dvann'", "dvann;", "dv%ann", "dvann\x01t", "dv ann",
                                  "dvann\tuid=0", "dvann\nUSER\t2\troot", "dvann\0"])
def test_hostile_names_reach_dovecot_escaped_or_not_at_all(dovecot_auth, name):
    out = lookup_as(name, dovecot(dovecot_auth.open_socket))
    assert out["found"] is False, out
    assert "Panic" not in dovecot_auth.read_log() and "BUG" not in dovecot_auth.read_log()


PARITY_NAMES = ["dvann", "DVANN", "DvBob@Example.ORG", "dvbob@example.org", "dv ann",
                "dvann;", "dvann+x", "d\u00e9", "dvann@", "@", "own", "Own", "no-one"]


@needs_root
@pytest.mark.parametrize("name", PARITY_NAMES)
def test_username_normalisation_matches_dovecots(dovecot_auth, name):
    # Dovecot normalises on its side; mailslot must reach the same user (or none)
    # from the same passwd-file.
    raw = {"auth_username_chars": "", "auth_username_format": ""}
    theirs = lookup_as(name, dovecot(dovecot_auth.open_socket), raw)
    try:
        normal = userdb.normalize_username(name)
    except errors.UserUnknownError:
        ours = None
    else:
        user = userdb.lookup(normal, [{"driver": "passwd-file",
                                       "args": os.path.join(dovecot_auth.base, "users")}])
        ours = None if user is None else user.name
    assert (theirs["name"] if theirs["found"] else None) == ours


# --- the protocol, against a scripted socket -----------------------------------------

@pytest.fixture
def scripted():
    base = world_tempdir("mailslot-dvscript-")
    servers = []

    def start(reply=b"", close=False):
        server = SilentServer(os.path.join(base, f"s{len(servers)}"), reply, close)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    import shutil
    shutil.rmtree(base, ignore_errors=True)


HELLO = b"VERSION\t1\t2\nSPID\t4242\n"


def ask(server, name="ann", timeout=2):
    return userdb.lookup(name, dovecot(server.path), settings={"userdb_timeout": timeout})


def test_request_is_dovecot_lda_shaped_and_escaped(scripted):
    server = scripted(HELLO + b"NOTFOUND\t1\n")
    assert ask(server, "a\x01b") is None
    assert server.received == [b"VERSION\t1\t0\nUSER\t1\ta\x011b\tservice=lda\n"]


def test_reply_values_are_unescaped(scripted):
    server = scripted(HELLO + b"USER\t1\tann\x01tx\tuid=5000\tgid=5001\thome=/h\t"
                              b"mail=maildir:/m\x01n\x011\x010\tflag\tquota_rule=*:bytes=1\n")
    user = ask(server)
    assert (user.name, user.uid, user.gid, user.home) == ("ann\tx", 5000, 5001, "/h")
    assert user.fields == {"mail": "maildir:/m\n\x01\0", "flag": "",
                           "quota_rule": "*:bytes=1"}


@pytest.mark.parametrize("reply,words", [
    (b"VERSION\t2\t0\nNOTFOUND\t1\n", ["protocol version", "is not 1"]),
    (b"NOTFOUND\t1\n", ["did not start with VERSION"]),
    (HELLO + b"NOTFOUND\t2\n", ["another request"]),
    (HELLO + b"USER\t7\troot\tuid=0\n", ["another request"]),
    (HELLO + b"WHAT\t1\n", ["unknown reply WHAT"]),
    (HELLO + b"FAIL\t1\treason=ldap\x01tdown\n", ["could not look up ann", "ldap\\x09down"]),
    (HELLO + b"FAIL\t1\n", ["could not look up ann", "Dovecot's log"]),
    (HELLO + b"USER\t1\t\tuid=5\n", ["didn't return username"]),
    (HELLO + b"USER\t1\tann\tuid=5\tgid=5\thome=/" + b"x" * 9000 + b"\n", ["longer than 8192"]),
])
def test_broken_replies_are_temporary(scripted, reply, words):
    with pytest.raises(errors.UserdbError) as info:
        ask(scripted(reply))
    for word in words:
        assert word in str(info.value)
    assert errors.exit_code_for(info.value) == errors.EX_TEMPFAIL


def test_closed_connection_is_temporary(scripted):
    with pytest.raises(errors.UserdbError) as info:
        ask(scripted(HELLO, close=True))
    assert "closed the connection" in str(info.value)


@pytest.mark.parametrize("reply", [b"", HELLO, b"VERSION\t1\t0\nSPID\t1\nUSER\t1\tann"])
def test_silence_gives_75_within_the_timeout(scripted, reply):
    start = time.monotonic()
    with pytest.raises(errors.UserdbError) as info:
        ask(scripted(reply), timeout=1)
    elapsed = time.monotonic() - start
    assert "no answer within 1 s" in str(info.value)
    assert 0.9 <= elapsed < 3


@pytest.mark.parametrize("kind", ["stream", "drip", "lines"])
def test_chatty_server_is_bounded_in_time_and_memory(tmp_path, kind):
    """Issue 20.5: a server streaming SPID lines (or dripping them a byte at a time)
    held a delivery 30 s and 4.7 GB. One deadline for the whole lookup and a bound
    on lines: the lookup fails (75) within the timeout, its peak RSS barely moves."""
    import resource
    path = str(tmp_path / "auth")
    server = ChattyServer(path, drip=0.05 if kind == "drip" else None,
                          line=b"SPID\t1\n" if kind != "lines" else b"SPID\t" + b"9" * 8000 + b"\n")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        try:
            userdb.lookup("ann", dovecot(path), settings={"userdb_timeout": 1})
            result = "found"
        except errors.UserdbError as exc:
            result = str(exc)
        elapsed = time.monotonic() - start
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        os.write(write_end, f"{elapsed}\t{grown}\t{result}".encode())
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    server.close()
    with os.fdopen(read_end, "rb") as f:
        report = f.read().decode()
    assert report, "the lookup did not end within 15 s"
    elapsed, grown_kib, message = report.split("\t", 2)
    assert float(elapsed) < 2.5, report
    assert int(grown_kib) < 8 * 1024, report        # KiB: under 8 MiB more than before
    want = "no answer within 1 s" if kind == "drip" else "more than 16 lines"
    assert want in message, report


def test_missing_socket_and_nothing_listening(tmp_path):
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", dovecot(str(tmp_path / "absent")))
    assert "does not exist" in str(info.value)
    import socket
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale"))
    stale.close()                  # the file stays, nobody listens
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", dovecot(str(tmp_path / "stale")))
    assert "nothing listens" in str(info.value)


def test_relative_path_is_under_dovecots_base_dir(scripted):
    with pytest.raises(errors.UserdbError) as info:
        userdb.lookup("ann", dovecot("no-such-mailslot-test-socket"))
    assert "/var/run/dovecot/no-such-mailslot-test-socket" in str(info.value)


@pytest.mark.parametrize("name", ["a\tb", "a\nb", "a\rb", "a\0b", ""])
def test_names_that_cannot_be_sent_are_unknown_without_asking(scripted, name):
    server = scripted(HELLO + b"USER\t1\tx\tuid=5\tgid=5\n")
    assert ask(server, name) is None
    assert server.received == []


@pytest.mark.parametrize("text", ["plain", "t\tab", "n\nl", "c\rr", "one\x01", "nul\0",
                                  "\x01t literal"])
def test_tab_escape_round_trip(text):
    escaped = tab_escape(text)
    assert not any(c in escaped for c in "\t\r\n\0")
    assert tab_unescape(escaped) == text
