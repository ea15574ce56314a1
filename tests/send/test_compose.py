"""What mailslot writes: the reject MDN against real Dovecot's, the DSN, vacation
replies and notifications, and that no header value can start a new line."""

import email
import email.policy
import os
import sys

import pytest

from tests.support import REPO
from tests.dovecot_env import DovecotEnv, dovecot_missing

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.send import compose  # noqa: E402
from mailslot.send import headers as H  # noqa: E402

NOW = 1_800_000_000
MSG = (b"From: Sender Name <sender@example.com>\nTo: user@example.org\n"
       b"Subject: Hello there\nMessage-ID: <abc123@example.com>\n"
       b"References: <r1@example.com>\nDate: Fri, 04 Dec 2026 10:00:00 +0000\n\n"
       b"body line\n")


def original(data=MSG):
    from mailslot.sieve.mail import RawMessage
    return compose.Original.from_message(RawMessage(data))


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def reject_mail(**kw):
    args = dict(reason="Go away, I'm busy.", final_rcpt="user@example.org",
                orig_rcpt="user@example.org", sender="sender@example.com",
                hostname="mx.example.org", postmaster="postmaster@example.org", now=NOW)
    args.update(kw)
    return compose.rejection(original(), **args)


def structure(msg):
    """What must match Dovecot's: header names, the parts' types, the report fields."""
    parts = [p.get_content_type() for p in msg.iter_parts()]
    report = msg.get_payload()[1].get_payload()[0]
    return {
        "headers": sorted(k.lower() for k in msg.keys()),
        "type": msg.get_content_type(),
        "report-type": msg.get_param("report-type"),
        "parts": parts,
        "report-fields": sorted(k.lower() for k in report.keys()),
        "disposition": report["Disposition"],
        "auto-submitted": msg["Auto-Submitted"],
        "precedence": msg["Precedence"],
        "subject": msg["Subject"],
        "returned": msg.get_payload()[2].get_payload()[0]["Message-ID"],
    }


