"""What every mail storage format must do, run once per format and layout (conftest.py)."""

import errno
import os
import re
import shutil

import pytest

from mailslot.errors import (ConfigError, MailboxNameError, MailboxNotFoundError,
                             StorageError)
from mailslot.storage import open_storage

from tests.storage.sources import (BytesSource, FailingSource, LyingSource, message,
                                   vsize_of)

BODIES = {
    "plain": message(1),
    "empty body": b"Subject: empty\n\n",
    "no final newline": b"Subject: x\n\nno newline at the end",
    "8bit and NUL": b"Subject: bin\n\n" + bytes(range(256)) + b"\n",
    "CR inside lines": b"Subject: cr\n\nbare\rcarriage\rreturns\n",
    "long line": b"Subject: long\n\n" + b"x" * 100_000 + b"\n",
    "one MiB": b"Subject: big\n\n" + (b"0123456789abcdef" * 64 + b"\n") * 1000,
}


@pytest.mark.parametrize("body", sorted(BODIES))
def test_save_reads_back_byte_exact_with_sizes(fmt, storage, body):
    data = BODIES[body]
    result = storage.save(("INBOX",), BytesSource(data))
    assert fmt.read(result) == fmt.as_stored(data)
    assert (result.size, result.vsize) == (len(data), vsize_of(data))
    assert result.mailbox == "INBOX"


def test_uids_increase_per_mailbox(fmt, storage):
    storage.create_mailbox(("box",))
    results = [storage.save(("INBOX",) if i % 3 else ("box",), BytesSource(message(i)))
               for i in range(30)]
    uids = [r.uid for r in results]
    inbox = [u for i, u in enumerate(uids) if i % 3]
    box = [u for i, u in enumerate(uids) if not i % 3]
    assert inbox == [fmt.expected_uid(u) for u in range(1, 21)]
    assert box == [fmt.expected_uid(u) for u in range(1, 11)]
    if not fmt.assigns_uids:
        assert all(r.uid_error for r in results)    # and it says why
    assert [fmt.read(r) for r in results] == [message(i) for i in range(30)]


def test_inbox_is_created_on_first_save(fmt, home, storage):
    assert storage.mailbox_exists(("INBOX",))
    result = storage.save(("inbox",), BytesSource(message()))
    assert result.uid == fmt.expected_uid(1) and fmt.read(result) == message()


def test_missing_mailbox_is_not_created_by_save(fmt, home, storage):
    storage.save(("INBOX",), BytesSource(message()))
    with pytest.raises(MailboxNotFoundError):
        storage.save(("nosuch",), BytesSource(message()))
    assert not storage.mailbox_exists(("nosuch",))
    assert len(fmt.message_files(home)) == 1


def test_create_mailbox_is_idempotent_with_parents(fmt, storage):
    storage.create_mailbox(("a", "b", "c"))
    storage.create_mailbox(("a", "b", "c"))
    assert storage.mailbox_exists(("a", "b", "c"))
    assert storage.save(("a", "b", "c"), BytesSource(message())).uid == fmt.expected_uid(1)
    if not fmt.mailboxes_hold_children:
        # mbox: "a" is a directory of mailboxes and cannot also be an mbox file.
        assert not storage.mailbox_exists(("a",))
        with pytest.raises(StorageError, match="already exists"):
            storage.create_mailbox(("a",))
        return
    storage.create_mailbox(("a",))
    assert storage.mailbox_exists(("a",))
    assert storage.save(("a",), BytesSource(message())).uid == 1


def test_unicode_mailbox_names(fmt, storage):
    name = ("Tést", "ü&x", "日本語")
    storage.create_mailbox(name)
    assert storage.mailbox_exists(name)
    assert not storage.mailbox_exists(("Test", "ü&x", "日本語"))
    result = storage.save(name, BytesSource(message()))
    assert fmt.read(result) == message()


