"""The bytes of an mbox message (mailslot.storage.mbox_format), case by case.

Every case is encoded whole and in every chunking from 1 byte up, which must give
the same bytes: the encoder is a stream and its boundaries must not show.
"""

import mailbox
import os
import random
import time

import pytest

from mailslot.storage.mbox_format import (HEADER_NAME_HOLD, MboxEncoder, clean_sender,
                                          flag_headers, from_line, quote_lines)
from tests.mbox.mboxtest import FROM_LINE, check_structure, unquote_mboxrd

# (message, mboxrd form, mboxo form) -- the forms without From_ line and separator.
CASES = {
    "plain": (b"Subject: a\n\nbody\n", b"Subject: a\n\nbody\n", b"Subject: a\n\nbody\n"),
    "From in body": (b"S: a\n\nFrom me\n", b"S: a\n\n>From me\n", b"S: a\n\n>From me\n"),
    "quoted From": (b"S: a\n\n>From x\n>>From y\n", b"S: a\n\n>>From x\n>>>From y\n",
                    b"S: a\n\n>From x\n>>From y\n"),
    "From not at line start": (b"S: a\n\nsay From x\n x>From\n", b"S: a\n\nsay From x\n x>From\n",
                               b"S: a\n\nsay From x\n x>From\n"),
    "From without space": (b"S: a\n\nFrom\nFromage\n", b"S: a\n\nFrom\nFromage\n",
                           b"S: a\n\nFrom\nFromage\n"),
    "last line From": (b"S: a\n\nFrom x", b"S: a\n\n>From x\n", b"S: a\n\n>From x\n"),
    "last line Fro": (b"S: a\n\nFro", b"S: a\n\nFro\n", b"S: a\n\nFro\n"),
    "From_ line in headers": (b"From x\nS: a\n\n", b">From x\nS: a\n\n", b">From x\nS: a\n\n"),
    "no final newline": (b"S: a\n\nend", b"S: a\n\nend\n", b"S: a\n\nend\n"),
    "empty": (b"", b"", b""),
    "headers only": (b"S: a\n", b"S: a\n", b"S: a\n"),
    "blank lines": (b"S: a\n\n\n\nFrom\n\n", b"S: a\n\n\n\nFrom\n\n", b"S: a\n\n\n\nFrom\n\n"),
    # Dovecot's mbox_save_drop_headers, with continuations, in any case.
    "forged mbox metadata": (
        b"Subject: x\nStatus: RO\nX-Status: D\nX-UID: 5\nx-imapbase: 1 2\n  cont\n"
        b"X-Keywords: $Junk\nContent-Length: 0\nX-IMAP: 1\nX-Delivery-ID: z\n"
        b"X-Other: kept\nStatus : spaced\n\nStatus: in the body\n",
        b"Subject: x\nX-Other: kept\n\nStatus: in the body\n",
        b"Subject: x\nX-Other: kept\n\nStatus: in the body\n"),
    "8bit and NUL": (b"S: a\n\n" + bytes(range(256)) + b"\n",) * 3,
    # Dovecot's reader strips blanks before the colon whatever their number, and
    # ends a name at a NUL (issue 20.1: these set flags when read back).
    "padded forged metadata": (
        b"S: a\nStatus" + b" " * 70 + b": RO\nX-Status \t \t: AFD\n"
        b"X-IMAPbase" + b"\t" * 100 + b": 1 99\nStatus\0junk: RO\nX-UID \0 : 7\n"
        b"Content-Length" + b" " * 63 + b":\n 5\nX-Keywords" + b" " * 200 + b": $Junk\n"
        b"x-delivery-id\0: z\n\nb\n",
        b"S: a\n\nb\n", b"S: a\n\nb\n"),
    # Names that only look like them are a sender's data, kept as dovecot-lda keeps
    # them: white space inside the name, no colon, a CR before the colon.
    "lookalike fields kept": (
        b"S: a\nStatus  x: RO\nStatus\nX-UID   \nStatus\r: RO\nX-Statuses: A\n"
        b"Stat: R\n\n",
        b"S: a\nStatus  x: RO\nStatus\nX-UID   \nStatus\r: RO\nX-Statuses: A\n"
        b"Stat: R\n\n",
        b"S: a\nStatus  x: RO\nStatus\nX-UID   \nStatus\r: RO\nX-Statuses: A\n"
        b"Stat: R\n\n"),
    ">From header split": (b">>From x\nS: a\n\n", b">>>From x\nS: a\n\n",
                           b">>From x\nS: a\n\n"),
}


