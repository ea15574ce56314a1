"""mailslot-lda (installed, run as a user) delivering into mbox mailboxes.

The engine needs nothing mbox-specific for a mail root the user owns: the
mail_location says mbox, the storage does the rest (the /var/mail case through the
lock group helper is in test_mbox_spool.py).
"""

import os
import shutil

import pytest

from tests.mbox.mboxtest import MboxHome, check_structure, read_messages
from tests.support import needs_root, run_as, world_tempdir

pytestmark = needs_root

MSG = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
       b"Message-ID: <m1@example.org>\r\n\r\nFrom the start of a line.\r\nBye.\r\n")


@pytest.fixture
def engine(installed, mail_users):
    user = mail_users[0]
    home = MboxHome.create(uid=user.pw_uid, gid=user.pw_gid)
    confdir = world_tempdir("mailslot-conf-")
    conf = os.path.join(confdir, "mailslot.yaml")
    with open(conf, "w") as f:
        # mbox's hierarchy separator is "/" (Dovecot's default for it too).
        f.write(f"mail_location: mbox:{home.home}/mail\nlog_path: {home.home}/mailslot.log\n"
                "first_valid_uid: 100\nnamespace:\n  inbox:\n    separator: /\n")
    os.chmod(conf, 0o644)

    def lda(*args, input=MSG):
        return run_as(user, [os.path.join(installed, "mailslot-lda"), "-c", conf, *args],
                      input=input)
    yield home, lda
    home.cleanup()
    shutil.rmtree(confdir, ignore_errors=True)


def test_engine_appends_to_the_mbox_inbox(engine):
    home, lda = engine
    for _ in range(2):
        proc = lda("-f", "alice@example.org")
        assert proc.returncode == 0, proc.stderr
    inbox = home.path("mail", "inbox")
    with open(inbox, "rb") as f:
        data = f.read()
    assert check_structure(data) == 2
    want = MSG.replace(b"\r\n", b"\n")          # stored with LF, as Dovecot stores it
    assert [raw for _f, raw in read_messages(inbox)] == [want, want]
    assert b"\n>From the start of a line.\n" in data
    assert os.stat(inbox).st_uid == home.uid
    with open(home.path("mailslot.log")) as f:
        assert f.read().count("saved mail to INBOX") == 2


def test_engine_creates_the_folder_mbox(engine):
    home, lda = engine
    proc = lda("-m", "lists/announce")
    assert proc.returncode == 0, proc.stderr
    folder = home.path("mail", "lists", "announce")
    assert os.path.isfile(folder) and os.path.isdir(home.path("mail", "lists"))
    assert [raw for _f, raw in read_messages(folder)] == [MSG.replace(b"\r\n", b"\n")]
    assert not os.path.exists(home.path("mail", "inbox"))
