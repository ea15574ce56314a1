"""The LMTP state machine (mailslot/lmtp/protocol.py), data-driven, without sockets.

Each case is a client's input and the replies it must get, with the content each
delivered message must have. Every case runs with the input fed in one piece, one
byte at a time, and in odd-sized pieces: the replies and the stored content must not
depend on how TCP cut the stream.
"""

import pytest

from mailslot.lmtp import protocol as P

LHLO = b"LHLO client.example\r\n"
LHLO_REPLY = ["250-mx.test", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME",
              "250-SIZE 100000", "250-CHUNKING", "250 SMTPUTF8"]


class Sink:
    def __init__(self):
        self.data = bytearray()
        self.discarded = False

    def write(self, data):
        self.data += data


def backend_verify(address):
    if address.startswith("nobody"):
        return P.Verdict(False, f"550 5.1.1 <{address}> User doesn't exist: {address}")
    if address.startswith("down"):
        return P.Verdict(False, "451 4.3.0 <%s> Temporary user lookup failure" % address)
    return P.Verdict(True, token=address.upper())


def backend_deliver(tx):
    """Per-recipient outcomes chosen by the local part: full, tmp, ereject, else 250."""
    out = []
    for address, token in tx.recipients:
        assert token == address.upper()
        if address.startswith("full"):
            out.append(f"552 5.2.2 <{address}> Quota exceeded (mailbox for user is full)")
        elif address.startswith("tmp"):
            out.append(f"451 4.2.0 <{address}> Temporary failure")
        elif address.startswith("ereject"):
            out.append(f"550 5.7.1 <{address}> Rejected by Sieve")
        elif address.startswith("short"):
            continue            # a server bug: too few answers
        else:
            out.append(f"250 2.0.0 <{address}> Saved")
    return out


def run(data, pieces, limits=None):
    """Drive a session over data cut by pieces (None: one piece); return
    (reply lines, [(sender, recipients, content)], discarded count, closed)."""
    sinks, delivered = [], []
    discarded = [0]
    session = P.Session(limits or P.Limits(hostname="mx.test", max_size=100000),
                        lambda: sinks.append(Sink()) or sinks[-1])
    replies = []
    closed = [False]

    def handle(events):
        for ev in events:
            if isinstance(ev, P.Reply):
                replies.append(ev.data)
            elif isinstance(ev, P.VerifyRecipient):
                handle(session.answer(backend_verify(ev.address)))
            elif isinstance(ev, P.Deliver):
                tx = ev.transaction
                delivered.append((tx.sender, [a for a, _ in tx.recipients],
                                  bytes(tx.sink.data)))
                handle(session.answer(backend_deliver(tx)))
            elif isinstance(ev, P.Discard):
                discarded[0] += 1
            elif isinstance(ev, P.Close):
                closed[0] = True

    handle(session.greeting())
    if pieces is None:
        handle(session.feed(data))
    else:
        i = 0
        while i < len(data):
            handle(session.feed(data[i:i + pieces]))
            i += pieces
    handle(session.eof())
    lines = b"".join(replies).decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    return lines[1:-1], delivered, discarded[0], closed[0]


def tx(*rcpts, sender="a@b.example", params=""):
    return (f"MAIL FROM:<{sender}>{params}\r\n".encode() +
            b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))


BODY = b"Subject: hi\r\n\r\nline 1\r\n..dotted\r\n.\r\n"
STORED = b"Subject: hi\n\nline 1\n.dotted\n"

