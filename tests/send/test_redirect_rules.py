"""Redirect's envelope sender and loop rules, data-driven (Pigeonhole's
tests/execute/smtp.svtest cases, also run by tests/pigeonhole)."""

import os
import sys

import pytest

from tests.support import REPO

sys.path.insert(0, os.path.join(REPO, "pyside"))
from mailslot.send.compose import Original  # noqa: E402
from mailslot.send.redirect import envelope_sender, loop_reason  # noqa: E402

ENV = dict(recipient="timo@example.net", orig_recipient="tss@example.net",
           user_email="t.sirainen@example.net", postmaster="postmaster@example.com")


@pytest.mark.parametrize("setting, sender, expected", [
    (None, "sirius@example.org", "sirius@example.org"),
    ("recipient", "sirius@example.org", "timo@example.net"),
    ("orig_recipient", "sirius@example.org", "tss@example.net"),
    ("user_email", "sirius@example.org", "t.sirainen@example.net"),
    ("<backscatter@example.com>", "sirius@example.org", "backscatter@example.com"),
    # RFC 5228 4.2: the null sender stays null whatever the setting.
    (None, "", ""),
    ("<backscatter@example.com>", "", ""),
    ("recipient", "<>", ""),
    ("postmaster", "", ""),
])
def test_envelope_sender(setting, sender, expected):
    assert envelope_sender(setting, sender=sender, **ENV) == expected


def original(header):
    from mailslot.sieve.mail import RawMessage
    return Original.from_message(RawMessage(header + b"From: a@example.org\n\nx\n"))


@pytest.mark.parametrize("header, own, looped", [
    (b"X-Sieve-Redirected-From: timo@example.net\n",
     ("t.sirainen@example.net", "timo@example.net"), True),    # the final recipient
    (b"X-Sieve-Redirected-From: t.sirainen@example.net\n",
     ("t.sirainen@example.net", "timo@example.net"), True),    # sieve_user_email
    (b"X-Sieve-Redirected-From: stephan@example.net\n"
     b"X-Sieve-Redirected-From: t.sirainen@example.net\n",
     ("t.sirainen@example.net", "timo@example.net"), True),    # any of several
    (b"X-Sieve-Redirected-From: someone@example.net\n",
     ("t.sirainen@example.net", "timo@example.net"), False),
    (b"X-Sieve-Redirected-From: timo@example.net\n", "timo@example.net", True),
    (b"", "timo@example.net", False),
])
def test_loop(header, own, looped):
    assert (loop_reason(original(header), "cras@example.net", own) is not None) == looped


def test_outgoing_mail_treats_the_final_recipient_as_our_address():
    from mailslot.send.outgoing import OutgoingMail
    from mailslot.send.transport import CaptureTransport
    out = OutgoingMail({}, log=None, transport=CaptureTransport(), hostname="mx",
                       envelope={"from": "sirius@example.org", "to": "timo@example.net",
                                 "orig_to": "tss@example.net"},
                       user_address="t.sirainen@example.net")
    looped = original(b"X-Sieve-Redirected-From: timo@example.net\n")
    assert out.redirect_loop(looped, "cras@example.net") is not None
    assert out.redirect_loop(original(b""), "cras@example.net") is None


def test_outgoing_mail_treats_sieve_user_email_as_our_address():
    # Its copies carry X-Sieve-Redirected-From: <sieve_user_email> (Pigeonhole's,
    # redirect-user-email.case): one coming back is a loop.
    from mailslot.send.outgoing import OutgoingMail
    from mailslot.send.transport import CaptureTransport
    out = OutgoingMail({"sieve_user_email": "me@example.org"}, log=None,
                       transport=CaptureTransport(), hostname="mx",
                       envelope={"from": "sirius@example.org", "to": "timo@example.net",
                                 "orig_to": "tss@example.net"},
                       user_address="timo@example.net")
    looped = original(b"X-Sieve-Redirected-From: me@example.org\n")
    assert out.redirect_loop(looped, "cras@example.net") is not None