def test_reject_is_a_valid_multipart_report():
    out = reject_mail(orig_rcpt="alias@example.org")
    assert out.sender == "" and out.recipients == ["sender@example.com"]
    msg = parse(out.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    text, report, returned = msg.iter_parts()
    assert text.get_content() == ("Your message to <alias@example.org> was "
                                  "automatically rejected:\nGo away, I'm busy.")
    fields = report.get_payload()[0]
    assert dict(fields.items()) == {
        "Reporting-UA": "mx.example.org; Mail Delivery Agent",
        "Original-Recipient": "rfc822; alias@example.org",
        "Final-Recipient": "rfc822; user@example.org",
        "Original-Message-ID": "<abc123@example.com>",
        "Disposition": "automatic-action/MDN-sent-automatically; deleted"}
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "Hello there" and inner.get_payload() == ""
    assert b"\nTo: <sender@example.com>\n" in out.data
    assert msg["From"] == "Postmaster <postmaster@example.org>"
    assert msg["Auto-Submitted"] == "auto-replied (rejected)"
    assert b"body line" not in out.data


@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
def test_reject_has_dovecots_structure(tmp_path):
    """Run real dovecot-lda with a Sieve reject and a capturing sendmail_path;
    compare the structure (not the prose) with ours."""
    from tests.support import world_tempdir
    spool = world_tempdir("mailslot-send-dovecot-")
    os.chmod(spool, 0o777)
    capture = os.path.join(spool, "capture")
    out_file = os.path.join(spool, "sent")
    with open(capture, "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" > {out_file}.args\ncat > {out_file}\n")
    os.chmod(capture, 0o755)
    env = DovecotEnv.create(extra_settings={
        "mail_plugins": "sieve", "hostname": "mx.example.org",
        "postmaster_address": "postmaster@example.org", "sendmail_path": capture})
    try:
        script = os.path.join(env.home, ".dovecot.sieve")
        with open(script, "w") as f:
            f.write('require "reject";\nreject "Go away, I\'m busy.";\n')
        env.give(script)
        os.chmod(env.base, 0o777)
        env.lda(MSG, "-f", "sender@example.com", "-r", "user@example.org")
        theirs = open(out_file, "rb").read()
        args = open(out_file + ".args").read().split()
    finally:
        env.cleanup()
        import shutil
        shutil.rmtree(spool, ignore_errors=True)
    assert args == ["-i", "-f", "<>", "--", "sender@example.com"]
    ours = reject_mail()
    a, b = structure(parse(theirs)), structure(parse(ours.data))
    assert a == b


def test_reject_templates_expand_once():
    out = reject_mail(subject_template="Refused (%s) %%r", reason_template=
                      "To %{to}: %r%nEnd %x")
    msg = parse(out.data)
    assert msg["Subject"] == "Refused (Hello there) %r"
    assert msg.get_payload()[0].get_content() == (
        "To user@example.org: Go away, I'm busy.\nEnd %x")


def test_template_value_is_not_expanded_again():
    hostile = MSG.replace(b"Subject: Hello there", b"Subject: %r %n %{reason}")
    out = compose.rejection(original(hostile), reason="R", final_rcpt="u@example.org",
                            orig_rcpt="", sender="s@example.com", hostname="h",
                            postmaster="p@example.org", now=NOW)
    assert parse(out.data)["Subject"] == "Rejected: %r %n %{reason}"


def test_dsn_5_2_2_is_a_valid_delivery_status_report():
    out = compose.dsn(original(), status="5.2.2", diagnostic="Quota exceeded",
                      final_rcpt="user@example.org", orig_rcpt="user@example.org",
                      sender="sender@example.com", hostname="mx.example.org",
                      postmaster="postmaster@example.org", now=NOW)
    msg = parse(out.data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    per_message, per_rcpt = msg.get_payload()[1].get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert per_rcpt["Status"] == "5.2.2" and per_rcpt["Action"] == "failed"
    assert per_rcpt["Final-Recipient"] == "rfc822; user@example.org"
    assert out.sender == "" and out.recipients == ["sender@example.com"]


def vacation(decision_extra=None, **action):
    decision = {"send": True, "to": "sender@example.com", "envelope_from": "",
                "reply_from": "user@example.org", "reply_subject": "Auto: Hello there",
                "in_reply_to": "<abc123@example.com>", "references": "<r1@example.com>",
                "reason": "I'm away.", "mime": False}
    decision.update(decision_extra or {})
    decision.update(action)
    return compose.vacation_reply(original(), decision, decision,
                                  hostname="mx.example.org", now=NOW)


def test_vacation_reply_headers():
    out = vacation()
    assert out.sender == "" and out.recipients == ["sender@example.com"]
    msg = parse(out.data)
    assert b'\nTo: "Sender Name" <sender@example.com>\n' in out.data
    assert b"\nFrom: <user@example.org>\n" in out.data
    assert msg["Subject"] == "Auto: Hello there"
    assert msg["In-Reply-To"] == "<abc123@example.com>"
    assert msg["References"] == "<r1@example.com> <abc123@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied (vacation)"
    assert msg["Precedence"] == "bulk"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "I'm away.\n"


def test_vacation_subject_is_encoded_words():
    out = vacation(reply_subject="Auto: Grüße aus Köln")
    raw = [l for l in out.data.split(b"\n") if l.startswith(b"Subject:")][0]
    assert raw.isascii() and b"=?utf-8?b?" in raw and b"Auto: " in raw
    assert parse(out.data)["Subject"] == "Auto: Grüße aus Köln"


def test_vacation_mime_body_keeps_only_content_fields():
    out = vacation(mime=True, reason="Content-Type: text/html; charset=utf-8\n"
                   "Bcc: victim@example.net\n\n<p>away</p>")
    msg = parse(out.data)
    assert msg.get_content_type() == "text/html" and msg["Bcc"] is None
    assert msg.get_content() == "<p>away</p>\n"


@pytest.mark.parametrize("field,value", [
    ("reply_subject", "Auto: hi\nBcc: victim@example.net"),
    ("reply_subject", "Auto: hi\r\nBcc: victim@example.net"),
    ("reply_from", "Me <user@example.org>\nBcc: victim@example.net"),
    ("in_reply_to", "<a@b>\nBcc: victim@example.net"),
    ("references", "<a@b>\r\nBcc: victim@example.net"),
])
def test_no_header_value_injects_a_line(field, value):
    out = vacation(**{field: value})
    msg = parse(out.data)
    assert msg["Bcc"] is None
    head = out.data.split(b"\n\n")[0]
    assert not any(l.startswith(b"Bcc") for l in head.split(b"\n"))


def test_header_folding_never_breaks_mid_word_or_exceeds_lines():
    line = H.field("Subject", "word " * 60)
    parts = line.decode().split("\n")[:-1]
    assert len(parts) > 3
    for part in parts:
        assert len(part) <= H.FOLD_AT
    assert parse(line + b"\n")["Subject"].strip() == ("word " * 60).strip()


def test_notification_headers():
    action = {"recipients": [{"address": "alert@example.net", "cc": False}],
              "headers": [["X-Tag", "one\ntwo"]], "body": None, "subject": None,
              "from": None, "importance": 1}
    out = compose.notification(original(), action, owner="user@example.org",
                               postmaster="postmaster@example.org",
                               hostname="mx.example.org", now=NOW)
    msg = parse(out.data)
    assert out.sender == "postmaster@example.org"
    assert out.recipients == ["alert@example.net"]
    assert msg["Subject"] == "Notification: Hello there"
    assert msg["Auto-Submitted"] == 'auto-notified; owner-email="user@example.org"'
    assert msg["X-Priority"] == "1 (Highest)" and msg["Importance"] == "High"
    assert msg["X-Tag"] == "one two"
    assert msg.get_content() == "Notification of new message.\n"


def test_outgoing_dsn_goes_to_the_sender_never_to_null():
    from mailslot.send.outgoing import OutgoingMail
    from mailslot.send.transport import CaptureTransport

    class Log:
        lines = []

        def info(self, text):
            self.lines.append(text)

    for sender, expect in (("sender@example.com", 1), ("", 0), ("<>", 0)):
        capture = CaptureTransport()
        out = OutgoingMail({"postmaster_address": "postmaster@example.org"}, log=Log(),
                           transport=capture, hostname="mx.example.org",
                           clock=lambda: NOW, user_address="user@example.org",
                           envelope={"from": sender, "to": "user@example.org",
                                     "orig_to": ""})
        out.dsn(original())
        assert len(capture.sent) == expect
        if expect:
            env_from, rcpts, data = capture.sent[0]
            assert env_from == "" and rcpts == [sender]
            status = parse(data).get_payload()[1].get_payload()[1]["Status"]
            assert status == "5.2.2"


@pytest.mark.parametrize("sender", ["-oQ/evil@example.com", "a\nb@example.com",
                                    "x" * 300 + "@example.com"])
def test_no_rejection_or_vacation_to_an_unusable_sender_and_no_deferral(sender):
    """A reply to an address no transport can take is not attempted: it would fail
    on every retry and keep the message deferred forever."""
    from mailslot.send.outgoing import OutgoingMail
    from mailslot.send.transport import CaptureTransport

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, text):
            self.lines.append(text)

    capture, log = CaptureTransport(), Log()
    out = OutgoingMail({}, log=log, transport=capture, hostname="mx.example.org",
                       clock=lambda: NOW, user_address="user@example.org",
                       envelope={"from": sender, "to": "user@example.org", "orig_to": ""})
    assert out.reject(original(), "no") is False
    decision = {"send": True, "to": sender, "envelope_from": "", "reason": "away",
                "reply_from": "user@example.org", "period": 60, "handle": "h"}
    assert out.vacation(original(), decision) is False
    assert capture.sent == [] and len(log.lines) == 2
