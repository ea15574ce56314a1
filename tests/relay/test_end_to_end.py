"""End to end: MTA uid -> mailslot-relay -> the installed engine -> a user's Maildir.

The real chain: the relay installed setuid root (a test copy), the engine installed
by `make install` into a temp DESTDIR (the `installed` fixture of tests/conftest.py),
Debian's python3 -I -S, and two target users whose Maildirs must end up holding the
message, owned by each of them. The engine checks the relay's promise on start.
"""
import os
import shutil
import stat

import pytest

from tests.relay.relaytest import ALICE, BOB, LOOKUP, MTA, OUTSIDER, assert_refused
from tests.support import run_as

MSG = (b"From: Sender <s@example.org>\nTo: rcpt@example.org\nSubject: via relay\n"
       b"Message-ID: <relay-e2e@example.org>\n\nDelivered through mailslot-relay.\n")


@pytest.fixture
def chain(relay, installed):
    conf = relay.etc / "mailslot.yaml"
    conf.write_text("mail_location: maildir:~/Maildir\nlog_path: ~/mailslot.log\n"
                    "hostname: relay.example.org\nfirst_valid_uid: 100\n")
    os.chmod(conf, 0o644)
    relay.write_policy(entry=os.path.join(installed, "mailslot-lda"), caller_config="yes")
    for user in (ALICE, BOB):
        home = relay.homes / user
        for sub in ("Maildir", "mailslot.log"):
            path = home / sub
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    relay.conf = conf
    relay.engine_path = os.path.join(installed, "mailslot-lda")
    return relay


def maildir_new(relay, user):
    new = relay.homes / user / "Maildir" / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


@pytest.mark.parametrize("user", [ALICE, BOB])
def test_message_lands_in_the_targets_maildir_owned_by_the_target(chain, user):
    proc = chain.run(["-d", user, "-c", str(chain.conf), "-f", "s@example.org"], input=MSG)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    files = maildir_new(chain, user)
    assert len(files) == 1
    st = os.stat(files[0])
    assert (st.st_uid, st.st_gid) == (chain.uid(user), chain.gid(user))
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    assert files[0].read_bytes() == MSG
    other = BOB if user == ALICE else ALICE
    assert maildir_new(chain, other) == []


def test_outsider_cannot_deliver_through_the_chain(chain):
    proc = chain.run(["-d", ALICE, "-c", str(chain.conf)], user=OUTSIDER, input=MSG)
    assert_refused(proc, 77, "caller-not-allowed")
    assert maildir_new(chain, ALICE) == []


def test_engine_refuses_a_forged_promise_without_the_relay(chain):
    # Run the engine directly as the MTA's uid, claiming to be alice: the promise
    # check compares with the kernel's ids and fails with 75; nothing is written.
    entry = chain.accounts[MTA]
    env = {"MAILSLOT_RELAY_USER": ALICE, "MAILSLOT_RELAY_UID": str(chain.uid(ALICE)),
           "MAILSLOT_RELAY_GID": str(chain.gid(ALICE)),
           "MAILSLOT_RELAY_GROUPS": str(chain.gid(ALICE)),
           "MAILSLOT_RELAY_HOME": str(chain.homes / ALICE)}
    proc = run_as(entry, [chain.engine_path, "-d", ALICE, "-c", str(chain.conf)],
                  input=MSG, env=env)
    assert proc.returncode == 75, proc.stderr
    assert b"relay promise" in proc.stderr, proc.stderr
    assert maildir_new(chain, ALICE) == []


def test_lookup_resolver_with_the_engines_lookup_mode(chain):
    # The relay forks a child as the lookup user running `mailslot-lda --lookup USER`
    # (default settings: the passwd userdb), validates its answer, then delivers.
    chain.write_policy(entry=chain.engine_path, caller_config="yes", resolver="lookup",
                       lookup_user=LOOKUP, lookup_entry=chain.engine_path)
    proc = chain.run(["-d", BOB, "-c", str(chain.conf)], input=MSG)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    files = maildir_new(chain, BOB)
    assert len(files) == 1 and os.stat(files[0]).st_uid == chain.uid(BOB)
    unknown = chain.run(["-d", "mslt-nobody-here", "-c", str(chain.conf)], input=MSG)
    assert_refused(unknown, 67, "unknown-user")


def test_relay_and_engine_agree_on_a_mixed_case_name(chain):
    # username_format = %Lu in the relay, the engine's default auth_username_format
    # (%Lu): "-d MSLT-RBOB" reaches bob's Maildir, resolved once by each side.
    chain.write_policy(entry=chain.engine_path, caller_config="yes", username_format="%Lu")
    proc = chain.run(["-d", BOB.upper(), "-c", str(chain.conf)], input=MSG)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    files = maildir_new(chain, BOB)
    assert len(files) == 1 and os.stat(files[0]).st_uid == chain.uid(BOB)
    assert files[0].read_bytes() == MSG
    log = (chain.homes / BOB / "mailslot.log").read_text()
    assert BOB in log and BOB.upper() not in log
    # Without the setting the relay compares byte for byte, and refuses the name.
    chain.write_policy(entry=chain.engine_path, caller_config="yes")
    assert_refused(chain.run(["-d", BOB.upper(), "-c", str(chain.conf)], input=MSG), 67,
                   "unknown-user")
    assert len(maildir_new(chain, BOB)) == 1


def test_a_detail_reaches_the_user_and_sieve_sees_it(chain):
    # recipient_delimiter = + in the relay: "-d MSLT-RBOB+Lists" is resolved as bob,
    # the engine gets "-d mslt-rbob+lists", strips the detail itself (its own
    # recipient_delimiter, default +), finds bob again, passes its uid check, and
    # its Sieve sees the detail in the envelope (no -a/-r given).
    chain.write_policy(entry=chain.engine_path, caller_config="yes", username_format="%Lu",
                       recipient_delimiter="+")
    script = chain.homes / BOB / ".dovecot.sieve"
    script.write_text('require ["fileinto", "envelope", "subaddress"];\n'
                      'if envelope :detail "to" "lists" { fileinto "Lists"; }\n')
    os.chown(script, chain.uid(BOB), chain.gid(BOB))
    try:
        proc = chain.run(["-d", BOB.upper() + "+Lists", "-c", str(chain.conf)], input=MSG)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        lists = chain.homes / BOB / "Maildir" / ".Lists" / "new"
        files = sorted(lists.iterdir()) if lists.is_dir() else []
        assert len(files) == 1 and os.stat(files[0]).st_uid == chain.uid(BOB)
        assert files[0].read_bytes() == MSG
        assert maildir_new(chain, BOB) == []
        # Without a detail, the same script keeps the message in INBOX.
        proc = chain.run(["-d", BOB, "-c", str(chain.conf)], input=MSG)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert len(maildir_new(chain, BOB)) == 1
        # Only a detail: no user, a bounce (67) before the engine runs.
        assert_refused(chain.run(["-d", "+lists", "-c", str(chain.conf)], input=MSG), 67,
                       "unknown-user")
        # Without the key the relay resolves "mslt-rbob+lists" byte for byte: 67.
        chain.write_policy(entry=chain.engine_path, caller_config="yes",
                           username_format="%Lu")
        assert_refused(chain.run(["-d", BOB + "+lists", "-c", str(chain.conf)], input=MSG),
                       67, "unknown-user")
    finally:
        script.unlink()
        shutil.rmtree(chain.homes / BOB / "Maildir" / ".Lists", ignore_errors=True)
