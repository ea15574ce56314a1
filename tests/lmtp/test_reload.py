"""SIGHUP and mailslot-lmtpd (issue 17, item 8), with one process and with workers.

test_server.py and test_server_processes.py check that a reload changes the
settings of the next transaction and that a file that does not load is logged;
here what a reload must not change:

  - a transaction under way when SIGHUP comes finishes with the settings it began
    with (a half-sent message to bob+lists lands in INBOX although the reload turned
    lmtp_save_to_detail_mailbox on), the next one uses the new ones (also a new
    mail_location and log_path);
  - lmtp_user_concurrency_limit still counts the deliveries under way: a reload
    made a new settings generation whose count started at zero, so one process let
    a second delivery to the same user through during the first (fixed in
    lmtp/server.py Server.reload; the workers' shared slots were never affected);
  - a settings file that does not load (bad YAML, an unknown setting, a bad value)
    is logged naming the file and the cause, and every process keeps delivering
    with the old settings, also a worker started later to replace one that died
    (it had the settings of the start);
  - a SIGHUP right after the daemon began listening is a reload, not its death.
"""

import os
import re
import signal
import time

import pytest

from tests.support import needs_root
from tests.lmtp.lmtpsite import Client, Site, assert_alice_over_the_limit, workers

pytestmark = needs_root

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"
PROCESSES = {"one-process": "", "workers": "lmtp_processes: 2\n"}
RELOAD_TIMEOUT = 20


def _start(extra, processes, location="maildir:~/Maildir"):
    site = Site.create(extra=PROCESSES[processes] + extra, location=location)
    if location.startswith("mbox"):
        for name in ("alice", "bob"):
            os.makedirs(os.path.join(site.home(name), "mail"))
            os.chown(os.path.join(site.home(name), "mail"), site.uid, site.uid)
    site.start()
    return site


def _lines(site, processes, word):
    """The log lines with `word` from the processes that serve (with workers, the
    workers' lines, not the parent's)."""
    return [line for line in site.stderr().splitlines() if word in line and
            (processes != "workers" or re.search(r"worker \d+: ", line))]


def _reloaded(site, processes, word):
    """SIGHUP, then wait until every process that serves logged `word` (the count of
    such lines grows by one per serving process)."""
    before = len(_lines(site, processes, word))
    want = before + (2 if processes == "workers" else 1)
    if processes == "workers":
        _wait(lambda: len(site.children()) == 2, site)
    site.signal(signal.SIGHUP)
    _wait(lambda: len(_lines(site, processes, word)) >= want, site)


def _wait(cond, site, timeout=RELOAD_TIMEOUT):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, site.stderr()
        time.sleep(0.05)


@pytest.mark.parametrize("processes", sorted(PROCESSES))
def test_a_transaction_under_way_finishes_with_its_settings(processes):
    site = _start("", processes)
    try:
        busy = Client.unix(site.socket)
        busy.hello()
        busy.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<bob+lists@example.org>\r\nDATA\r\n")
        assert busy.replies(3)[-1] == "354 OK"
        busy.send(b"Subject: half\r\n\r\nfirst half\r\n")
        with open(site.conf, "a") as f:
            f.write("lmtp_save_to_detail_mailbox: yes\n")
        _reloaded(site, processes, "settings reloaded")
        busy.send(b"second half\r\n.\r\n")
        assert busy.reply() == "250 2.0.0 <bob+lists@example.org> Saved"
        (old,) = site.messages("bob")           # the old settings: no detail mailbox
        assert old.endswith(b"first half\nsecond half\n")
        assert site.messages("bob", ".lists") == []
        # The next transaction, on the same connection and on a new one: the new ones.
        for client in (busy, Client.unix(site.socket)):
            if client is not busy:
                client.hello()
            _, final = client.transaction("s@x", ["bob+lists@example.org"], MSG)
            assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
        assert len(site.messages("bob", ".lists")) == 2
        assert len(site.messages("bob")) == 1
    finally:
        site.cleanup()