CASES = [
    # name, input, expected replies, expected deliveries [(sender, rcpts, content)]
    ("lhlo", LHLO + b"QUIT\r\n", LHLO_REPLY + ["221 2.0.0 mx.test Closing connection"], []),
    ("helo is not lmtp", b"HELO x\r\nEHLO x\r\n",
     ["500 5.5.1 This is LMTP: use LHLO (RFC 2033)"] * 2, []),
    ("mail before lhlo", b"MAIL FROM:<a@b>\r\n", ["503 5.5.1 Send LHLO first"], []),
    ("one recipient", LHLO + tx("bob@x.example") + b"DATA\r\n" + BODY,
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK",
                   "250 2.0.0 <bob@x.example> Saved"],
     [("a@b.example", ["bob@x.example"], STORED)]),
    ("mixed outcomes: one reply per accepted recipient, in order",
     LHLO + tx("ok1@x", "nobody@x", "full@x", "down@x", "tmp@x", "ereject@x", "ok2@x")
     + b"DATA\r\n" + BODY,
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK",
                   "550 5.1.1 <nobody@x> User doesn't exist: nobody@x", "250 2.1.5 OK",
                   "451 4.3.0 <down@x> Temporary user lookup failure",
                   "250 2.1.5 OK", "250 2.1.5 OK", "250 2.1.5 OK", "354 OK",
                   "250 2.0.0 <ok1@x> Saved",
                   "552 5.2.2 <full@x> Quota exceeded (mailbox for user is full)",
                   "451 4.2.0 <tmp@x> Temporary failure",
                   "550 5.7.1 <ereject@x> Rejected by Sieve",
                   "250 2.0.0 <ok2@x> Saved"],
     [("a@b.example", ["ok1@x", "full@x", "tmp@x", "ereject@x", "ok2@x"], STORED)]),
    ("a server that answers too few gets 451 for the rest",
     LHLO + tx("ok@x", "short@x") + b"DATA\r\n" + BODY,
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.1.5 OK", "354 OK",
                   "250 2.0.0 <ok@x> Saved",
                   "451 4.3.0 <short@x> Temporary internal error"],
     [("a@b.example", ["ok@x", "short@x"], STORED)]),
    ("two transactions pipelined, null sender, RSET between",
     LHLO + tx("p@x", sender="") + b"DATA\r\n" + BODY + b"RSET\r\n"
     + tx("q@x") + b"DATA\r\n" + b"x\r\n.\r\n" + b"QUIT\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK", "250 2.0.0 <p@x> Saved",
                   "250 2.0.0 OK", "250 2.1.0 OK", "250 2.1.5 OK", "354 OK",
                   "250 2.0.0 <q@x> Saved", "221 2.0.0 mx.test Closing connection"],
     [("", ["p@x"], STORED), ("a@b.example", ["q@x"], b"x\n")]),
    ("data without a valid recipient", LHLO + tx("nobody@x") + b"DATA\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "550 5.1.1 <nobody@x> User doesn't exist: nobody@x",
                   "503 5.5.1 No valid recipients"], []),
    ("rcpt without mail", LHLO + b"RCPT TO:<x@y>\r\n",
     LHLO_REPLY + ["503 5.5.1 MAIL needed first"], []),
    ("nested mail", LHLO + tx() + tx(),
     LHLO_REPLY + ["250 2.1.0 OK", "503 5.5.1 MAIL already given"], []),
    ("parameters", LHLO + tx("r@x", params=" SIZE=500 BODY=8BITMIME SMTPUTF8")
     + b"RSET\r\n" + tx(params=" BODY=BINARYMIME") + tx(params=" SIZE=100001")
     + tx(params=" FOO=1") + b"RCPT TO:<x@y> NOTIFY=NEVER\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.0.0 OK",
                   "555 5.5.4 Unsupported BODY parameter",
                   "552 5.3.4 Message size exceeds fixed maximum message size",
                   "555 5.5.4 Unsupported parameter FOO",
                   "503 5.5.1 MAIL needed first"], []),
    ("smtputf8 addresses need the parameter",
     LHLO + "MAIL FROM:<jörg@x>\r\n".encode() + "MAIL FROM:<jörg@x> SMTPUTF8\r\n".encode()
     + "RCPT TO:<åsa@x>\r\n".encode() + b"DATA\r\n" + "Subject: é\r\n\r\nü\r\n.\r\n".encode(),
     LHLO_REPLY + ["553 5.6.7 Non-ASCII address needs SMTPUTF8 (RFC 6531)", "250 2.1.0 OK",
                   "250 2.1.5 OK", "354 OK", "250 2.0.0 <åsa@x> Saved"],
     [("jörg@x", ["åsa@x"], "Subject: é\n\nü\n".encode())]),
    ("bad addresses", LHLO + b"MAIL FROM:a@b\r\nMAIL FROM:<a@b\r\nMAIL FROM:<a b@c>\r\n"
     + b"MAIL TO:<a@b>\r\n" + b"MAIL FROM:<@relay:a@b>\r\nRCPT TO:<>\r\n"
     + b"RCPT TO:<" + b"x" * 300 + b"@y>\r\n",
     LHLO_REPLY + ["501 5.5.4 Address must be in angle brackets",
                   "501 5.5.4 Unterminated address", "501 5.1.3 Invalid address",
                   "501 5.5.4 Syntax: MAIL FROM:<address>", "250 2.1.0 OK",
                   "501 5.1.3 Recipient address required",
                   "501 5.5.4 Unterminated address"], []),
    ("vrfy, noop, unknown", LHLO + b"VRFY bob\r\nNOOP\r\nFOO\r\n",
     LHLO_REPLY + ["252 2.5.2 Cannot VRFY user, but will accept message and attempt "
                   "delivery", "250 2.0.0 OK", "500 5.5.2 Unknown command"], []),
    ("over-long command line", LHLO + b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n",
     LHLO_REPLY + ["500 5.5.2 Line too long", "250 2.0.0 OK"], []),
    ("dot handling: stuffed, a dot line inside, bare LF never ends the message",
     LHLO + tx("d@x") + b"DATA\r\n" + b"a\r\n..\r\n.x\r\nb\n.\nc\n.\r\nd\r\n.\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK", "250 2.0.0 <d@x> Saved"],
     [("a@b.example", ["d@x"], b"a\n.\nx\nb\n.\nc\n.\nd\n")]),
    ("empty message", LHLO + tx("e@x") + b"DATA\r\n.\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK", "250 2.0.0 <e@x> Saved"],
     [("a@b.example", ["e@x"], b"")]),
    ("over-size DATA: read to the end, one 552 per recipient, then the next works",
     LHLO + tx("o1@x", "o2@x") + b"DATA\r\n" + b"y" * 900 + b"\r\n" * 200 + b"z\r\n" * 40000
     + b".\r\n" + tx("n@x") + b"DATA\r\nok\r\n.\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.1.5 OK", "354 OK",
                   "552 5.3.4 <o1@x> Message size exceeds fixed maximum message size",
                   "552 5.3.4 <o2@x> Message size exceeds fixed maximum message size",
                   "250 2.1.0 OK", "250 2.1.5 OK", "354 OK", "250 2.0.0 <n@x> Saved"],
     [("a@b.example", ["n@x"], b"ok\n")]),
    ("over-long text line: one 554 per recipient",
     LHLO + tx("l1@x", "l2@x") + b"DATA\r\n" + b"a\r\n" + b"b" * 999 + b"\r\nc\r\n.\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.1.5 OK", "354 OK"]
     + [f"554 5.6.0 <l{i}@x> Message has a line longer than 1000 octets "
        "(RFC 5321 4.5.3.1.6)" for i in (1, 2)], []),
    ("a 1000-octet line (with CRLF) is fine, a stuffed dot counts",
     LHLO + tx("m@x") + b"DATA\r\n" + b"b" * 998 + b"\r\n." + b"c" * 997 + b"\r\n.\r\n"
     + tx("n@x") + b"DATA\r\n." + b"c" * 998 + b"\r\n.\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "354 OK", "250 2.0.0 <m@x> Saved",
                   "250 2.1.0 OK", "250 2.1.5 OK", "354 OK",
                   "554 5.6.0 <n@x> Message has a line longer than 1000 octets "
                   "(RFC 5321 4.5.3.1.6)"],
     [("a@b.example", ["m@x"], b"b" * 998 + b"\n" + b"c" * 997 + b"\n")]),
    ("bdat in chunks, LAST, no unstuffing, then a second transaction",
     LHLO + tx("c1@x", "c2@x") + b"BDAT 7\r\n.a\r\nb\r\n" + b"BDAT 0\r\nBDAT 6 LAST\r\n"
     + b".\r\nc\r\n" + tx("c3@x") + b"BDAT 3 LAST\r\nz\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.1.5 OK",
                   "250 2.0.0 7 octets received", "250 2.0.0 7 octets received",
                   "250 2.0.0 <c1@x> Saved", "250 2.0.0 <c2@x> Saved",
                   "250 2.1.0 OK", "250 2.1.5 OK", "250 2.0.0 <c3@x> Saved"],
     [("a@b.example", ["c1@x", "c2@x"], b".a\nb\n.\nc\n"), ("a@b.example", ["c3@x"], b"z\n")]),
    ("bdat without recipients: the chunk is read and refused; DATA after BDAT",
     LHLO + b"BDAT 6\r\nQUIT\r\n" + tx("nobody@x") + b"BDAT 4 LAST\r\nabcd"
     + b"RSET\r\n" + tx("b@x") + b"BDAT 2\r\nab" + b"DATA\r\n" + b"BDAT 1 LAST\r\n\n",
     LHLO_REPLY + ["503 5.5.1 MAIL needed first", "250 2.1.0 OK",
                   "550 5.1.1 <nobody@x> User doesn't exist: nobody@x",
                   "503 5.5.1 No valid recipients", "250 2.0.0 OK", "250 2.1.0 OK",
                   "250 2.1.5 OK", "250 2.0.0 2 octets received",
                   "503 5.5.1 DATA after BDAT is not allowed (RFC 3030)",
                   "250 2.0.0 <b@x> Saved"],
     [("a@b.example", ["b@x"], b"ab\n")]),
    ("bdat over-size: chunks accepted, 552 per recipient after LAST",
     LHLO + tx("s@x") + b"BDAT 60000\r\n" + b"x\r\n" * 20000 + b"BDAT 60000 LAST\r\n"
     + b"x\r\n" * 20000 + b"NOOP\r\n",
     LHLO_REPLY + ["250 2.1.0 OK", "250 2.1.5 OK", "250 2.0.0 60000 octets received",
                   "552 5.3.4 <s@x> Message size exceeds fixed maximum message size",
                   "250 2.0.0 OK"], []),
    ("bad BDAT syntax closes", LHLO + b"BDAT x\r\nNOOP\r\n",
     LHLO_REPLY + ["501 5.5.4 Syntax: BDAT size [LAST]"], []),
    ("too many errors close", b"X\r\n" * 30,
     ["500 5.5.2 Unknown command"] * 20 + ["421 4.7.0 Too many errors, closing connection"],
     []),
]


