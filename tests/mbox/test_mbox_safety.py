"""The safe open: whatever is planted where the mbox should be, nothing else is written.

These are the classic spool attacks (a symlink or hard link in /var/mail pointing
at another file, a FIFO to hang the delivery, a file of another user) and their
equivalents for the journal and the dotlock.
"""

import os
import threading

import pytest

from mailslot.errors import MailboxNotFoundError, StorageError
from mailslot.storage import open_storage
from tests.storage.sources import BytesSource, message

VICTIM = b"precious bytes that must stay as they are\n"


def make(home, suffix="", **kwargs):
    return open_storage("mbox:~/mail" + suffix, user="t", home=str(home), hostname="h",
                        **kwargs)


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


@pytest.fixture
def mail(tmp_path):
    path = tmp_path / "mail"
    path.mkdir()
    return path


def test_symlinked_folder_mbox_is_refused(tmp_path, mail, victim):
    os.symlink(victim, mail / "box")
    with pytest.raises(StorageError, match="symlink"):
        make(tmp_path).save(("box",), BytesSource(message()))
    assert victim.read_bytes() == VICTIM


def test_symlinked_inbox_is_refused(tmp_path, victim):
    spool = tmp_path / "spool"
    spool.mkdir()
    os.symlink(victim, spool / "bob")
    with pytest.raises(StorageError, match="symlink"):
        make(tmp_path, ":INBOX=~/spool/bob").save(("INBOX",), BytesSource(message()))
    assert victim.read_bytes() == VICTIM
    assert os.listdir(spool) == ["bob"]


def test_hard_linked_inbox_is_refused(tmp_path, mail, victim):
    os.link(victim, mail / "inbox")
    with pytest.raises(StorageError, match="2 hard links"):
        make(tmp_path).save(("INBOX",), BytesSource(message()))
    assert victim.read_bytes() == VICTIM


def test_fifo_is_refused_without_hanging(tmp_path, mail):
    os.mkfifo(mail / "inbox")
    outcome = []

    def save():
        try:
            make(tmp_path).save(("INBOX",), BytesSource(message()))
        except StorageError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=save, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "the save hung on a FIFO"
    assert outcome and "not a regular file" in outcome[0]


def test_directory_where_the_inbox_should_be(tmp_path, mail):
    (mail / "inbox").mkdir()
    with pytest.raises(MailboxNotFoundError):
        make(tmp_path).save(("INBOX",), BytesSource(message()))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another uid")
def test_someone_elses_file_is_refused(tmp_path, mail):
    (mail / "inbox").write_bytes(b"")
    os.chown(mail / "inbox", 64124, 64124)
    with pytest.raises(StorageError, match="owned by uid 64124"):
        make(tmp_path).save(("INBOX",), BytesSource(message()))
    assert (mail / "inbox").read_bytes() == b""


def test_planted_journal_directory_symlink_is_refused(tmp_path, mail):
    outside = tmp_path / "outside"
    (outside / "INBOX").mkdir(parents=True)
    os.symlink(outside, mail / ".imap")
    with pytest.raises(StorageError, match="symlink"):
        make(tmp_path).save(("INBOX",), BytesSource(message()))
    assert os.listdir(outside / "INBOX") == []
    assert not (mail / "inbox").exists() or (mail / "inbox").stat().st_size == 0


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_planted_journal_file_is_refused(tmp_path, mail, victim, how):
    storage = make(tmp_path)
    storage.save(("INBOX",), BytesSource(message(1)))
    journal = mail / ".imap" / "INBOX" / "mailslot-journal"
    journal.unlink()
    (os.symlink if how == "symlink" else os.link)(victim, journal)
    before = (mail / "inbox").read_bytes()
    with pytest.raises(StorageError):
        storage.save(("INBOX",), BytesSource(message(2)))
    assert victim.read_bytes() == VICTIM
    assert (mail / "inbox").read_bytes() == before
    assert not (mail / "inbox.lock").exists()


def test_stale_symlink_dotlock_is_removed_not_followed(tmp_path, mail, victim):
    (mail / "inbox").write_bytes(b"")
    lock = mail / "inbox.lock"
    os.symlink(victim, lock)
    old = 1_000_000_000
    os.utime(lock, (old, old), follow_symlinks=False)
    os.utime(mail / "inbox", (old, old))
    storage = make(tmp_path, settings={"mbox_dotlock_change_timeout": 1})
    storage.save(("INBOX",), BytesSource(message()))
    assert victim.read_bytes() == VICTIM
    assert not os.path.lexists(lock)
