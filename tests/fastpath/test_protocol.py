"""The hand-off frame's decoder (pyside/mailslot/handoff/protocol.py): what it
accepts and every rule it refuses on, data-driven. The C encoder's side is
checked end to end (test_fallback: a frame the front sent, decoded here) and by
the libFuzzer target (canonical round trips)."""

import struct

import pytest

from mailslot.handoff import protocol as p

INF = p.INFINITY
LIMITS = [(0, INF)] * p.NLIMITS


def frame(umask=0o22, argv=(b"lda", b"-d", b"bob"), env=None, limits=None):
    return p.encode_request(p.Request(umask, list(argv), env or {"PATH": "/bin"},
                                      limits or LIMITS))


def with_body(body):
    return p.MAGIC + struct.pack(">I", len(body)) + body


def test_a_request_decodes_to_what_was_encoded():
    limits = [(i, i * 2) for i in range(p.NLIMITS)]
    req = p.decode_request(frame(0o77, [b"x", b"-m", b"\xff\xfe"],
                                 {"HOME": "/h", "TZ": "UTC"}, limits))
    assert req.umask == 0o77 and req.argv == [b"x", b"-m", b"\xff\xfe"]
    assert req.env == {"HOME": "/h", "TZ": "UTC"} and req.limits == limits


GOOD = frame()
BAD = [
    ("empty", b""),
    ("short header", GOOD[:7]),
    ("bad magic", b"MSH2" + GOOD[4:]),
    ("length larger than the frame", GOOD[:4] + struct.pack(">I", len(GOOD) - 7) + GOOD[8:]),
    ("length smaller than the frame", GOOD + b"\0"),
    ("truncated body", with_body(GOOD[8:-1])),
    ("body over MAX_BODY", p.MAGIC + struct.pack(">I", p.MAX_BODY + 1)),
    ("umask over 0777", frame(umask=0o1000)),
    ("no argv", with_body(struct.pack(">IHH", 0o22, 0, 0))),
    ("argument over MAX_ARG", frame(argv=[b"x", b"y" * (p.MAX_ARG + 1)])),
    ("NUL in an argument", frame(argv=[b"x", b"a\0b"])),
    ("variable not allowed", frame(env={"LD_PRELOAD": "/x.so"})),
    ("variable without =", with_body(struct.pack(">IH", 0, 1) + b"\0\1x" +
                                     struct.pack(">H", 1) + b"\0\4PATH")),
    ("soft above hard", frame(limits=[(2, 1)] + LIMITS[1:])),
]


@pytest.mark.parametrize("name, data", BAD, ids=[b[0] for b in BAD])
def test_broken_frames_are_refused(name, data):
    with pytest.raises(p.ProtocolError):
        p.decode_request(data)


def test_duplicate_variable_is_refused():
    body = bytearray(frame(env={"PATH": "/a"}))
    entry = b"PATH=/a"
    i = body.index(entry)
    doubled = (bytes(body[8:i - 4]) + struct.pack(">H", 2) + struct.pack(">H", len(entry)) +
               entry + struct.pack(">H", len(entry)) + entry + bytes(body[i + len(entry):]))
    with pytest.raises(p.ProtocolError, match="twice"):
        p.decode_request(with_body(doubled))


def test_limits_out_of_order_are_refused():
    data = bytearray(frame())
    tail = len(data) - p.NLIMITS * 17
    data[tail] = 1                      # the first limit claims to be resource 1
    with pytest.raises(p.ProtocolError, match="order"):
        p.decode_request(bytes(data))
