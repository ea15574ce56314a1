"""Over quota, end to end through the real engine (cli.main as the mail user).

Limits come from the passwd-file userdb (userdb_quota_rule=...), as a site keeps
them. With quota_full_tempfail the delivery is a temporary failure (75); without
it the sender gets a DSN (captured from sendmail_path: multipart/report,
Status 5.2.2, Action failed, the original header) and the delivery is done (0);
with -e the MTA refuses it (77) and nothing is sent. Per-mailbox rules: a -m
mailbox with more room takes what INBOX would not; an ignored one takes anything
and is not counted. The same steps against Dovecot's LDA give the same answers.
"""

import email
import email.policy

import pytest

from mailslot.errors import (QuotaExceededError, QuotaRejectedError, StorageError,
                             failure_for)
from tests.quota.qenv import message

RULE = {"quota_rule": "*:storage=10k"}          # 10240 bytes, grace 1024


def fill(q, count=3, size=3000, program="mailslot"):
    for i in range(count):
        msg = message(size, msgid=f"<fill{i}@example.org>")
        proc = q.mailslot_lda(msg, "-f", "s@example.org") if program == "mailslot" \
            else q.dovecot_lda(msg, "-f", "s@example.org")
        assert proc.returncode == 0, proc.stderr


def test_limit_from_a_passwd_file_userdb_field(quota_env):
    q = quota_env(userdb_fields=RULE)
    fill(q)                                     # 9000 bytes
    # 9000 + 3000 > 10240 + 1024 grace: refused, with -e for the MTA to say so.
    proc = q.mailslot_lda(message(3000), "-f", "s@example.org", "-e")
    assert proc.returncode == 77
    assert proc.stderr.strip() == b"mailslot-lda: Quota exceeded (mailbox for user is full)"
    # The grace lets one message cross the limit: 9000 + 2000 <= 11264.
    assert q.mailslot_lda(message(2000), "-f", "s@example.org").returncode == 0
    assert q.mailslot_quota() == [("User quota", "STORAGE", "11", "10", "110"),
                                  ("User quota", "MESSAGE", "4", "-", "0")]
    assert q.mailslot_quota() == q.doveadm_quota()
    assert q.sent() == []


def test_tempfail(quota_env):
    q = quota_env(userdb_fields=RULE, settings={"quota_full_tempfail": "yes",
                  "quota_exceeded_message": "Mailbox full, try later"})
    fill(q)
    proc = q.mailslot_lda(message(3000), "-f", "s@example.org")
    assert proc.returncode == 75
    assert b"Mailbox full, try later" in proc.stderr
    assert len(q.sent()) == 0
    assert q.maildirsize() == "10240S\n0 0\n3000 1\n3000 1\n3000 1\n"


def test_rejection_sends_a_dsn(quota_env):
    q = quota_env(userdb_fields=RULE)
    fill(q)
    original = message(3000, subject="big report", msgid="<over1@example.org>")
    proc = q.mailslot_lda(original, "-f", "sender@example.org")
    assert proc.returncode == 0, proc.stderr            # rejected by mail, as dovecot-lda
    (argv, data), = q.sent()
    assert argv == "-i -f <> -- sender@example.org"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"].addresses[0].addr_spec == "sender@example.org"
    assert msg["Auto-Submitted"].startswith("auto-replied")
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "Quota exceeded (mailbox for user is full)" in parts[0].get_content()
    status = parts[1].get_payload()
    fields = {}
    for block in status:
        for key, value in block.items():
            fields[key.lower()] = value
    assert fields["status"] == "5.2.2" and fields["action"] == "failed"
    # A user without a domain is user@<hostname>, as in dovecot-lda's DSN.
    assert fields["final-recipient"] == f"rfc822; {q.user}@test.example.org"
    returned = parts[2].get_content() if hasattr(parts[2], "get_content") else ""
    returned = parts[2].get_payload(decode=True).decode() if not returned else returned
    assert "Subject: big report" in returned and "Message-ID: <over1@example.org>" in returned
    assert "yyyy" not in returned                       # the header only
    assert "rejected: Quota exceeded" in q.log()
    # Nothing saved, nothing counted.
    assert q.maildirsize() == "10240S\n0 0\n3000 1\n3000 1\n3000 1\n"
    # Never a DSN to <>.
    assert q.mailslot_lda(original, "-f", "").returncode == 0
    assert len(q.sent()) == 1


def test_same_answers_as_dovecot_lda(quota_env):
    for program in ("mailslot", "dovecot"):
        q = quota_env(rules=RULE)
        fill(q, program=program)
        lda = q.mailslot_lda if program == "mailslot" else q.dovecot_lda
        assert lda(message(3000), "-f", "s@example.org", "-e").returncode == 77
        assert lda(message(2000), "-f", "s@example.org").returncode == 0
        assert lda(message(100), "-f", "s@example.org", "-e").returncode == 77
        assert q.doveadm_quota() == [("User quota", "STORAGE", "11", "10", "110"),
                                     ("User quota", "MESSAGE", "4", "-", "0")]