@pytest.mark.parametrize("flags,expected", [
    (("\\Seen",), {"\\Seen"}),
    (("\\seen", "\\FLAGGED", "\\Answered", "\\Draft", "\\Deleted"),
     {"\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted"}),
    (("\\Recent",), set()),
    (("$Label1",), set()),           # a keyword is not a system flag
])
def test_flags_are_stored(fmt, storage, flags, expected):
    result = storage.save(("INBOX",), BytesSource(message()), flags=flags)
    assert fmt.flags_of(result) == expected
    assert fmt.read(result) == message()
    assert result.uid == fmt.expected_uid(1)


# (flags, system flags stored, keywords stored, how many refused with a warning)
KEYWORD_CASES = {
    "one": (("Junk",), set(), {"Junk"}, 0),
    "with system flags": (("\\Seen", "$label1", "Junk", "\\Flagged"),
                          {"\\Seen", "\\Flagged"}, {"$label1", "Junk"}, 0),
    "duplicates fold case": (("Junk", "JUNK", "junk"), set(), {"Junk"}, 0),
    "longest allowed": (("k" * 50,), set(), {"k" * 50}, 0),
    "unknown system flag": (("\\Recent", "\\Foo"), set(), set(), 0),
    "hostile names dropped": (("", "a b", "x\ny", "x\0y", "x\ry", "tab\t", "caf\u00e9",
                               "k" * 51, "(x", "x)", "{1}", "x]", "%", "*", 'q"', "a\\b",
                               "\x7f"), set(), set(), 17),
    "hostile beside good": (("ok", "no\nX-UID: 1", "$Ok2"), set(), {"ok", "$Ok2"}, 1),
}


@pytest.mark.parametrize("case", sorted(KEYWORD_CASES))
def test_keywords_are_stored(fmt, storage, case):
    flags, system, keywords, refused = KEYWORD_CASES[case]
    result = storage.save(("INBOX",), BytesSource(message()), flags=flags)
    assert fmt.flags_of(result) == system
    assert fmt.keywords_of(storage, ("INBOX",), result) == keywords
    assert fmt.read(result) == message()        # nothing injected into the message
    warned = [w for w in result.warnings if w.startswith("keyword")]
    assert len(warned) == refused, result.warnings
    assert all("\n" not in w and "\0" not in w for w in warned)
    assert result.uid == fmt.expected_uid(1)


def test_keywords_accumulate_per_mailbox(fmt, storage):
    storage.create_mailbox(("box",))
    plan = [(("INBOX",), ("Junk",)), (("box",), ("$label1",)), (("INBOX",), ("$label1",)),
            (("INBOX",), ("junk", "Work")), (("box",), ("Junk",)), (("INBOX",), ())]
    results = [storage.save(name, BytesSource(message(i)), flags=flags)
               for i, (name, flags) in enumerate(plan)]
    got = [fmt.keywords_of(storage, name, r) for (name, _), r in zip(plan, results)]
    # The first spelling of a keyword stays its name (Dovecot's case-insensitive
    # lookup), so "junk" reads back as "Junk" where the mailbox knows it.
    if fmt.name == "maildir":
        assert got == [{"Junk"}, {"$label1"}, {"$label1"}, {"Junk", "Work"}, {"Junk"}, set()]
    else:
        assert got == [{"Junk"}, {"$label1"}, {"$label1"}, {"junk", "Work"}, {"Junk"}, set()]
    assert [fmt.read(r) for r in results] == [message(i) for i in range(len(plan))]
    assert all(r.warnings == () or not any(w.startswith("keyword") for w in r.warnings)
               for r in results)


def test_copy_from_stored_path(fmt, storage):
    storage.create_mailbox(("copy",))
    first = storage.save(("INBOX",), BytesSource(message(5)))
    copy = storage.save(("copy",), BytesSource(message(5), stored_path=first.path))
    assert fmt.read(copy) == message(5)
    assert (copy.size, copy.vsize) == (first.size, first.vsize)
    assert fmt.place(copy) != fmt.place(first)