@pytest.mark.parametrize("processes", sorted(PROCESSES))
def test_user_concurrency_limit_holds_across_a_reload(processes):
    """Limit 1, alice's delivery waiting for her mbox lock (ours) when SIGHUP comes:
    after the reload a second delivery to alice is still 451 4.3.0 (one process
    answered 250 before the fix: the new generation's count was empty). Once the
    first ends, alice is accepted again (the count went back down, nothing leaked)."""
    site = _start("lmtp_user_concurrency_limit: 1\n", processes,
                  location="mbox:~/mail:INBOX=~/mail/inbox")
    try:
        lock = os.path.join(site.home("alice"), "mail", "inbox.lock")
        with open(lock, "w") as f:
            f.write("0")
        first = Client.unix(site.socket)
        first.hello()
        first.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        assert first.replies(3)[-1] == "354 OK"
        first.send(b"Subject: one\r\n\r\n1\r\n.\r\n")
        second = Client.unix(site.socket)
        second.hello()
        # The first delivery is under way (counted) before the reload.
        assert_alice_over_the_limit(second)
        second.send(b"RSET\r\n")
        assert second.reply() == "250 2.0.0 OK"
        with open(site.conf, "a") as f:
            f.write("lmtp_save_to_detail_mailbox: yes\n")     # any change
        _reloaded(site, processes, "settings reloaded")
        for client in (second, Client.unix(site.socket)):
            if client is not second:
                client.hello()
            assert_alice_over_the_limit(client, timeout=0)
            client.send(b"RSET\r\n")
            assert client.reply() == "250 2.0.0 OK"
        os.unlink(lock)
        assert first.reply() == "250 2.0.0 <alice@example.org> Saved"
        # Freed: alice is accepted again, by whichever process serves.
        deadline = time.time() + RELOAD_TIMEOUT
        while True:
            second.send(b"MAIL FROM:<s@x>\r\nRCPT TO:<alice@example.org>\r\n")
            replies = second.replies(2)
            second.send(b"RSET\r\n")
            assert second.reply() == "250 2.0.0 OK"
            if replies[1] == "250 2.1.5 OK" or time.time() > deadline:
                break
            time.sleep(0.1)
        assert replies == ["250 2.1.0 OK", "250 2.1.5 OK"]
    finally:
        site.cleanup()


BROKEN = {
    "yaml": ("lmtp_save_to_detail_mailbox: [yes\n", None),
    "unknown-setting": ("no_such_setting: 1\n", "no_such_setting"),
    "bad-value": ("lmtp_user_concurrency_limit: lots\n", "lmtp_user_concurrency_limit"),
}


@pytest.mark.parametrize("processes", sorted(PROCESSES))
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_settings_file_keeps_the_old_settings(processes, kind):
    """Logged as "reload failed, keeping the old settings:" with the file's cause,
    by every process; the daemon delivers on with the settings it had (no detail
    mailbox), and a good file later is taken."""
    site = _start("", processes)
    try:
        text, named = BROKEN[kind]
        with open(site.conf) as f:
            good = f.read()
        with open(site.conf, "a") as f:
            f.write("lmtp_save_to_detail_mailbox: yes\n" + text)
        _reloaded(site, processes, "reload failed, keeping the old settings:")
        failed = [line for line in site.stderr().splitlines() if "reload failed" in line]
        # With workers the parent logs it too (it keeps the old settings as well).
        assert len(failed) == (3 if processes == "workers" else 1), failed
        for line in failed:
            # The file and the line, then the cause ("invalid YAML: ...", the setting).
            assert f"keeping the old settings: {site.conf} line " in line, line
            assert (named or "invalid YAML") in line, line
        assert site.proc.poll() is None
        for _ in range(4):                  # with workers: likely both of them
            c = Client.unix(site.socket)
            c.hello()
            _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
            assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
        assert len(site.messages("bob")) == 4 and site.messages("bob", ".lists") == []
        with open(site.conf, "w") as f:
            f.write(good + "lmtp_save_to_detail_mailbox: yes\n")
        _reloaded(site, processes, "settings reloaded")
        c = Client.unix(site.socket)
        c.hello()
        _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
        assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
        assert len(site.messages("bob", ".lists")) == 1
    finally:
        site.cleanup()