def test_per_mailbox_rules(quota_env):
    q = quota_env(rules={"quota_rule": "*:storage=10k", "quota_rule2": "Trash:storage=+50%",
                         "quota_rule3": "Spam:ignore"})
    fill(q)
    # INBOX is full, Trash has 15k: the -m mailbox takes it.
    assert q.mailslot_lda(message(3000), "-m", "Trash", "-e").returncode == 0
    assert q.mailslot_lda(message(3000), "-e").returncode == 77
    # An ignored mailbox takes anything and is not counted.
    assert q.mailslot_lda(message(20000), "-m", "Spam", "-e").returncode == 0
    assert q.mailslot_quota()[0][2] == "12"             # 12000 bytes, Spam not in it
    # Trash over its own limit falls back to INBOX, which is full too.
    assert q.mailslot_lda(message(5000), "-m", "Trash", "-e").returncode == 77
    assert "Failed to save mail to mailbox Trash" in q.log()
    assert q.mailslot_quota() == q.doveadm_quota()


def test_messages_limit(quota_env):
    q = quota_env(rules={"quota_rule": "*:messages=2"})
    fill(q, count=2, size=500)
    assert q.mailslot_lda(message(10), "-e").returncode == 77


def test_a_bad_rule_defers_and_names_the_setting(quota_env):
    q = quota_env(userdb_fields={"quota_rule2": "Trash:storage=+1Q"},
                  rules={"quota_rule": "*:storage=1M"})
    proc = q.mailslot_lda(message(100))
    assert proc.returncode == 75
    assert b"quota_rule2" in proc.stderr and b"Trash:storage=+1Q" in proc.stderr


def test_two_failure_classes_in_the_one_table():
    temp = failure_for(QuotaExceededError("full"))
    assert (temp.exit_code, temp.lmtp_code, temp.dsn_status) == (75, 452, "4.2.2")
    final = failure_for(QuotaRejectedError("full"))
    assert (final.exit_code, final.lmtp_code, final.dsn_status) == (77, 552, "5.2.2")
    # A StorageError, so that -m and fileinto fall back to INBOX.
    assert issubclass(QuotaExceededError, StorageError)


@pytest.mark.parametrize("location", ["mbox:~/mail:INBOX=~/mail/inbox"])
def test_mbox_quota_from_the_files_sizes(quota_env, location):
    q = quota_env(rules={"quota_rule": "*:storage=10k"},
                  settings={"mail_location": location})
    proc = q.mailslot_lda(message(6000))
    assert proc.returncode == 0, proc.stderr
    # The mbox file is 6000 bytes plus its From_ line: still under 10240.
    assert q.mailslot_lda(message(4000)).returncode == 0
    rows = q.mailslot_quota()
    import os
    size = os.path.getsize(os.path.join(q.home, "mail", "inbox"))
    assert rows == [("User quota", "STORAGE", str((size + 1023) // 1024), "10",
                     str((size + 1023) // 1024 * 100 // 10))]
    assert q.mailslot_lda(message(3000), "-e").returncode == 77


def _shape(data):
    """What must match Dovecot's over-quota DSN: header fields and values that do
    not vary per message, the report type, the text, the recipient's status."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    varying = {"message-id", "date", "content-type"}
    fields = {k.lower(): " ".join(str(v).split()) for k, v in msg.items()
              if k.lower() not in varying}
    text = msg.get_payload()[0].get_payload()
    status = {}
    for block in msg.get_payload()[1].get_payload():
        status.update({k.lower(): v for k, v in block.items()})
    status = {k: status[k] for k in ("final-recipient", "action", "status")}
    returned = msg.get_payload()[2].as_string()
    return {"fields": fields, "type": (msg.get_content_type(), msg.get_param("report-type")),
            # Dovecot's %n is CRLF inside LF lines; mailslot writes LF throughout.
            "text": text.replace("\r\n", "\n").strip(), "status": status,
            "returns-header": "Message-ID: <dsn1@example.org>" in returned}


def test_dsn_like_dovecots(quota_env):
    shapes = []
    for program in ("mailslot", "dovecot"):
        q = quota_env(rules=RULE)
        fill(q, program=program)
        original = message(3000, subject="Report", msgid="<dsn1@example.org>")
        args = ("-f", "sender@example.org", "-a", "test@example.org",
                "-r", "test@example.org")
        proc = q.mailslot_lda(original, *args) if program == "mailslot" \
            else q.dovecot_lda(original, *args)
        assert proc.returncode == 0, proc.stderr
        (argv, data), = q.sent()
        assert argv == "-i -f <> -- sender@example.org"
        shapes.append(_shape(data))
    ours, theirs = shapes
    assert ours == theirs
    assert ours["fields"]["subject"] == "Rejected: Report"
    assert ours["status"]["status"] == "5.2.2"
