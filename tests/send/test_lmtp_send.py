"""Outgoing mail from mailslot-lmtpd: in one LMTP transaction a reject is mailed (250,
as Dovecot's LMTP), an ereject is refused in the dialogue (550 5.7.1), and a
vacation reply goes out, each to a real SMTP server on 127.0.0.1."""

import email
import email.policy
import os

import pytest

from tests.support import needs_root
from tests.lmtp.lmtpsite import Client, Site
from tests.send.smtpsink import SmtpSink

pytestmark = needs_root

MSG = (b"From: Sender <s@example.org>\nTo: alice@example.org, bob@example.org\n"
       b"Subject: hello\nMessage-ID: <lmtp-send@example.org>\n\nbody\n")


@pytest.fixture
def site():
    with SmtpSink() as sink:
        s = Site.create(extra=f"submission_host: {sink.address}\n"
                              "postmaster_address: postmaster@lmtp.test\n")
        for name, script in (("alice", b'require "reject";\nreject "Not here.";\n'),
                             ("bob", b'require "vacation";\nvacation "Away.";\n')):
            path = os.path.join(s.home(name), ".dovecot.sieve")
            with open(path, "wb") as f:
                f.write(script)
            os.chown(path, s.uid, s.uid)
        s.start()
        s.sink = sink
        yield s
        s.cleanup()


def test_reject_ereject_and_vacation_in_one_transaction(site):
    c = Client.unix(site.socket)
    c.hello()
    rcpt, final = c.transaction("s@example.org", ["alice@example.org", "bob@example.org",
                                                  "carol@example.org"], MSG)
    assert rcpt == ["250 2.1.5 OK"] * 3
    # Rejected by mail (nothing saved): a success for the MTA, as Dovecot's LMTP.
    assert final[0] == "250 2.0.0 <alice@example.org> Saved"
    assert final[1] == "250 2.0.0 <bob@example.org> Saved"
    assert final[2] == "550 5.7.1 <carol@example.org> no thanks"       # ereject
    sent = {m.data.split(b"Auto-Submitted: ")[1].split(b"\n")[0]: m
            for m in site.sink.wait(2)}
    assert set(sent) == {b"auto-replied (rejected)", b"auto-replied (vacation)"}
    mdn, reply = sent[b"auto-replied (rejected)"], sent[b"auto-replied (vacation)"]
    assert (mdn.sender, mdn.recipients) == ("", ["s@example.org"])
    report = email.message_from_bytes(mdn.data, policy=email.policy.default)
    fields = report.get_payload()[1].get_payload()[0]
    assert fields["Final-Recipient"] == "rfc822; alice@example.org"
    assert (reply.sender, reply.recipients) == ("", ["s@example.org"])
    assert b"\nFrom: <bob@example.org>\n" in reply.data
    assert site.messages("alice") == [] and len(site.messages("bob")) == 1
    assert site.messages("carol") == []