def test_stored_path_not_from_this_storage_is_written_again(fmt, storage, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"other bytes\n")
    result = storage.save(("INBOX",), BytesSource(message(), stored_path=str(foreign)))
    assert fmt.read(result) == message()


def subscription_files(home):
    """{path: bytes} of every subscriptions file below home (Dovecot's names)."""
    return {os.path.join(root, f): open(os.path.join(root, f), "rb").read()
            for root, _dirs, files in os.walk(home) for f in files
            if f in ("subscriptions", ".subscriptions")}


def test_subscribe_is_idempotent(home, storage):
    storage.subscribe(("box", "sub"))
    (path, first), = subscription_files(home).items()
    storage.subscribe(("box", "sub"))
    storage.subscribe(("INBOX",))
    inode = os.stat(path).st_ino
    storage.subscribe(("INBOX",))
    storage.subscribe(("box", "sub"))
    assert list(subscription_files(home)) == [path]
    # Dovecot's version 2 file: "V\t2\n\n", then one name a line, its components
    # joined by TAB; each name once, in the order first subscribed.
    assert first == b"V\t2\n\nbox\tsub\n"
    assert open(path, "rb").read() == b"V\t2\n\nbox\tsub\nINBOX\n"
    # A name already there leaves the file as it is (not rewritten).
    assert os.stat(path).st_ino == inode


@pytest.mark.parametrize("exc", [RuntimeError("reader died"), KeyboardInterrupt()],
                         ids=["exception", "interrupt"])
def test_failed_write_leaves_nothing(fmt, home, storage, exc):
    storage.save(("INBOX",), BytesSource(message(1)))
    with pytest.raises(type(exc)):
        storage.save(("INBOX",), FailingSource(message(2) * 1000, 5000, exc))
    assert fmt.partial_files(home) == []
    assert len(fmt.message_files(home)) == 1
    assert storage.save(("INBOX",), BytesSource(message(3))).uid == fmt.expected_uid(2)


@pytest.mark.parametrize("code,named", [(errno.ENOSPC, "ENOSPC"), (errno.EDQUOT, "EDQUOT"),
                                        (errno.EIO, "EIO")])
def test_failed_write_oserror_becomes_storage_error(fmt, home, storage, code, named):
    with pytest.raises(StorageError, match=named):
        storage.save(("INBOX",), FailingSource(message(), 10, OSError(code, os.strerror(code))))
    assert fmt.message_files(home) == []


def test_source_lying_about_size_is_refused(fmt, home, storage):
    with pytest.raises(StorageError, match="reported"):
        storage.save(("INBOX",), LyingSource(message()))
    assert fmt.message_files(home) == []


@pytest.mark.parametrize("fsync", ["optimized", "always", "never"])
def test_fsync_modes(fmt, make_storage, fsync):
    storage = make_storage(mail_fsync=fsync)
    assert fmt.read(storage.save(("INBOX",), BytesSource(message()))) == message()


@pytest.mark.parametrize("location", [
    "", "~/Maildir", "mbox:~/mail:LAYOUT=maildir++", "mdbox:~/mdbox", "nosuch:~/x", "maildir:",
    "maildir:relative/path", "maildir:~other/Maildir", "maildir:~/M:LAYOUT=index",
    "maildir:~/M:DIRNAME=x", "maildir:~/M:BOGUS=1", "maildir:~/M:INBOX=",
])
def test_bad_locations_are_config_errors(home, location):
    with pytest.raises(ConfigError):
        open_storage(location, user="test", home=home, hostname="h")


def test_bad_fsync_mode_is_a_config_error(home):
    with pytest.raises(ConfigError, match="mail_fsync"):
        open_storage("maildir:~/Maildir", user="t", home=home, hostname="h", mail_fsync="sometimes")


