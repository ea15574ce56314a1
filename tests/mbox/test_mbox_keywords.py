"""mbox keywords: X-Keywords, limited to what the first message's X-IMAPbase declares.

Dovecot 2.3 ignores a message's whole X-Keywords field when one name in it is not
declared in the X-IMAPbase field of the mbox's first message (mbox.py explains);
the Dovecot side of this is in tests/interop/test_interop_keywords.py.
"""

import pytest

from mailslot.storage import open_storage
from mailslot.storage.mbox_format import IMAPBASE_READ_MAX, declared_keywords

from tests.storage.sources import BytesSource, message

FIRST = (b"From a@b  Sun Nov 22 10:00:00 2026\nSubject: one\n"
         b"X-IMAPbase: 1795300000 0000000003 $Label1 Junk\nX-UID: 1\n\nbody\n\n")

DECLARED_CASES = {
    "declared": (FIRST, {"$label1", "junk"}),
    "none declared": (b"From a  x\nX-IMAPbase: 1 2\n\n", set()),
    "c-client X-IMAP": (b"From a  x\nX-IMAP: 1 2 Work\n\nFOLDER INTERNAL DATA\n", {"work"}),
    "folded": (b"From a  x\nX-IMAPbase: 1 2 A\n  B\n\tC\nS: x\n\n", {"a", "b", "c"}),
    "name case and space": (b"From a  x\nx-imapbase : 1 2 K\n\n", {"k"}),
    "no field": (b"From a  x\nSubject: s\n\nX-IMAPbase: 1 2 Body\n", None),
    "in a later message only": (b"From a  x\nS: 1\n\nb\n\nFrom a  x\nX-IMAPbase: 1 2 K\n\n",
                                None),
    "empty mbox": (b"", None),
    "not an mbox": (b"garbage\nX-IMAPbase: 1 2 K\n\n", None),
}


@pytest.mark.parametrize("case", sorted(DECLARED_CASES))
def test_declared_keywords(case):
    data, expected = DECLARED_CASES[case]
    assert declared_keywords(data) == expected


@pytest.fixture
def storage(tmp_path):
    return open_storage("mbox:~/mail", user="t", home=str(tmp_path), hostname="h")


def inbox(tmp_path):
    return tmp_path / "mail" / "inbox"


def keyword_fields(data):
    return [line for line in data.split(b"\n") if line.lower().startswith(b"x-keywords:")]


def test_without_x_imapbase_every_keyword_is_written(storage, tmp_path):
    r = storage.save(("INBOX",), BytesSource(message()), flags=("Junk", "Fresh"))
    assert keyword_fields(inbox(tmp_path).read_bytes()) == [b"X-Keywords: Junk Fresh"]
    assert not [w for w in r.warnings if w.startswith("keyword")]


def test_with_x_imapbase_only_declared_keywords_are_written(storage, tmp_path):
    storage.create_mailbox(("INBOX",))
    inbox(tmp_path).write_bytes(FIRST)
    r = storage.save(("INBOX",), BytesSource(message()), flags=("junk", "Fresh", "$label1",
                                                                   "\\Seen", "Other"))
    data = inbox(tmp_path).read_bytes()
    assert data.startswith(FIRST)                       # the first message is untouched
    assert keyword_fields(data[len(FIRST):]) == [b"X-Keywords: junk $label1"]
    assert b"Status: R\n" in data[len(FIRST):]
    warned = [w for w in r.warnings if w.startswith("keywords")]
    assert len(warned) == 1 and "Fresh Other" in warned[0] and "X-IMAPbase" in warned[0]


def test_with_nothing_declared_no_field_is_written(storage, tmp_path):
    storage.create_mailbox(("INBOX",))
    first = b"From a  x\nX-IMAPbase: 1 2\n\nbody\n\n"
    inbox(tmp_path).write_bytes(first)
    r = storage.save(("INBOX",), BytesSource(message()), flags=("Fresh",))
    assert keyword_fields(inbox(tmp_path).read_bytes()) == []
    assert len(r.warnings) == 1


def test_x_imapbase_beyond_the_read_limit_is_not_seen(storage, tmp_path):
    storage.create_mailbox(("INBOX",))
    first = (b"From a  x\nX-Long: " + b"y" * IMAPBASE_READ_MAX + b"\n"
             b"X-IMAPbase: 1 2 Junk\n\nbody\n\n")
    inbox(tmp_path).write_bytes(first)
    storage.save(("INBOX",), BytesSource(message()), flags=("Fresh",))
    assert keyword_fields(inbox(tmp_path).read_bytes()[len(first):]) == [b"X-Keywords: Fresh"]
