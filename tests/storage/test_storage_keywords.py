"""Maildir keywords: dovecot-keywords and the letters a-z, as Dovecot 2.3 keeps them.

The format-neutral cases (valid and hostile names, case folding) are in
test_storage_conformance.py; this file holds what only Maildir has: the
dovecot-keywords file, its letters, its lock and its limits.
"""

import os
import subprocess
import sys
import time

import pytest

from mailslot.storage.maildir_keywords import (KEYWORDS_FILE_MAX, MAILDIR_MAX_KEYWORDS,
                                               format_keywords, parse_keywords)

from tests.storage.sources import TEST_HOST as HOST, BytesSource, maildir_storage, message

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


make = maildir_storage


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def kwfile(home):
    return home / "Maildir" / "dovecot-keywords"


def info(result):
    """The flag letters of a saved message's file name."""
    return os.path.basename(result.path).partition(":2,")[2]


def save(st, *flags, name=("INBOX",)):
    return st.save(name, BytesSource(message()), flags=flags)


def prepare(home, content, mtime=None):
    """An INBOX whose dovecot-keywords holds content (bytes)."""
    st = make(home)
    st.create_mailbox(("INBOX",))
    kwfile(home).write_bytes(content)
    if mtime is not None:
        os.utime(kwfile(home), (mtime, mtime))
    return st


def hold_uidlist_lock(home):
    """A live lock held by someone else (pid 1 on this host) on dovecot-uidlist."""
    (home / "Maildir" / "dovecot-uidlist.lock").write_text(f"1:{HOST}")


# --- letters ----------------------------------------------------------------------

def test_first_keyword_gets_a_second_b_and_the_file_is_dovecots(home):
    st = make(home)
    first = save(st, "Junk")
    second = save(st, "\\Seen", "$label1")
    assert info(first) == "a" and os.path.dirname(first.path).endswith("/cur")
    assert info(second) == "Sb"                 # system letters, then keyword letters
    assert kwfile(home).read_bytes() == b"0 Junk\n1 $label1\n"
    assert first.warnings == () and second.warnings == ()


def test_letters_are_sorted_by_ascii_with_system_flags(home):
    st = prepare(home, b"0 k0\n1 k1\n2 k2\n")
    r = save(st, "k2", "\\Seen", "k0", "\\Draft", "\\Flagged", "\\Answered", "\\Deleted")
    assert info(r) == "DFRSTac"


def test_existing_keywords_are_reused_case_insensitively_without_a_rewrite(home):
    st = prepare(home, b"0 Foo\n3 Bar\n", mtime=1_000_000_000)
    before = os.stat(kwfile(home))
    r = save(st, "bar", "FOO")
    assert info(r) == "ad"
    after = os.stat(kwfile(home))
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)


def test_new_keyword_takes_the_first_free_index(home):
    st = prepare(home, b"0 Foo\n3 Bar\n")
    r = save(st, "Baz", "Qux")
    assert info(r) == "bc"
    assert kwfile(home).read_bytes() == b"0 Foo\n1 Baz\n2 Qux\n3 Bar\n"


def test_twenty_six_keywords_at_most(home):
    full = b"".join(b"%d kw%d\n" % (i, i) for i in range(MAILDIR_MAX_KEYWORDS))
    st = prepare(home, full)
    r = save(st, "\\Seen", "kw25", "one-too-many")
    assert info(r) == "Sz"
    assert kwfile(home).read_bytes() == full
    assert len(r.warnings) == 1 and "all 26" in r.warnings[0]
    assert "one-too-many" in r.warnings[0]


def test_twenty_seventh_new_keyword_of_one_save_is_dropped(home):
    st = make(home)
    names = [f"k{i}" for i in range(MAILDIR_MAX_KEYWORDS + 1)]
    r = save(st, *names)
    assert info(r) == "abcdefghijklmnopqrstuvwxyz"
    assert len(r.warnings) == 1 and "k26" in r.warnings[0]


def test_busy_uidlist_lock_allows_only_existing_keywords(home):
    st = prepare(home, b"0 Junk\n")
    hold_uidlist_lock(home)
    before = kwfile(home).read_bytes()
    r = save(st, "junk", "NewOne")
    assert info(r) == "a"
    assert r.uid is None and r.uid_error
    assert kwfile(home).read_bytes() == before
    assert len(r.warnings) == 2 and "NewOne" in r.warnings[0] and "locked" in r.warnings[0]
    assert "saved without a UID" in r.warnings[1]          # issue 21.6


