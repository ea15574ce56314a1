"""The Sieve header view: the whole header, one parser, as Pigeonhole sees it.

Issue 20.3: the view used to stop at 1000 fields or 100 KiB, so a field after
that (X-Spam-Flag: YES) went unseen by a delivery while Pigeonhole's sieve-test
saw it. Each message here goes three ways with the same script -- Pigeonhole's
sieve-test (the oracle), mailslot's sieve-test, and the delivery's own view (the
engine's Message read from a file, as a delivery reads stdin) -- and all three
must file it into the same folders.
"""

import ast
import os
from pathlib import Path

import pytest

from mailslot import sieve
from mailslot.message import read_message
from mailslot.sieve.mail import RawMessage
from tests.sieve.casefile import Case, pigeonhole_available, run_mailslot, \
    run_pigeonhole

SCRIPT = """require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :is "X-Spam-Flag" "YES" { fileinto "Junk"; }
if header :contains "X-Long" "END-OF-LONG" { fileinto "Long"; }
if header :count "ge" :comparator "i;ascii-numeric" "X-Dup" "5000" { fileinto "Counted"; }
if exists "X-After" { fileinto "After"; }
if header :is "Subject" "last field" { fileinto "Subject"; }
"""

TAIL = b"X-Spam-Flag: YES\nX-After: 1\nSubject: last field\n\nbody\n"


def five_thousand_fields():
    return (b"From: a@example.org\n" + b"".join(b"X-Dup: %d\n" % i for i in range(5000))
            + TAIL)


def a_200k_field():
    # One field of 200 KiB, folded every 70 characters (a space or a TAB).
    pieces = []
    for i in range(200 * 1024 // 72):
        pieces.append(b"w" * 70 + (b"\n\t" if i % 2 else b"\n "))
    return (b"From: a@example.org\nX-Long: " + b"".join(pieces) + b"END-OF-LONG\n"
            + TAIL)


MESSAGES = {"5000-fields": five_thousand_fields, "200KiB-field": a_200k_field}


def folders(printed):
    mark = "store message in folder: "
    return sorted(line.split(mark, 1)[1].strip() for line in printed.splitlines()
                  if mark in line)


def case_for(tmp_path, message):
    path = tmp_path / "view.case"
    path.write_bytes(b"== script\n" + SCRIPT.encode() + b"== message\n" + message)
    return Case(path)


def delivery_folders(tmp_path, message):
    """What the delivery's own view decides: the engine's Message, from a file."""
    script = tmp_path / "deliver.sieve"
    script.write_text(SCRIPT)
    path = tmp_path / "msg"
    path.write_bytes(message)
    fd = os.open(path, os.O_RDONLY)
    try:
        res = sieve.run([str(script)], read_message(fd),
                        {"from": "a@example.org", "to": "b@example.org"})
    finally:
        os.close(fd)
    assert res.status == "success", res.errors
    return sorted(a["mailbox"] for a in res.actions if a["type"] == "store")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_delivery_sees_the_whole_header(tmp_path, name):
    message = MESSAGES[name]()
    want = ["After", "Counted", "Junk", "Subject"] if name == "5000-fields" \
        else ["After", "Junk", "Long", "Subject"]
    assert delivery_folders(tmp_path, message) == want


@pytest.mark.skipif(not pigeonhole_available(), reason="needs root and sieve-test")
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_header_view_agrees_with_pigeonhole(tmp_path, name):
    message = MESSAGES[name]()
    case = case_for(tmp_path, message)
    ph_rc, ph_out, ph_err = run_pigeonhole(case)
    assert ph_rc == 0, ph_err
    work = tmp_path / "ms"
    work.mkdir()
    rc, out, err = run_mailslot(case, work)
    assert rc == 0, err
    assert out == ph_out
    assert delivery_folders(tmp_path, message) == folders(ph_out)
    assert "Junk" in folders(ph_out)


TRICKY = (b"Received: from a\n\tby b;\n  Fri, 4 Dec 2026\n"
          b"X-Spaced   : value with space before the colon\n"
          b"this line has no colon\n"
          b"Subject:  two  spaces\t\n"
          b":no name\n"
          b"X-Nul: a\x00b\n"
          b"X-Empty:\n"
          b"X-Crlf: value\r\n"
          b"\nbody\n")


def test_one_parser_for_the_delivery_and_sieve(tmp_path):
    # Issue 14.4: the delivery's view (message.py) and Sieve's (sieve/mail.py) are
    # the same parser: same names, unfolding and field-name rules.
    path = tmp_path / "m"
    path.write_bytes(TRICKY)
    fd = os.open(path, os.O_RDONLY)
    try:
        delivery = read_message(fd).header_fields()
    finally:
        os.close(fd)
    view = sieve.mail.MessageView(RawMessage(TRICKY)).fields()
    assert delivery == list(view)
    assert delivery == [("Received", "from a by b;  Fri, 4 Dec 2026"),
                        ("X-Spaced", "value with space before the colon"),
                        ("Subject", "two  spaces"), ("X-Nul", "ab"), ("X-Empty", ""),
                        ("X-Crlf", "value")]


def _imports(path):
    """Every module a file imports, top-level and inside functions."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_mail_and_mime_have_no_import_cycle():
    # Issue 14.6: mime.py builds on mail.py; mail.py must not import mime.py back.
    here = Path(sieve.__file__).parent
    assert ".mail" in _imports(here / "mime.py")
    assert not any(m.endswith("mime") for m in _imports(here / "mail.py"))
