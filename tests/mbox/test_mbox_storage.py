"""The mbox storage beyond the conformance suite: layout, names, repairs, results."""

import mailbox
import os
import stat
import time

import pytest

from mailslot.errors import MailboxNameError, MailboxNotFoundError, StorageError
from mailslot.storage import open_storage
from mailslot.storage.location import parse_mail_location
from tests.mbox.mboxtest import check_structure, journal_active, read_messages
from tests.storage.sources import BytesSource, message
from tests.support import FIXED_DAY_UTC, fixed_clock, utc  # noqa: F401 (utc: a fixture)


def make(home, suffix="", **kwargs):
    kwargs.setdefault("hostname", "testhost")
    return open_storage("mbox:~/mail" + suffix, user="t", home=str(home), **kwargs)


class CountingSource(BytesSource):
    """Counts write_to() calls; carries an envelope sender."""

    def __init__(self, data, sender=None):
        super().__init__(data)
        self.calls = 0
        if sender is not None:
            self.envelope_sender = sender

    def write_to(self, fd):
        self.calls += 1
        return super().write_to(fd)


def test_layout_is_dovecots(tmp_path):
    storage = make(tmp_path)
    storage.create_mailbox(("a", "b"))
    storage.save(("INBOX",), BytesSource(message(1)))
    storage.save(("a", "b"), BytesSource(message(2)))
    mail = tmp_path / "mail"
    assert (mail / "inbox").is_file() and (mail / "a").is_dir() and (mail / "a" / "b").is_file()
    # Journals live in Dovecot's index directories, which Dovecot never lists.
    assert not journal_active(mail / ".imap" / "INBOX" / "mailslot-journal")
    assert not journal_active(mail / "a" / ".imap" / "b" / "mailslot-journal")
    assert sorted(os.listdir(mail)) == [".imap", "a", "inbox"]
    assert stat.S_IMODE((mail / "inbox").stat().st_mode) == 0o600


def test_journal_follows_index_setting(tmp_path):
    storage = make(tmp_path, ":INDEX=~/idx:INBOX=~/spool")
    storage.save(("INBOX",), BytesSource(message()))
    assert (tmp_path / "spool").is_file()
    assert (tmp_path / "idx" / ".imap" / "INBOX" / "mailslot-journal").exists()


