"""The body test's streaming matcher agrees with matching the whole value.

body :contains and :is read a part in pieces (bodytext.STREAM_CHUNK bytes, cut
anywhere: inside a UTF-8 sequence, a base64 quantum, a quoted-printable escape or
the key itself); :matches builds the value whole. `:contains "k"` must decide
as `:matches "*k*"` does and `:is "k"` as `:matches "k"`, with tiny pieces and
with the real size, for every transform, encoding and key here.
"""

import pytest

from mailslot import sieve
from mailslot.sieve import bodytext
from mailslot.sieve.mail import RawMessage

TEXT = "Grüße aus Köln, naïve café — ünïcödé everywhere. The END marker."

MESSAGE = ("""From: a@example.org
Subject: parts
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble text here
--outer
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

%s
--outer
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus K=F6ln, a soft=
 break and =3D signs, trailing  =20
last qp line
--outer
Content-Type: text/html; charset=utf-8

<html><body><p>Hello <b>bold</b> &amp; &lt;tags&gt;</p><script>no()</script>
tail of html</body></html>
--outer
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

%s
--outer--
the epilogue
""" % (__import__("base64").encodebytes(TEXT.encode()).decode().strip(),
       __import__("base64").encodebytes(
           b"Subject: inner\n\ninner body with Umlaut \xc3\xbc\n").decode().strip())
).encode()

KEYS = ["END marker", "end MARKER", "Köln", "ünïcödé every", "soft break",
        "= signs", "trailing", "Hello bold & <tags>", "tail of html", "no()",
        "preamble", "epilogue", "Subject: inner", "Umlaut ü", "café —",
        "not there at all", "e", "GRÜSSE", "Grüße aus Köln, naïve", "last qp line"]
TRANSFORMS = [':raw', ':text', ':content "text"', ':content ""',
              ':content "message/rfc822"']


def decide(test, transform, key):
    script_text = ('require ["body", "fileinto"];\n'
                   'if body %s %s "%s" { fileinto "Yes"; }\n' % (transform, test, key))
    return script_text


def run(tmp_path, text, data=MESSAGE):
    path = tmp_path / "s.sieve"
    path.write_text(text, encoding="utf-8")
    res = sieve.run([str(path)], RawMessage(data), {"from": "a@b.c", "to": "d@e.f"},
                    cache=False)
    assert res.status == "success", res.errors
    return [a["mailbox"] for a in res.actions if a["type"] == "store"] == ["Yes"]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1 << 18])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_contains_streams_as_matches_does(tmp_path, monkeypatch, chunk, transform):
    monkeypatch.setattr(bodytext, "STREAM_CHUNK", chunk)
    hits = 0
    for key in KEYS:
        streamed = run(tmp_path, decide(":contains", transform, key))
        whole = run(tmp_path, decide(":matches", transform, "*" + key + "*"))
        assert streamed == whole, (transform, key)
        hits += streamed
    assert 0 < hits < len(KEYS)          # the keys do tell the parts apart


@pytest.mark.parametrize("chunk", [2, 1 << 18])
def test_is_streams_as_matches_does(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(bodytext, "STREAM_CHUNK", chunk)
    hits = 0
    for key in ["preamble text here", "PREAMBLE TEXT HERE", "preamble text", "",
                TEXT, TEXT + " ", "tail"]:
        for transform in TRANSFORMS:
            streamed = run(tmp_path, decide(":is", transform, key))
            whole = run(tmp_path, decide(":matches", transform, key))
            assert streamed == whole, (transform, key)
            hits += streamed
    assert hits >= 2


def test_any_buffer_serves_as_the_message(tmp_path):
    # The host may hand a bytearray or an mmap of its spool file, not only bytes:
    # header, body, MIME and the edited copy work on each alike.
    import mmap
    from mailslot.message import with_edited_header
    from mailslot.sieve.mail import MessageView
    path = tmp_path / "m"
    path.write_bytes(MESSAGE)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    copies = set()
    for data in (MESSAGE, bytearray(MESSAGE), mapped):
        assert run(tmp_path, decide(":contains", ':content "text"', "Köln"), data)
        assert run(tmp_path, decide(":matches", ":text", "*END marker*"), data)
        view = MessageView(RawMessage(data))
        view.add_field("X-Top", "1", False)
        view.delete_fields([i for i, (name, _) in enumerate(view.fields())
                            if name == "Subject"])
        out = tmp_path / "out"
        with open(out, "wb") as f:
            size, _ = with_edited_header(RawMessage(data), view.snapshot().pieces()) \
                .write_to(f.fileno())
        copies.add(out.read_bytes())
        assert size == len(MESSAGE) - len(b"Subject: parts\n") + len(b"X-Top: 1\n")
    assert copies == {b"X-Top: 1\n" + MESSAGE.replace(b"Subject: parts\n", b"")}