@pytest.mark.parametrize("pieces", [None, 1, 7, 4096])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_case(case, pieces):
    _, data, replies, deliveries = case
    got, delivered, _, _ = run(data, pieces)
    assert got == replies
    assert delivered == deliveries


def test_greeting_and_close_events():
    got, _, _, closed = run(b"LHLO x\r\nQUIT\r\nNOOP\r\n", None)
    assert closed and got[-1].startswith("221 ")


def test_discarded_sinks():
    # An aborted message's spool is handed back: a failed one, RSET mid-BDAT, EOF in DATA.
    _, _, discarded, _ = run(LHLO + tx("l@x") + b"DATA\r\n" + b"b" * 1200 + b"\r\n.\r\n"
                             + tx("m@x") + b"BDAT 1\r\nxRSET\r\n"
                             + tx("n@x") + b"DATA\r\npartial", None)
    assert discarded == 3


def test_no_size_limit_advertises_bare_size():
    got, _, _, _ = run(LHLO, None, P.Limits(hostname="h"))
    assert "250-SIZE" in got


def test_input_is_not_buffered_beyond_a_line_or_a_read():
    # A 10 MB line-free blast in DATA (over-long line) and as a command: the
    # session's own buffer stays small whatever it is fed.
    session = P.Session(P.Limits(hostname="h"), Sink)
    for ev in session.feed(LHLO + tx("a@x")):
        if isinstance(ev, P.VerifyRecipient):
            session.answer(P.Verdict(True))
    session.feed(b"DATA\r\n")
    for _ in range(160):
        session.feed(b"q" * 65536)
        assert len(session._buf) <= 2
    session2 = P.Session(P.Limits(hostname="h"), Sink)
    for _ in range(160):
        session2.feed(b"q" * 65536)
        assert len(session2._buf) <= P.MAX_COMMAND_LINE + 65536


def test_current_umask_never_changes_the_umask(monkeypatch):
    # The LMTP server's deliveries run in threads: reading the umask must not set it,
    # even for an instant (another thread's mkdir would get the temporary mask).
    import os
    from mailslot.storage import dirs
    old = os.umask(0o027)
    try:
        def no_umask(*args):
            raise AssertionError("os.umask called")
        monkeypatch.setattr(os, "umask", no_umask)
        assert dirs.current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)


def test_too_many_errors_closes_once_whatever_the_cut():
    """The 421 is the last reply, however the input is cut (found by the LMTP fuzzer:
    an over-long line after the closing error was read and answered with a second
    421 when it came in the same read, not when it came in the next)."""
    from tests.fuzz.test_fuzz_lmtp import play

    data = (b"HELP\r\n" * 19 + b"x" * 1200 + b"\r\n" + b"y" * 1200 + b"\r\nHELP\r\n")
    whole, _ = play(data, [], [])
    assert whole.count(b"421 ") == 1 and whole.endswith(b"closing connection\r\n"), whole
    for cut in range(len(data) - 1300, len(data)):
        assert play(data, [cut], [])[0] == whole, cut