@pytest.mark.parametrize("name", [
    (), ("",), ("a", ""), (".",), ("..",), ("a", ".."), ("a/b",), ("../../etc",),
    ("a\nb",), ("tab\tx",), ("\x7f",), ("\x85",), ("bad\udcff",), ("~user",),
    ("x" * 256,), ("a",) * 65,
])
def test_hostile_names_are_refused_everywhere(fmt, home, storage, tmp_path, name):
    before = sorted(os.listdir(tmp_path))
    for call in (storage.mailbox_exists, storage.create_mailbox, storage.subscribe,
                 lambda n: storage.save(n, BytesSource(message()))):
        with pytest.raises(MailboxNameError):
            call(name)
    assert sorted(os.listdir(tmp_path)) == before
    assert fmt.message_files(home) == []


def _outside_maildir(tmp_path):
    """A complete mailbox outside the mail root: following a symlink would succeed."""
    outside = tmp_path / "outside"
    for sub in ("tmp", "new", "cur"):
        (outside / sub).mkdir(parents=True)
    (outside / "maildirfolder").write_bytes(b"")
    return outside


def _tree(path):
    return sorted(os.path.relpath(os.path.join(r, f), path)
                  for r, ds, fs in os.walk(path) for f in fs + ds)


def test_planted_symlinks_are_refused_not_followed(fmt, storage, tmp_path):
    name = ("evil", "sub")
    outside = _outside_maildir(tmp_path)
    before = _tree(outside)
    points = fmt.symlink_points(storage, name)
    assert points
    for target, holds in points:
        storage.create_mailbox(name)
        shutil.rmtree(target)
        os.symlink(outside, target)
        if holds == "mail":
            with pytest.raises(StorageError):
                storage.save(name, BytesSource(message()))
        else:
            # Only the index lives behind this point: the mail is saved, unnumbered.
            result = storage.save(name, BytesSource(message()))
            assert result.uid is None and result.uid_error, target
            assert fmt.read(result) == message()
        with pytest.raises(StorageError):
            storage.create_mailbox(name)
        assert _tree(outside) == before, f"written through a symlink at {target}"
        assert os.path.islink(target)
        os.unlink(target)


def _plant_file(path):
    with open(path, "wb") as f:
        f.write(b"not a folder\n")


# What can stand where a directory of the mailbox belongs (storage/dirs.py).
PLANTED = {"regular file": _plant_file, "fifo": os.mkfifo}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_planted_non_directories_are_refused_not_replaced(fmt, storage, kind):
    name = ("evil", "sub")
    points = fmt.symlink_points(storage, name)
    assert points
    for target, holds in points:
        storage.create_mailbox(name)
        shutil.rmtree(target)
        PLANTED[kind](target)
        planted = os.lstat(target)
        if holds == "mail":
            with pytest.raises(StorageError, match=re.escape(target)):
                storage.save(name, BytesSource(message()))
        else:
            # Only the index lives behind this point: the mail is saved, unnumbered.
            result = storage.save(name, BytesSource(message()))
            assert result.uid is None and result.uid_error, target
        with pytest.raises(StorageError, match=re.escape(target)):
            storage.create_mailbox(name)
        after = os.lstat(target)
        assert (after.st_ino, after.st_mode) == (planted.st_ino, planted.st_mode), target
        if kind == "regular file":
            with open(target, "rb") as f:
                assert f.read() == b"not a folder\n"
        os.unlink(target)


def test_planted_uidlist_symlink_is_not_written_through(fmt, storage, tmp_path):
    storage.save(("INBOX",), BytesSource(message(1)))
    uidlist = fmt.uidlist_path(storage, ("INBOX",))
    if uidlist is None:
        pytest.skip(f"{fmt.name} keeps no UID list (tests/mbox covers its journal)")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    os.unlink(uidlist)
    os.symlink(victim, uidlist)
    result = storage.save(("INBOX",), BytesSource(message(2)))
    assert result.uid is None and result.uid_error
    assert fmt.read(result) == message(2)
    assert victim.read_bytes() == b"precious\n"