def test_busy_lock_and_only_new_keywords_leaves_the_message_in_new(home):
    st = make(home)
    st.create_mailbox(("INBOX",))
    hold_uidlist_lock(home)
    r = save(st, "Junk")
    assert os.path.dirname(r.path).endswith("/new") and ":2," not in r.path
    assert not kwfile(home).exists()


def test_control_directory_holds_the_file(home):
    st = make(home, ":CONTROL=~/control")
    st.create_mailbox(("box",))
    r = save(st, "Junk", name=("box",))
    assert info(r) == "a"
    assert (home / "control" / ".box" / "dovecot-keywords").read_bytes() == b"0 Junk\n"
    assert not (home / "Maildir" / ".box" / "dovecot-keywords").exists()


def test_plain_save_touches_no_keyword_file(home):
    st = make(home)
    save(st, "\\Seen")
    save(st)
    assert not kwfile(home).exists()


# --- the file: lock, mode, mtime, symlinks ----------------------------------------

def test_no_lock_is_left_and_a_leftover_lock_is_replaced(home):
    st = prepare(home, b"0 Junk\n")
    (home / "Maildir" / "dovecot-keywords.lock").write_bytes(b"garbage from a crash")
    r = save(st, "Work")
    assert info(r) == "b"
    assert kwfile(home).read_bytes() == b"0 Junk\n1 Work\n"
    assert not (home / "Maildir" / "dovecot-keywords.lock").exists()
    assert not os.listdir(home / "Maildir" / "tmp")


@pytest.mark.parametrize("dir_mode,file_mode", [(0o700, 0o600), (0o750, 0o640),
                                                (0o770, 0o660), (0o755, 0o644)])
def test_file_mode_follows_the_mailbox(home, dir_mode, file_mode):
    st = make(home)
    st.create_mailbox(("INBOX",))
    os.chmod(home / "Maildir", dir_mode)
    save(st, "Junk")
    assert os.stat(kwfile(home)).st_mode & 0o7777 == file_mode


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's group needs root")
def test_file_group_follows_the_mailbox(home):
    st = make(home)
    st.create_mailbox(("INBOX",))
    os.chown(home / "Maildir", -1, 4242)
    os.chmod(home / "Maildir", 0o750)
    save(st, "Junk")
    assert os.stat(kwfile(home)).st_gid == 4242


def test_mtime_grows_even_when_the_clock_has_not(home):
    future = int(time.time()) + 1000
    st = prepare(home, b"0 Junk\n", mtime=future)
    save(st, "Work")
    assert int(os.stat(kwfile(home)).st_mtime) == future + 1
    save(st, "Third")
    assert int(os.stat(kwfile(home)).st_mtime) == future + 2


def test_mtime_within_the_same_second_still_moves(home):
    now = int(time.time())
    st = prepare(home, b"0 Junk\n", mtime=now)
    save(st, "Work")
    assert int(os.stat(kwfile(home)).st_mtime) > now


def test_symlinked_file_is_refused_not_followed(home, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"0 precious\n")
    st = make(home)
    st.create_mailbox(("INBOX",))
    os.symlink(victim, kwfile(home))
    r = save(st, "\\Seen", "precious", "Junk")
    assert info(r) == "S"                       # delivered, without its keywords
    assert r.warnings and "symlink" in r.warnings[0]
    assert victim.read_bytes() == b"0 precious\n"
    assert os.path.islink(kwfile(home))


