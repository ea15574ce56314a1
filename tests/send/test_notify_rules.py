"""enotify mailto notifications: the recipients' names in To/Cc and the envelope
sender setting (Pigeonhole's tests/extensions/enotify/mailto.svtest cases)."""

import email
import email.policy
import os
import sys

import pytest

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.send.compose import Original  # noqa: E402
from mailslot.send.outgoing import OutgoingMail  # noqa: E402
from mailslot.send.transport import CaptureTransport  # noqa: E402

MSG = b"From: stephan@example.org\nTo: nico@frop.example.org\nSubject: Frop!\n\nx\n"


class _Log:
    def info(self, text):
        pass

    warning = error = info


def notify(script, settings=None):
    """Run a notify through the Sieve engine and OutgoingMail; the captured mail."""
    from mailslot.sieve.mail import RawMessage
    from mailslot.sieve import run
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.sieve")
        with open(path, "w") as f:
            f.write('require ["enotify", "variables"];\n' + script)
        res = run([path], RawMessage(MSG), {"from": "sirius@example.org",
                                            "to": "bertus@frop.example.org"}, cache=False)
    (action,) = [a for a in res.actions if a["type"] == "notify"]
    transport = CaptureTransport()
    out = OutgoingMail(settings or {}, log=_Log(), transport=transport, hostname="mx",
                       envelope={"from": "sirius@example.org",
                                 "to": "bertus@frop.example.org",
                                 "orig_to": "orig@frop.example.org"},
                       user_address="bertus@frop.example.org")
    assert out.notify(Original.from_message(RawMessage(MSG)), action)
    return transport.sent


def test_to_and_cc_keep_the_names_the_uri_gave():
    (sent,) = notify('set :encodeurl "to" "=?utf-8?q?G=C3=BCnther?= M. Karotte '
                     '<g.m.karotte@example.com>";\n'
                     'notify "mailto:?to=${to}&cc=Dieter%20T.%20Stoppelruebe'
                     '%20%3Cd.t@example.com%3E";\n')
    sender, rcpts, data = sent
    assert sorted(rcpts) == ["d.t@example.com", "g.m.karotte@example.com"]
    head = data.split(b"\n\n")[0].split(b"\n")
    assert b"To: =?utf-8?q?G=C3=BCnther?= M. Karotte <g.m.karotte@example.com>" in head
    assert b"Cc: Dieter T. Stoppelruebe <d.t@example.com>" in head
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["To"].addresses[0].display_name == "Günther M. Karotte"


@pytest.mark.parametrize("setting, expected", [
    (None, "nico@frop.example.org"),           # the :from address (unchanged rule)
    ("sender", "sirius@example.org"),
    ("recipient", "bertus@frop.example.org"),
    ("orig_recipient", "orig@frop.example.org"),
    ("user_email", "t.sirainen@example.net"),
    ("<backscatter@example.com>", "backscatter@example.com"),
])
def test_envelope_sender_setting(setting, expected):
    settings = {"sieve_user_email": "t.sirainen@example.net"}
    if setting:
        settings["sieve_notify_mailto_envelope_from"] = setting
    (sent,) = notify('notify :from "nico@frop.example.org" '
                     '"mailto:stephan@example.org";\n', settings)
    assert sent[0] == expected
