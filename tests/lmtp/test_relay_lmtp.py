"""Multi-uid LMTP: recipients of other uids delivered through the real setuid relay.

The installed mailslot-lmtpd runs as an unprivileged uid whose group is the relay's
caller group; lmtp_relay_path names a mailslot-relay built for this test (its policy
path compiled in, installed 4750 root:<caller group> by `make install`). One
transaction: two recipients with uids of their own (delivered by the relay, one
engine start each, files owned by each uid), one of the server's own uid (delivered
in-process), one unknown (550 at RCPT).
"""

import grp
import os
import shutil
import subprocess
import time

import pytest

from tests.support import REPO, free_uid, needs_root, world_tempdir
from tests.lmtp.lmtpsite import Client

pytestmark = needs_root
CALLER_GROUP = "mslt-lmtprelay"


def _group():
    try:
        return grp.getgrnam(CALLER_GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "-r", CALLER_GROUP], check=True)
        return grp.getgrnam(CALLER_GROUP).gr_gid


def _root_file(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, 0, 0)
    os.chmod(path, 0o644)


@pytest.fixture
def site():
    base = world_tempdir("mailslot-lmtp-relay-")
    gid = _group()
    server = free_uid(4800)
    t1 = free_uid(server + 1)
    t2 = free_uid(t1 + 1)
    etc, root = os.path.join(base, "etc"), os.path.join(base, "root")
    os.mkdir(etc, 0o755)
    subprocess.run(["make", "-s", "install", f"DESTDIR={root}", "PREFIX=/usr",
                    f"OUT={os.path.join(base, 'build')}",
                    f"POLICY_PATH={os.path.join(etc, 'relay.policy')}",
                    f"RELAY_GROUP={CALLER_GROUP}"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    lib = os.path.join(root, "usr/lib/mailslot")
    homes = {}
    # q1/q2 (relayed, t1's uid) and qown (in-process) have a 1 KB quota; q2 with
    # quota_full_tempfail.
    quota = "userdb_quota_rule=*:storage=1k"
    people = (("t1", t1, ""), ("t2", t2, ""), ("own", server, ""), ("q1", t1, quota),
              ("q2", t1, quota + " userdb_quota_full_tempfail=yes"),
              ("qown", server, quota))
    for name, uid, _ in people:
        homes[name] = os.path.join(base, "home-" + name)
        os.mkdir(homes[name], 0o700)
        os.chown(homes[name], uid, gid if uid == server else uid)
    users = os.path.join(etc, "users")
    _root_file(users, "".join(
        f"{n}@example.org::{u}:{gid if u == server else u}::{homes[n]}::{extra}\n"
        for n, u, extra in people))
    run = os.path.join(base, "run")
    os.mkdir(run, 0o755)
    os.chown(run, server, gid)
    settings = os.path.join(etc, "mailslot.yaml")
    _root_file(settings, f"mail_location: maildir:~/Maildir\nlog_path: ~/mailslot.log\n"
                         f"hostname: relay.test\nfirst_valid_uid: 100\n"
                         f"lmtp_listen: unix:{run}/lmtp\n"
                         f"lmtp_relay_path: {lib}/mailslot-relay\n"
                         f"userdb:\n  - driver: passwd-file\n    args: {users}\n")
    _root_file(os.path.join(etc, "relay.policy"),
               f"caller_groups = {CALLER_GROUP}\ntarget_uids = {t1},{t2}\n"
               f"target_gids = {t1},{t2}\ninterpreter = /usr/bin/python3\n"
               f"entry = {lib}/mailslot-lda\nresolver = passwd-file\n"
               f"passwd_file = {users}\ncaller_config = yes\n")
    subprocess.run([os.path.join(lib, "mailslot"), "config", "-c", settings], check=True,
                   stdout=subprocess.DEVNULL)
    err_path = os.path.join(base, "lmtpd.err")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={server}", f"--regid={gid}", f"--groups={gid}", "--",
             os.path.join(lib, "mailslot-lmtpd"), "-c", settings, "--foreground"],
            stderr=err, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"}, cwd=base)
    sock = os.path.join(run, "lmtp")
    deadline = time.time() + 20
    while not os.path.exists(sock):
        assert proc.poll() is None and time.time() < deadline, open(err_path).read()
        time.sleep(0.05)
    yield {"sock": sock, "homes": homes, "uids": {"t1": t1, "t2": t2, "own": server},
           "err": err_path}
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(base, ignore_errors=True)


def test_other_uids_through_the_relay_own_uid_in_process(site):
    c = Client.unix(site["sock"])
    c.hello()
    rcpt, final = c.transaction("s@example.net", ["t1@example.org", "nosuch@example.org",
                                                  "t2@example.org", "own@example.org"],
                                b"Subject: multi-uid\n\nhello\n")
    assert rcpt[1] == ("550 5.1.1 <nosuch@example.org> User doesn't exist: "
                       "nosuch@example.org")
    assert final == [f"250 2.0.0 <{n}@example.org> Saved" for n in ("t1", "t2", "own")], \
        open(site["err"]).read()
    for name in ("t1", "t2", "own"):
        new = os.path.join(site["homes"][name], "Maildir", "new")
        (entry,) = os.listdir(new)
        path = os.path.join(new, entry)
        assert os.stat(path).st_uid == site["uids"][name]
        with open(path, "rb") as f:
            data = f.read()
        # The LMTP lines reach the relayed copies too; then the message, unchanged.
        assert data.startswith(b"Return-Path: <s@example.net>\nReceived: from client.test\n")
        assert data.endswith(b"Subject: multi-uid\n\nhello\n")


def test_over_quota_through_the_relay_answers_as_in_process(site):
    """Over quota is the recipient's reply, whichever path delivers it: 552 5.2.2
    (452 4.2.2 with quota_full_tempfail), never a 250 with a DSN mailed behind it
    (the relay runs the engine with -e; relayed.engine_reply maps its exit code
    and reason through errors.py's table)."""
    c = Client.unix(site["sock"])
    c.hello()
    body = b"Subject: big\n\n" + b"x" * 75 + b"\n"
    rcpt, final = c.transaction("s@example.net", ["q1@example.org", "qown@example.org",
                                                  "q2@example.org", "t1@example.org"],
                                body * 40)
    assert rcpt == ["250 2.1.5 OK"] * 4
    err = open(site["err"]).read()
    text = "Quota exceeded (mailbox for user is full)"
    assert final == [f"552 5.2.2 <q1@example.org> {text}",
                     f"552 5.2.2 <qown@example.org> {text}",
                     f"452 4.2.2 <q2@example.org> {text}",
                     "250 2.0.0 <t1@example.org> Saved"], err
    for name in ("q1", "qown", "q2"):
        new = os.path.join(site["homes"][name], "Maildir", "new")
        assert not os.path.isdir(new) or not os.listdir(new)


def test_engine_reply_maps_exit_codes_through_the_one_table():
    from mailslot.lmtp.relayed import engine_reply
    settings = {"quota_exceeded_message": "Over!"}
    cases = [(0, "", "250 2.0.0 <a@x> Saved"),
             (67, "mailslot-lda: no such user", "550 5.1.1 <a@x> no such user"),
             (77, "mailslot-lda: not wanted", "550 5.7.1 <a@x> not wanted"),
             (77, "mailslot-lda: Over!", "552 5.2.2 <a@x> Over!"),
             (75, "mailslot-lda: Over!", "452 4.2.2 <a@x> Over!"),
             (75, "mailslot-lda: disk on fire", "451 4.3.0 <a@x> disk on fire"),
             (70, "", "451 4.3.0 <a@x> mailslot-relay exited 70"),
             (77, "mailslot-relay: caller not allowed\x1b[0m",
              "550 5.7.1 <a@x> mailslot-relay: caller not allowed?[0m")]
    for code, text, reply in cases:
        assert engine_reply(code, text, "a@x", settings) == reply