def test_symlinked_lock_is_not_written_through(home, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    st = make(home)
    st.create_mailbox(("INBOX",))
    os.symlink(victim, home / "Maildir" / "dovecot-keywords.lock")
    r = save(st, "Junk")
    assert info(r) == "a" and r.warnings == ()
    assert victim.read_bytes() == b"precious\n"
    assert kwfile(home).read_bytes() == b"0 Junk\n" and not os.path.islink(kwfile(home))


@pytest.mark.parametrize("what", ["fifo", "directory", "oversized"])
def test_unusable_file_drops_keywords_but_delivers(home, what):
    st = make(home)
    st.create_mailbox(("INBOX",))
    if what == "fifo":
        os.mkfifo(kwfile(home))
    elif what == "directory":
        os.mkdir(kwfile(home))
    else:
        kwfile(home).write_bytes(b"0 Junk\n" + b"x" * KEYWORDS_FILE_MAX)
    r = save(st, "\\Flagged", "Junk")
    assert info(r) == "F" and len(r.warnings) == 1
    if what == "oversized":
        assert os.path.getsize(kwfile(home)) > KEYWORDS_FILE_MAX     # not rewritten


def test_failed_write_drops_only_the_new_keywords(home):
    st = prepare(home, b"0 Junk\n")
    # A directory where the lock file must go: unlink() and the write fail.
    os.mkdir(home / "Maildir" / "dovecot-keywords.lock")
    r = save(st, "Junk", "Work")
    assert info(r) == "a"
    assert len(r.warnings) == 1 and "Work" in r.warnings[0]
    assert kwfile(home).read_bytes() == b"0 Junk\n"
    assert not os.listdir(home / "Maildir" / "tmp")


def test_hostile_names_never_reach_the_file(home):
    st = make(home)
    r = save(st, "ok", "evil\n25 injected", "nul\0x", "cr\rx", "sp ace", "\\\\x", "ok2")
    assert info(r) == "ab"
    assert kwfile(home).read_bytes() == b"0 ok\n1 ok2\n"
    # "\\\\x" starts with a backslash: an unknown system flag, ignored like \\Recent.
    assert len(r.warnings) == 4


# --- reading Dovecot's file -------------------------------------------------------

PARSE_CASES = {
    "plain": (b"0 a\n1 b\n", {0: b"a", 1: b"b"}),
    "gaps": (b"3 d\n25 z\n", {3: b"d", 25: b"z"}),
    "index too big": (b"26 x\n99 y\n0 a\n", {0: b"a"}),
    "no space": (b"0a\n1 b\n", {1: b"b"}),
    "empty name": (b"0 \n1 b\n", {1: b"b"}),
    "signed index": (b"-1 x\n+1 y\n 2 z\n", {}),
    "name with space": (b"0 two words\n", {0: b"two words"}),
    "crlf": (b"0 a\r\n", {0: b"a"}),
    "unterminated last line": (b"0 a\n1 b", {0: b"a"}),
    "later line wins": (b"0 a\n0 b\n", {0: b"b"}),
    "old .customflags header": (b"1\n0 a\n", {0: b"a"}),
    "empty": (b"", {}),
}


@pytest.mark.parametrize("case", sorted(PARSE_CASES))
def test_parse_like_dovecot(case):
    data, expected = PARSE_CASES[case]
    slots = parse_keywords(data)
    assert {i: n for i, n in enumerate(slots) if n is not None} == expected


def test_format_round_trips():
    slots = [None] * MAILDIR_MAX_KEYWORDS
    slots[0], slots[7], slots[25] = b"Junk", b"$label1", b"last"
    assert format_keywords(slots) == b"0 Junk\n7 $label1\n25 last\n"
    assert parse_keywords(format_keywords(slots)) == slots


# --- the import budget ------------------------------------------------------------

IMPORT_PROBE = """
import os, sys
sys.path.insert(0, {pyside!r})
from mailslot.storage import open_storage
class Src:
    stored_path = None
    def write_to(self, fd):
        os.write(fd, b"Subject: x\\n\\nbody\\n")
        return 17, 20
st = open_storage(sys.argv[1], user="t", home=sys.argv[2], hostname="h")
st.save(("INBOX",), Src(), flags=tuple(sys.argv[3:]))
print(" ".join(sorted(m for m in sys.modules if m.startswith("mailslot.storage"))))
"""


@pytest.mark.parametrize("location", ["maildir:~/Maildir", "mbox:~/mail"])
@pytest.mark.parametrize("flags,loaded", [((), False), (("\\Seen",), False),
                                          (("Junk",), True)])
def test_keyword_code_loads_only_for_keywords(tmp_path, location, flags, loaded):
    code = IMPORT_PROBE.format(pyside=os.path.join(ROOT, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, location, str(tmp_path),
                          *flags], capture_output=True, check=True, text=True).stdout
    modules = set(out.split())
    assert "mailslot.storage.keywords" in modules if loaded else \
        not modules & {"mailslot.storage.keywords", "mailslot.storage.maildir_keywords"}
    if location.startswith("mbox"):
        assert "mailslot.storage.maildir_keywords" not in modules