def test_folder_modes_follow_the_root_as_dovecot(tmp_path):
    mail = tmp_path / "mail"
    mail.mkdir()
    os.chmod(mail, 0o2770)
    old = os.umask(0o077)
    try:
        storage = make(tmp_path)
        storage.create_mailbox(("shared", "box"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((mail / "shared").stat().st_mode) & 0o770 == 0o770
    assert stat.S_IMODE((mail / "shared" / "box").stat().st_mode) == 0o660


def test_a_name_holds_mail_or_folders_not_both(tmp_path):
    storage = make(tmp_path)
    storage.create_mailbox(("box",))
    with pytest.raises(StorageError, match="inferior"):
        storage.create_mailbox(("box", "sub"))
    assert not storage.mailbox_exists(("box", "sub"))
    with pytest.raises(MailboxNotFoundError):
        storage.save(("box", "sub"), BytesSource(message()))
    storage.create_mailbox(("dir", "sub"))
    assert not storage.mailbox_exists(("dir",))
    with pytest.raises(MailboxNotFoundError):
        storage.save(("dir",), BytesSource(message()))


@pytest.mark.parametrize("name", [("x.lock",), (".imap",), ("a", ".imap"), ("a", "b.lock"),
                                  (".subscriptions",)])
def test_dovecots_own_names_are_refused(tmp_path, name):
    storage = make(tmp_path)
    for call in (storage.mailbox_exists, storage.create_mailbox, storage.subscribe,
                 lambda n: storage.save(n, BytesSource(message()))):
        with pytest.raises(MailboxNameError):
            call(name)
    assert not (tmp_path / "mail").exists() or os.listdir(tmp_path / "mail") == []


def test_folder_that_is_the_inbox_file_is_refused(tmp_path):
    storage = make(tmp_path, ":INBOX=~/mail/Mbox")
    with pytest.raises(MailboxNameError, match="INBOX"):
        storage.create_mailbox(("Mbox",))


def test_subscriptions_file_is_dovecots_mbox_one(tmp_path):
    storage = make(tmp_path)
    storage.subscribe(("a", "b"))
    storage.subscribe(("Tést",))
    assert (tmp_path / "mail" / ".subscriptions").read_bytes() == b"V\t2\n\na\tb\nT&AOk-st\n"


@pytest.mark.parametrize("tail,fix", [(b"body\n\n", b""), (b"body\n", b"\n"),
                                      (b"body", b"\n\n")])
def test_existing_mbox_end_is_repaired_first(tmp_path, tail, fix):
    mail = tmp_path / "mail"
    mail.mkdir()
    first = b"From a@b  Thu Mar 05 07:08:09 2026\nSubject: old\n\n" + tail
    (mail / "inbox").write_bytes(first)
    result = make(tmp_path).save(("INBOX",), BytesSource(message(7)))
    data = (mail / "inbox").read_bytes()
    assert data.startswith(first + fix) and result.offset == len(first + fix)
    assert check_structure(data) == 2
    msgs = read_messages(str(mail / "inbox"))
    assert msgs[0][1] == b"Subject: old\n\nbody\n" and msgs[1][1] == message(7)


def test_a_file_that_is_no_mbox_is_not_appended_to(tmp_path):
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "inbox").write_bytes(b"this is not an mbox\n")
    with pytest.raises(StorageError, match="not an mbox"):
        make(tmp_path).save(("INBOX",), BytesSource(message()))
    assert (mail / "inbox").read_bytes() == b"this is not an mbox\n"


def test_atime_stays_so_readers_see_new_mail(tmp_path):
    storage = make(tmp_path)
    storage.save(("INBOX",), BytesSource(message(1)))
    inbox = tmp_path / "mail" / "inbox"
    old = time.time() - 3600
    os.utime(inbox, (old, old))
    storage.save(("INBOX",), BytesSource(message(2)))
    st = inbox.stat()
    assert abs(st.st_atime - old) < 1 and st.st_mtime > old + 1000


@pytest.mark.parametrize("source_kind,word", [
    ("envelope", "bounce@example.org"), ("null", "MAILER-DAEMON"),
    ("from_line", "fl@example.org"), ("return_path", "rp@example.org"), ("none", "t@testhost"),
])
def test_from_line_names_the_envelope_sender(tmp_path, source_kind, word):
    source = BytesSource(message())
    if source_kind == "envelope":
        source.envelope_sender = "bounce@example.org"
    elif source_kind == "null":
        source.envelope_sender = ""
    elif source_kind == "from_line":
        source.from_line_sender = "fl@example.org"
    elif source_kind == "return_path":
        source.get = lambda name: " <rp@example.org> " if name == "Return-Path" else None
    result = make(tmp_path).save(("INBOX",), source)
    with open(result.mbox_path, "rb") as f:
        assert f.readline().startswith(b"From " + word.encode() + b"  ")


def test_from_line_is_dated_by_the_injected_clock(tmp_path, utc):
    # A one-digit day: Dovecot's mbox_from_create() writes it zero-padded ("Mar 05"),
    # whatever the date the test runs on; TZ=UTC makes the local time known.
    result = make(tmp_path, clock=fixed_clock).save(
        ("INBOX",), BytesSource(message(), envelope_sender="s@example.org"))
    with open(result.mbox_path, "rb") as f:
        assert f.readline() == f"From s@example.org  {FIXED_DAY_UTC}\n".encode()


def test_one_spool_serves_every_copy(tmp_path):
    storage = make(tmp_path)
    storage.create_mailbox(("copy",))
    source = CountingSource(message(3))
    first = storage.save(("INBOX",), source)
    second = storage.save(("copy",), source, flags=("\\Seen",))
    assert source.calls == 1
    assert (first.path, first.uid, second.path) == (None, None, None)
    assert first.uid_error and "IMAP server" in first.uid_error
    assert (first.mailbox, second.mailbox) == ("INBOX", "copy")
    box = mailbox.mbox(second.mbox_path, create=False)
    assert box.get_message(0)["Status"] == "R"
    box.close()


def test_mboxo_variant(tmp_path):
    storage = make(tmp_path, settings={"mbox_variant": "mboxo"})
    result = storage.save(("INBOX",), BytesSource(b"S: a\n\nFrom x\n>From y\n"))
    with open(result.mbox_path, "rb") as f:
        assert f.read().split(b"\n", 1)[1] == b"S: a\n\n>From x\n>From y\n\n"


def test_mail_temp_dir_missing_falls_back_to_memory(tmp_path):
    storage = make(tmp_path, settings={"mail_temp_dir": str(tmp_path / "nosuch")})
    result = storage.save(("INBOX",), BytesSource(message()))
    assert read_messages(result.mbox_path)[0][1] == message()


def test_mbox_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "mail").write_bytes(b"")
    with pytest.raises(StorageError, match="root directory can't be a file"):
        make(tmp_path).save(("INBOX",), BytesSource(message()))


def test_location_inbox_default_is_below_root():
    assert parse_mail_location("mbox:/m", home="/h").inbox == "/m/inbox"


def test_without_a_writable_root_the_inbox_is_still_delivered(mbox_home):
    """No place for the journal (a user without a writable home): deliver, and say so."""
    locked = os.path.join(mbox_home.base, "readonly")
    os.mkdir(locked, 0o555)
    plan = mbox_home.plan(location=f"mbox:{locked}/mail:INBOX=~/inbox")
    code, results, err = mbox_home.run(plan)
    assert code == 0, err
    assert "no append journal" in results[0]["warnings"][0]
    assert len(read_messages(mbox_home.path("inbox"))) == 1