@pytest.mark.parametrize("pad", [5000, HEADER_NAME_HOLD - 12, HEADER_NAME_HOLD + 1, 300_000])
def test_any_padding_before_the_colon_is_dropped(pad):
    """A dropped name with any amount of blanks before its colon is dropped, in
    every chunking; past HEADER_NAME_HOLD even without a colon (it is junk)."""
    for tail in (b": RO\n", b"x: RO\n"):
        message = b"S: a\nStatus" + b" \t" * (pad // 2) + tail + b"T: b\n\nbody\n"
        undecided_too_long = 6 + pad > HEADER_NAME_HOLD
        want_kept = tail.startswith(b"x") and not undecided_too_long
        for chunk in (1000, 4096, 65536, len(message)):
            out = encode(message, "mboxrd", chunk)
            assert (b"Status" in out) == want_kept, (pad, tail, chunk)
            assert out.startswith(b"S: a\n") and out.endswith(b"T: b\n\nbody\n")


def test_name_hold_is_bounded():
    """A 20 MB undecided line never holds more than HEADER_NAME_HOLD + a chunk."""
    encoder = MboxEncoder("mboxrd")
    encoder.feed(b"S: a\nX-UID")
    for _ in range(320):
        assert encoder.feed(b" " * 65536) == b""
        assert len(encoder.carry) <= HEADER_NAME_HOLD
    assert encoder.feed(b": 9\nT: b\n\n") == b"T: b\n\n"


def encode(data, variant, chunk, extra=b""):
    encoder = MboxEncoder(variant, extra)
    out = b"".join(encoder.feed(data[i:i + chunk]) for i in range(0, len(data), chunk))
    return out + encoder.finish()


def expected(case, variant):
    message, rd, o = CASES[case]
    if case == "8bit and NUL":
        return quote_lines(message, variant == "mboxrd")
    return rd if variant == "mboxrd" else o


@pytest.mark.parametrize("variant", ["mboxrd", "mboxo"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_case_in_every_chunking(case, variant):
    message = CASES[case][0]
    want = expected(case, variant)
    for chunk in list(range(1, 12)) + [64, 4096, len(message) + 1]:
        assert encode(message, variant, chunk) == want, (case, variant, chunk)


@pytest.mark.parametrize("variant", ["mboxrd", "mboxo"])
def test_no_line_inside_can_start_a_message(variant):
    rng = random.Random(4)
    pieces = [b"From ", b">", b"\n", b"x", b"F", b"rom", b" ", b"\n\n", b"Status: R\n"]
    for _ in range(2000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        out = encode(b"Subject: t\n\n" + body, variant, rng.randint(1, 9))
        assert not (b"\n" + out).count(b"\nFrom "), out
        if variant == "mboxrd":
            # mboxrd is reversible: unquoting gives the message back exactly.
            want = b"Subject: t\n\n" + body
            assert unquote_mboxrd(out) == (want if want.endswith(b"\n") else want + b"\n")


def test_long_lines_and_quote_runs_across_chunks():
    run = b">" * 300_000
    message = b"S: a\n\n" + run + b"From x\n" + b"y" * 600_000 + b"\nFrom z\n"
    for chunk in (1000, 65536, 256 * 1024):
        out = encode(message, "mboxrd", chunk)
        assert out == b"S: a\n\n>" + run + b"From x\n" + b"y" * 600_000 + b"\n>From z\n"


def test_flag_headers_go_at_the_end_of_the_header_block():
    extra = flag_headers(("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"))
    assert extra == b"Status: R\nX-Status: AFTD\n"
    assert flag_headers(("\\Recent", "$Label")) == b""
    assert encode(b"S: a\n\nbody\n", "mboxrd", 3, extra) == b"S: a\n" + extra + b"\nbody\n"
    # A message without a body still gets them, after its last header line.
    assert encode(b"S: a", "mboxrd", 2, extra) == b"S: a\n" + extra
    # A forged Status: does not survive next to ours.
    assert encode(b"Status: O\nS: a\n\n", "mboxrd", 5, extra) == b"S: a\n" + extra + b"\n"


def test_keywords_go_into_x_keywords_and_a_forged_one_is_dropped():
    # Keywords are passed validated (storage/keywords.py); flags alone add none.
    extra = flag_headers(("\\Seen", "Junk"), ["Junk", "$label1"])
    assert extra == b"Status: R\nX-Keywords: Junk $label1\n"
    assert flag_headers((), ["Junk"]) == b"X-Keywords: Junk\n"
    forged = b"X-Keywords: $Forged\nS: a\n\nbody\n"
    for chunk in (1, 7, 1000):
        assert encode(forged, "mboxrd", chunk, extra) == b"S: a\n" + extra + b"\nbody\n"


@pytest.mark.parametrize("sender,word", [
    ("", "MAILER-DAEMON"), ("<>", "MAILER-DAEMON"), ("a@example.org", "a@example.org"),
    ("<a@example.org>", "a@example.org"), ("a b@x", "a_b@x"), ("a\nFrom x@y", "a_From_x@y"),
    ("tab\there", "tab_here"), ("ü@exämple.org", "ü@exämple.org"), ("x" * 1000, "x" * 512),
])
def test_from_line_is_one_safe_line_with_dovecots_date(sender, word):
    assert clean_sender(sender) == word
    when = time.mktime((2026, 3, 5, 7, 8, 9, 0, 0, -1))
    line = from_line(sender, when)
    assert line == f"From {word}  Thu Mar 05 07:08:09 2026\n".encode()
    assert FROM_LINE.match(line[:-1])


def test_python_mailbox_reads_every_case_back(tmp_path):
    path = tmp_path / "mbox"
    messages = [CASES[case][0] for case in sorted(CASES)]
    with open(path, "wb") as f:
        for message in messages:
            f.write(from_line("a@example.org") + encode(message, "mboxrd", 7) + b"\n")
    data = path.read_bytes()
    assert check_structure(data) == len(messages)
    box = mailbox.mbox(str(path), create=False)
    got = [unquote_mboxrd(box.get_bytes(k)) for k in box.keys()]
    box.close()
    want = []
    for message in messages:
        kept = encode(message, "mboxrd", 100_000)   # headers Dovecot drops stay dropped
        want.append(unquote_mboxrd(kept))
    assert got == want
    assert got[sorted(CASES).index("From in body")] == CASES["From in body"][0]
    os.unlink(path)


def test_a_50_mb_padded_field_is_encoded_in_bounded_memory():
    """Peak RSS of a child encoding "X-UID" + 50 MB of blanks (then a colon), fed in
    64 KiB chunks as the spool feeds it: the field is dropped, memory barely moves."""
    import json
    import resource
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            encoder = MboxEncoder("mboxrd")
            out = [encoder.feed(b"Subject: x\nX-UID")]
            blanks = b" \t" * 32768
            for _ in range(800):                       # 800 x 64 KiB = 50 MiB
                out.append(encoder.feed(blanks))
            out.append(encoder.feed(b": 7\nT: b\n\nbody\n"))
            out.append(encoder.finish())
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            os.write(write_end, json.dumps([b"".join(out).decode(), grown]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        text, grown_kib = json.loads(f.read())
    assert text == "Subject: x\nT: b\n\nbody\n"
    assert grown_kib < 4 * 1024, grown_kib           # under 4 MiB above the start
