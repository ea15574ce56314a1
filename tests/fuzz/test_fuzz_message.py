"""Fuzzing the header reader (message.py): any bytes, any read sizes.

Properties: header_end and iter_fields stay within their bounds and never raise;
every field's raw span lies inside the header and names hold no colon; reading a
message from a pipe in any cut gives back exactly its bytes (CRLF as LF, a leading
From_ line taken off), however the input arrives."""

import os
import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mailslot.message import header_end, iter_fields, read_message
from tests.fuzz.strategies import cuts, mail_bytes


@given(mail_bytes, st.integers(0, 50))
@example(b"\n\n\n\n\n\n>From X-Keywords: a :", 25)     # found by this fuzzer: " :"
def test_header_parser_stays_in_bounds(data, start):
    start = min(start, len(data))
    end = header_end(data, start)
    assert start <= end <= len(data)
    last = start
    for first, stop, name, value in iter_fields(data, start, end):
        assert last <= first < stop <= end
        assert name and b":" not in name and b"\n" not in name
        assert b"\n" not in value and b"\0" not in value
        last = stop


def expected(data):
    """What read_message must make of data: CRLF -> LF, a From_ line removed."""
    lf = data.replace(b"\r\n", b"\n")
    if lf.startswith(b"From "):
        nl = lf.find(b"\n")
        lf = lf[nl + 1:] if nl >= 0 else b""
    return lf


@given(mail_bytes, st.lists(st.integers(0, 400), max_size=6))
def test_message_read_through_a_pipe_in_any_cut_is_its_bytes(data, points):
    r, w = os.pipe()

    def writer():
        try:
            for piece in cuts(data, points):
                if piece:
                    os.write(w, piece)
        finally:
            os.close(w)
    t = threading.Thread(target=writer)
    t.start()
    try:
        message = read_message(r)
        got = bytes(message.read_bytes())
    finally:
        t.join()
        os.close(r)
    assert got == expected(data)
    buf, end = message.header_buffer()
    assert 0 <= end <= len(buf)


@pytest.mark.parametrize("header", [b" :\nSubject: x\n\n", b"\t : v\nSubject: x\n\n",
                                    b"Subject: x\n   :\n\n"])
def test_white_space_before_a_colon_is_no_field_name(header):
    """Regression (found by the fuzzer above): a line with only white space before
    its colon was a field with an empty name."""
    names = [name for _f, _s, name, _v in iter_fields(header)]
    assert names == [b"Subject"], names
