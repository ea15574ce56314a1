"""Input generators the fuzzers share: bytes biased towards what breaks mail parsers."""

from hypothesis import strategies as st

# Pieces that matter to header and mbox parsers, mixed with arbitrary bytes.
TOKENS = [b"\n", b"\r\n", b"\r", b"\0", b":", b" ", b"\t", b"From ", b">From ", b">>From ",
          b"From:", b"Subject: x", b"Status: RO", b"X-UID: 1", b"Content-Length: 3",
          b"\n\n", b"\r\n\r\n", b"\n ", b"\n\t", b"\xff\xfe", b"=?utf-8?b?w6k=?=", b"F",
          b"Fro", b"From", b">", b">>", b"X-Keywords: a", b"\n.\n", b"\x01"]

token = st.sampled_from(TOKENS) | st.binary(max_size=40)
mail_bytes = st.lists(token, max_size=60).map(b"".join)


def cuts(data, draw_points):
    """data split at the given points (sorted, in range)."""
    points = sorted({min(max(p, 0), len(data)) for p in draw_points})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out
