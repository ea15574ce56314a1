"""The vacation reply's To field (Pigeonhole's vacation/message.svtest "Reply to"
cases): the sender's mailbox with its display name from Sender, Resent-From or
From, else the bare envelope address."""

import os
import sys

import pytest

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.send import compose  # noqa: E402

HEAD = (b'From: "Stephan Bosch" <stephan@example.org>\n'
        b'Sender: "Hendrik-Jan Tuinman" <h.j.tuinman@example.org>\n'
        b"Subject: Reply to me\nTo: nico@frop.example.org\n\nFrop\n")


def reply_to(envelope_sender, ignore=False, head=HEAD):
    from mailslot.sieve.mail import RawMessage
    original = compose.Original.from_message(RawMessage(head))
    decision = {"to": envelope_sender, "reply_from": "nico@frop.example.org",
                "reply_subject": "Auto: Reply to me", "to_header_ignore_envelope": ignore}
    out = compose.vacation_reply(original, decision, {"reason": "away"},
                                 hostname="mx", now=1_800_000_000)
    for line in out.data.split(b"\n\n")[0].split(b"\n"):
        if line.startswith(b"To: "):
            return line[4:].decode()
    raise AssertionError("no To")


@pytest.mark.parametrize("sender, ignore, expected", [
    ("stephan@example.org", False, '"Stephan Bosch" <stephan@example.org>'),
    ("h.j.tuinman@example.org", False, '"Hendrik-Jan Tuinman" <h.j.tuinman@example.org>'),
    ("arie.aardappel@example.org", False, "<arie.aardappel@example.org>"),
    # sieve_vacation_to_header_ignore_envelope: Sender's mailbox comes first.
    ("arie.aardappel@example.org", True, '"Hendrik-Jan Tuinman" <h.j.tuinman@example.org>'),
])
def test_reply_to(sender, ignore, expected):
    assert reply_to(sender, ignore) == expected