@pytest.mark.parametrize("processes", sorted(PROCESSES))
def test_a_sighup_as_soon_as_it_listens_is_a_reload(processes):
    """SIGHUP the moment the socket answers (systemd's ExecReload or logrotate right
    after a start): before the fix the signal came before the main loop had set its
    handler and its default action killed the daemon. Now it waits, blocked, for
    the loop: the daemon reloads and serves."""
    site = Site.create(extra=PROCESSES[processes])
    try:
        site.start()                    # returns once a connect() succeeds
        site.signal(signal.SIGHUP)
        # The parent (workers) or the one process logs the reload.
        _wait(lambda: "settings reloaded" in site.stderr() or "reloading" in
              site.stderr() or site.proc.poll() is not None, site)
        assert site.proc.poll() is None, (site.proc.returncode, site.stderr())
        c = Client.unix(site.socket)
        c.hello()
        _, final = c.transaction("s@x", ["bob@example.org"], MSG)
        assert final == ["250 2.0.0 <bob@example.org> Saved"]
        assert site.proc.poll() is None
    finally:
        site.cleanup()


def test_a_worker_replaced_after_a_broken_reload_has_the_last_good_settings():
    """A good reload, then a file that does not load, then a worker dies: its
    replacement must deliver with the settings its sibling has (the last that
    loaded). Before the fix it loaded the file itself, failed, and kept the
    parent's settings of the start: half the mail went to INBOX, half to the detail
    mailbox. The replacement's deliveries are told by the P<pid> in their names."""
    site = _start("", "workers")
    try:
        with open(site.conf, "a") as f:
            f.write("lmtp_save_to_detail_mailbox: yes\n")
        _reloaded(site, "workers", "settings reloaded")
        with open(site.conf, "a") as f:
            f.write("no_such_setting: 1\n")
        _reloaded(site, "workers", "reload failed")
        pids = site.children()
        os.kill(pids[0], signal.SIGKILL)
        # workers() looks once per check: two looks could see the killed worker not
        # yet dead, then gone with no replacement yet.
        (new,) = set(workers(site, other_than=[pids[0]])) - set(pids)
        by_new = []
        for _ in range(60):
            c = Client.unix(site.socket)
            c.hello()
            _, final = c.transaction("s@x", ["bob+lists@example.org"], MSG)
            assert final == ["250 2.0.0 <bob+lists@example.org> Saved"]
            by_new = [p for p in site.maildir("bob", ".lists") + site.maildir("bob")
                      if f"P{new}." in os.path.basename(p)]
            if by_new:
                break
        assert by_new, "the new worker served none of 60 connections"
        assert site.maildir("bob") == [], [os.path.basename(p) for p in site.maildir("bob")]
    finally:
        site.cleanup()


@pytest.mark.parametrize("processes", sorted(PROCESSES))
def test_a_reload_moves_the_mailbox_and_the_log(processes):
    """mail_location and log_path changed by a reload: the next deliveries (every
    process's) go to the new Maildir and log to the new file; what was delivered
    before stays where it was."""
    site = _start("", processes)
    try:
        c = Client.unix(site.socket)
        c.hello()
        assert c.transaction("s@x", ["bob@example.org"], MSG)[1] == [
            "250 2.0.0 <bob@example.org> Saved"]
        old_log, new_log = (os.path.join(site.top, "log", n)
                            for n in ("mailslot.log", "moved.log"))
        with open(site.conf) as f:
            text = f.read()
        with open(site.conf, "w") as f:
            f.write(text.replace("maildir:~/Maildir", "maildir:~/Moved")
                    .replace(old_log, new_log))
        _reloaded(site, processes, "settings reloaded")
        for _ in range(4):
            c = Client.unix(site.socket)
            c.hello()
            assert c.transaction("s@x", ["bob@example.org"], MSG)[1] == [
                "250 2.0.0 <bob@example.org> Saved"]
        assert len(site.messages("bob")) == 1
        moved = os.path.join(site.home("bob"), "Moved", "new")
        assert len(os.listdir(moved)) == 4
        with open(old_log) as f:
            assert len(f.read().splitlines()) == 1
        with open(new_log) as f:
            assert len(f.read().splitlines()) == 4
    finally:
        site.cleanup()
