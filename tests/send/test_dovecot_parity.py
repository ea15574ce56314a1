"""The mail mailslot sends has the shape of the mail dovecot-lda sends.

The same script and message go to real dovecot-lda (Pigeonhole, its sendmail_path a
capturing script) and to the installed mailslot-lda (its SMTP sink); for each
message sent the test compares the envelope, the set of header fields and the
values that are not prose, time or random (Message-ID, Date and boundaries differ;
Pigeonhole's X-Sieve names its version).
"""

import email
import email.policy
import os

import pytest

from tests.dovecot_env import DovecotEnv, dovecot_missing
from tests.send.capture import CapturingSendmail
from tests.support import needs_root

pytestmark = [needs_root, pytest.mark.skipif(dovecot_missing() is not None,
                                             reason=str(dovecot_missing()))]

MSG = (b"From: Sender Name <sender@example.com>\nTo: user@example.org\n"
       b"Subject: Hello there\nMessage-ID: <abc123@example.com>\n"
       b"References: <r0@example.com>\nDate: Fri, 04 Dec 2026 10:00:00 +0000\n\n"
       b"body line\n")
RCPT = "user@example.org"
VARYING = {"message-id", "date", "x-sieve", "content-type", "received"}

CASES = {
    "reject": 'require "reject";\nreject "Go away.";\n',
    "vacation": 'require "vacation";\n'
                f'vacation :addresses ["{RCPT}"] "I am away.";\n',
    "vacation-mime": 'require "vacation";\nvacation :mime :subject "Weg" '
                     '"Content-Type: text/html; charset=utf-8\n\n<p>away</p>";\n',
    "vacation-from": 'require "vacation";\nvacation :from "Me Myself <user@example.org>" '
                     ':subject "Gone fishing \u00bd" "away";\n',
    # A :from from a variable (a sender's header could give it) with a comma in
    # its name: sent as written, as Pigeonhole does (was "From: <Team, ...").
    "vacation-from-variable": 'require ["vacation", "variables"];\n'
                              'set "f" "Team, Support <user@example.org>";\n'
                              'vacation :from "${f}" "away";\n',
    "redirect": 'redirect "fwd@example.net";\n',
    "notify-default": 'require "enotify";\nnotify :message "New: hi" '
                      '"mailto:alert@example.net?body=x";\n',
    "notify": 'require "enotify";\nnotify :importance "3" :from "me@example.org" '
              '"mailto:alert@example.net";\n',
}


def dovecot_sends(script):
    sendmail = CapturingSendmail("mailslot-send-parity-")
    env = DovecotEnv.create(extra_settings={
        "mail_plugins": "sieve", "hostname": "mx.example.org",
        "postmaster_address": "postmaster@example.org", "sendmail_path": sendmail.path})
    try:
        path = os.path.join(env.home, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(script)
        env.give(path)
        env.lda(MSG, "-f", "sender@example.com", "-r", RCPT)
        return sendmail.sent()
    finally:
        env.cleanup()
        sendmail.cleanup()


def shape(sender, recipients, data):
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    fields = {k.lower() for k in msg.keys()}
    values = {k.lower(): " ".join(str(v).split()) for k, v in msg.items()
              if k.lower() not in VARYING}
    ctype = msg.get_content_type()
    params = {k.lower(): v.lower() for k, v in (msg.get_params() or [])[1:]
              if k.lower() != "boundary"}
    return {"envelope": (sender, recipients), "fields": sorted(fields),
            "values": values, "type": (ctype, params)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_shape_as_dovecot(mailer, case):
    theirs = dovecot_sends(CASES[case])
    user = mailer.users[0]
    mailer.script(user, CASES[case])
    proc = mailer.deliver(user, MSG, "-f", "sender@example.com", "-r", RCPT)
    assert proc.returncode == 0, proc.stderr
    ours = [(m.sender, m.recipients, m.data) for m in mailer.sink.wait(len(theirs))]
    assert len(theirs) == 1 and len(ours) == 1
    a, b = shape(*theirs[0]), shape(*ours[0])
    assert a == b
