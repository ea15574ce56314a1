"""The append journal: every state an interrupted append can leave, settled next time.

The states are made the way an interrupted delivery makes them -- a journal record
written before the append (MboxJournal.begin) and then only part of the append --
and the next real save must leave whole messages only, never touching mail it did
not write itself. EFBIG in the middle of an append is a real RLIMIT_FSIZE.
"""

import os
import resource

import pytest

from mailslot.storage import open_storage
from mailslot.storage.mbox_format import MboxEncoder, from_line
from mailslot.storage.mbox_journal import MboxJournal
from tests.mbox.mboxtest import check_structure, journal_active, read_messages, verify_mbox
from tests.storage.sources import BytesSource, message

SENDER = "x@example.org"


def make(home):
    return open_storage("mbox:~/mail", user="t", home=str(home), hostname="h")


def append_bytes(msg):
    encoder = MboxEncoder()
    return from_line(SENDER) + encoder.feed(msg) + encoder.finish() + b"\n"


def interrupt(home, data, written, record_prefix=None, torn=False, streamed=False):
    """Leave the INBOX as a delivery killed after writing `written` bytes of data."""
    inbox = os.path.join(home, "mail", "inbox")
    jdir = os.path.join(home, "mail", ".imap", "INBOX")
    dir_fd = os.open(jdir, os.O_RDONLY | os.O_DIRECTORY)
    mbox_fd = os.open(inbox, os.O_RDWR | os.O_APPEND)
    try:
        length = os.fstat(mbox_fd).st_size
        journal = MboxJournal(dir_fd, jdir, fsync=False)
        journal.begin(mbox_fd, length, length, None if streamed else len(data),
                      record_prefix if record_prefix is not None else data[:512])
        if torn:
            os.ftruncate(journal.fd, 30)
        journal.close()
        os.write(mbox_fd, data[:written])
    finally:
        os.close(mbox_fd)
        os.close(dir_fd)
    return inbox, length


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    make(path).save(("INBOX",), BytesSource(message(1)))
    return str(path)


def subjects(inbox):
    return [raw.split(b"\n", 3)[2] for _f, raw in read_messages(inbox)]


@pytest.mark.parametrize("written", [1, 40, 200, 1000])
def test_partial_append_is_rolled_back(home, written):
    data = append_bytes(message(2, body="x" * 2000 + "\n"))
    inbox, length = interrupt(home, data, written)
    with pytest.raises(AssertionError):
        check_structure(open(inbox, "rb").read())           # broken until repaired
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert any("rolled back an interrupted delivery" in w for w in result.warnings)
    assert result.offset == length
    assert subjects(inbox) == [b"Subject: test 1", b"Subject: test 3"]
    assert check_structure(open(inbox, "rb").read()) == 2


@pytest.mark.parametrize("whole", [False, True])
def test_streamed_append_without_total_is_rolled_back(home, whole):
    """A large message is streamed and its journal records no total; such a record
    outliving the append means the save was never confirmed (the writer makes its
    clear durable first), so even a whole append is taken back."""
    data = append_bytes(message(2, body="z" * 5000 + "\n"))
    inbox, length = interrupt(home, data, len(data) if whole else 3000, streamed=True)
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert any("rolled back" in w for w in result.warnings)
    assert subjects(inbox) == [b"Subject: test 1", b"Subject: test 3"]


def test_large_message_is_streamed_and_the_journal_is_clear(home):
    big = message(4, body="big line\n" * 200_000)          # > IN_MEMORY_MAX
    result = make(home).save(("INBOX",), BytesSource(big))
    inbox = result.mbox_path
    assert read_messages(inbox)[-1][1] == big
    journal = os.path.join(home, "mail", ".imap", "INBOX", "mailslot-journal")
    assert not journal_active(journal)


def test_whole_append_never_confirmed_is_kept(home):
    data = append_bytes(message(2))
    inbox, _ = interrupt(home, data, len(data))
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert not any("rolled back" in w for w in result.warnings)
    assert subjects(inbox) == [b"Subject: test 1", b"Subject: test 2", b"Subject: test 3"]


def test_mail_appended_after_a_partial_append_by_another_program_is_kept(home):
    """The cut bytes are taken out and the other program's mail moved down, whole
    (issue 21.1; tests/reliability/test_mbox_heal.py does it with Dovecot)."""
    data = append_bytes(message(2, body="y" * 3000 + "\n"))
    inbox, length = interrupt(home, data, 300)
    with open(inbox, "ab") as f:        # what Dovecot's LDA would append next
        f.write(b"\n" + append_bytes(message(9)))
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert any("took out an interrupted delivery" in w for w in result.warnings)
    assert subjects(inbox) == [b"Subject: test 1", b"Subject: test 9", b"Subject: test 3"]
    assert check_structure(open(inbox, "rb").read()) == 3


@pytest.mark.parametrize("case,note", [
    ("shorter", "nothing taken out"),           # rewritten shorter: none of ours left
    ("not ours", "nothing taken out"),          # other bytes where ours should be
    ("torn", "incomplete journal record"),      # the crash hit the journal write
])
def test_records_that_do_not_fit_touch_nothing(home, case, note):
    data = append_bytes(message(2))
    if case == "shorter":
        inbox, length = interrupt(home, data, 100)
        os.truncate(inbox, length - 10)
    elif case == "not ours":
        inbox, _ = interrupt(home, data, 100, record_prefix=b"From someone else")
    else:
        inbox, _ = interrupt(home, data, 0, torn=True)
    before = open(inbox, "rb").read()
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert any(note in w for w in result.warnings), result.warnings
    after = open(inbox, "rb").read()
    assert after.startswith(before)
    journal = os.path.join(home, "mail", ".imap", "INBOX", "mailslot-journal")
    assert not journal_active(journal)


def test_replaced_mbox_is_searched_for_the_cut_append(home):
    """A copy replaced the mbox (another inode): the cut message in it is found by
    its From_ line and header (mbox_heal) and taken out."""
    data = append_bytes(message(2))
    inbox, _ = interrupt(home, data, 50)
    os.rename(inbox, inbox + ".old")
    with open(inbox + ".old", "rb") as src, open(inbox, "wb") as dst:
        dst.write(src.read())
    os.unlink(inbox + ".old")
    result = make(home).save(("INBOX",), BytesSource(message(3)))
    assert any("took out an interrupted delivery" in w for w in result.warnings)
    assert subjects(inbox) == [b"Subject: test 1", b"Subject: test 3"]


def test_file_size_limit_mid_append_truncates_back(mbox_home):
    """RLIMIT_FSIZE (Postfix's mailbox_size_limit) hit by the mbox, not the spool."""
    code, results, err = mbox_home.run(mbox_home.plan(count=5, size=20_000, tag="fill"))
    assert code == 0 and len(results) == 5, err
    inbox = mbox_home.path("mail", "inbox")
    before = open(inbox, "rb").read()
    limit = len(before) + 10_000

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = mbox_home.spawn(mbox_home.plan(count=1, size=20_000, tag="big"),
                           preexec_fn=limited)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    line = out.decode()
    assert "RLIMIT_FSIZE" in line and f"{limit} bytes" in line and "mail/inbox" in line
    assert open(inbox, "rb").read() == before
    assert not journal_active(mbox_home.path("mail", ".imap", "INBOX", "mailslot-journal"))
    assert not os.path.exists(inbox + ".lock")
    assert len(verify_mbox(inbox)) == 5
