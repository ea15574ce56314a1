"""Fuzzing the LMTP command parser and state machine (lmtp/protocol.py).

A client session is made of LMTP's commands with random arguments, pipelined, with
random garbage between them, and fed to the session in random cuts; a server
answers its requests (recipients accepted or refused at random, deliveries per
recipient). Properties: nothing raises; every reply is one or more complete lines
"ddd[ -]..." ending in CRLF with no other CR or LF; after the end of a message
there is exactly one reply per accepted recipient (RFC 2033); the content a
Deliver carries is what the client sent, dot-unstuffed, CRLF as LF; and the
replies do not depend on how the bytes were cut.
"""

import re

from hypothesis import given
from hypothesis import strategies as st

from mailslot.lmtp.protocol import (Close, Deliver, Discard, Limits, Reply, Session,
                                    Verdict, VerifyRecipient)
from tests.fuzz.strategies import cuts

REPLY_LINE = re.compile(rb"^[2-5]\d\d[ -][^\r\n]*$")

address = st.sampled_from(["<a@example.org>", "<>", "<b@example.org>", "a@example.org",
                           "<" + "x" * 300 + "@example.org>", "<a@[127.0.0.1]>",
                           "<\"q u\"@example.org>", "<é@example.org>", "<a@b@c>", ""])
param = st.sampled_from(["", " SIZE=10", " SIZE=99999999999999999999", " BODY=8BITMIME",
                         " BODY=BINARYMIME", " SMTPUTF8", " FOO=bar", " SIZE=-1"])
content = st.lists(st.sampled_from([b"Subject: x\r\n", b"\r\n", b"body\r\n", b".\r\n",
                                    b"..dot\r\n", b".x\r\n", b"\n.\n", b"\r\n.\r\n",
                                    b"x" * 1200 + b"\r\n", b"\xff\x00\r\n", b"From x\r\n"]),
                   max_size=8).map(b"".join)
command = st.one_of(
    st.builds(lambda h: f"LHLO {h}\r\n".encode(), st.sampled_from(["client", "", "a b", "é"])),
    st.builds(lambda a, p: f"MAIL FROM:{a}{p}\r\n".encode(), address, param),
    st.builds(lambda a, p: f"RCPT TO:{a}{p}\r\n".encode(), address, param),
    st.builds(lambda c: b"DATA\r\n" + c + b"\r\n.\r\n", content),
    st.builds(lambda c, last: f"BDAT {len(c)}{' LAST' if last else ''}\r\n".encode() + c,
              content, st.booleans()),
    st.sampled_from([b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"VRFY x\r\n", b"HELO x\r\n",
                     b"EHLO x\r\n", b"BDAT x\r\n", b"BDAT 99999999999999999999\r\n",
                     b"\r\n", b"\n", b"x" * 2000 + b"\r\n", b"MAIL\r\n", b"DATA\r\n",
                     b"\x00\xff\r\n", b"STARTTLS\r\n", b"HELP\r\n"]),
    st.binary(max_size=30))
session_bytes = st.lists(command, max_size=12).map(b"".join)


class Sink:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data


def play(data, points, verdicts):
    """Run a session over data cut at points; return (reply bytes, delivered contents)."""
    session = Session(Limits(hostname="mx.example.org", max_size=5000), Sink)
    out = list(session.greeting())
    replies, delivered = bytearray(), []
    verdicts = list(verdicts)

    def drain(events):
        for event in events:
            if isinstance(event, Reply):
                replies.extend(event.data)
            elif isinstance(event, VerifyRecipient):
                ok = verdicts.pop(0) if verdicts else True
                drain(session.answer(Verdict(True, token=event.address) if ok else
                                     Verdict(False, reply="550 5.1.1 unknown")))
            elif isinstance(event, Deliver):
                rcpts = event.transaction.recipients
                delivered.append((len(rcpts), bytes(event.transaction.sink.data)
                                  if event.transaction.sink else b""))
                drain(session.answer([f"250 2.0.0 <{a}> Saved" for a, _t in rcpts]))
            else:
                assert isinstance(event, (Discard, Close)), event
    drain(out)
    for piece in cuts(data, points):
        drain(session.feed(piece))
    drain(session.eof())
    return bytes(replies), delivered


@given(session_bytes, st.lists(st.integers(0, 3000), max_size=8),
       st.lists(st.booleans(), max_size=10))
def test_any_client_gets_well_formed_replies_whatever_the_cut(data, points, verdicts):
    replies, delivered = play(data, points, verdicts)
    assert replies.endswith(b"\r\n")
    for line in replies[:-2].split(b"\r\n"):
        assert REPLY_LINE.match(line), line
    for count, body in delivered:
        assert count >= 1
        assert b"\r\n" not in body
    # One reply per accepted recipient after each message: every one we gave.
    assert replies.count(b"> Saved\r\n") == sum(count for count, _b in delivered)
    # The same session in one piece gives the same replies and the same mail.
    assert play(data, [], verdicts) == (replies, delivered)
