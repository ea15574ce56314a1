"""Awkward but legal envelope senders reach the mailbox through pipe and relay.

Postfix hands ${sender} to the pipe in its internal (unquoted) form: a quoted local
part arrives with a space in it, the null sender as an empty argument. Neither the
relay's strict argv parser nor the engine may turn that into a bounce.
"""
import os

import pytest

SENDERS = {
    "quoted-local-part": '"odd local"@example.net',
    "percent-and-bang": "a!b%c@example.net",
    "null-sender": "",
}


@pytest.mark.parametrize("case", sorted(SENDERS))
def test_sender_is_delivered(postfix, case):
    v2 = postfix.virtual[1]
    mark = f"X-Test-Case: sender-{case}".encode()
    postfix.send(SENDERS[case], [v2.address], b"Subject: sender\n" + mark + b"\n\nbody\n")
    found = postfix.wait_for_message(os.path.join(v2.home, "Maildir"), mark)
    assert len(found) == 1, postfix.log()[-3000:]
    first = open(found[0], "rb").readline()
    assert first.startswith(b"Return-Path: <")
    if case == "null-sender":
        assert first == b"Return-Path: <>\n"
