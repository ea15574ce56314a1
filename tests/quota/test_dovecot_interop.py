"""Dovecot's quota plugin and mailslot agree on a Maildir mailslot filled.

mailslot delivers into INBOX and folders (one with a non-ASCII name, so stored in
modified UTF-7); `doveadm quota get` (quota = maildir) must report what `mailslot
quota get` reports, in doveadm's tab and table forms, from mailslot's maildirsize
and from Dovecot's own recalculation (doveadm quota recalc), and mailslot's
recalculation must write the file Dovecot writes.
"""

import os

import pytest

from tests.quota.qenv import message

FOLDERS = ["INBOX", "Trash", "Lists.abc", "Entwürfe"]


@pytest.mark.parametrize("rules", [
    {"quota_rule": "*:storage=1M:messages=100"},
    {"quota_rule": "*:storage=50k", "quota_rule2": "Trash:ignore"},
])
def test_same_usage_as_doveadm(quota_env, rules):
    q = quota_env(rules=rules)
    for i, folder in enumerate(FOLDERS):
        for j in range(3):
            proc = q.mailslot_lda(message(700 + 111 * i + j), "-m", folder)
            assert proc.returncode == 0, proc.stderr
    ours = q.mailslot_quota()
    assert ours == q.doveadm_quota()
    table = q.mailslot("quota", "get", "-c", q.conf, "-u", q.user)
    assert table.stdout == q.env.doveadm("quota", "get").stdout
    # Dovecot's own count agrees with the file mailslot kept.
    os.unlink(os.path.join(q.maildir, "maildirsize"))
    q.env.doveadm("quota", "recalc")
    dovecots = q.maildirsize()
    assert q.doveadm_quota() == ours
    os.unlink(os.path.join(q.maildir, "maildirsize"))
    assert q.mailslot("quota", "recalc", "-c", q.conf, "-u", q.user).returncode == 0
    assert q.maildirsize() == dovecots
    assert q.mailslot_quota() == ours
    assert q.env.log_problems() == []


def test_control_directory(quota_env):
    # maildirsize lives in CONTROL=, as Dovecot keeps it.
    q = quota_env(rules={"quota_rule": "*:storage=1M"},
                  mail_location="maildir:~/Maildir:CONTROL=~/control")
    q.control = os.path.join(q.home, "control")
    for folder in ("INBOX", "Trash"):
        assert q.mailslot_lda(message(1234), "-m", folder).returncode == 0
    assert q.maildirsize() == "1048576S\n0 0\n1234 1\n1234 1\n"
    assert not os.path.exists(os.path.join(q.maildir, "maildirsize"))
    assert q.mailslot_quota() == q.doveadm_quota()
    os.unlink(os.path.join(q.control, "maildirsize"))
    assert q.doveadm_quota() == [("User quota", "STORAGE", "3", "1024", "0"),
                                 ("User quota", "MESSAGE", "2", "-", "0")]


def test_sieve_fileinto_over_quota(quota_env):
    # fileinto a full folder: the implicit keep in INBOX, which is full too: a DSN.
    q = quota_env(rules={"quota_rule": "*:storage=2k"})
    script = os.path.join(q.home, ".dovecot.sieve")
    with open(script, "w") as f:
        f.write('require "fileinto";\nfileinto "Lists";\n')
    q.env.give(script)
    assert q.mailslot_lda(message(1500), "-f", "s@example.org").returncode == 0
    proc = q.mailslot_lda(message(1500, msgid="<s2@example.org>"), "-f", "s@example.org")
    assert proc.returncode == 0, proc.stderr
    assert len(q.sent()) == 1 and b"Status: 5.2.2" in q.sent()[0][1]
    assert len(os.listdir(os.path.join(q.maildir, ".Lists", "new"))) == 1
    assert q.mailslot_quota() == q.doveadm_quota()
