"""Sieve in the delivery: the installed engine files, flags, discards and rejects.

Each case is a personal script (~/.dovecot.sieve) and a message, delivered by the
installed mailslot-lda as an ordinary user; the test looks at where the message
landed, its flags, the exit code and the log.
"""

import os

import pytest

from tests.engine.sieveuser import SieveUser, sieve_user
from tests.support import needs_root, run_as

pytestmark = needs_root

MSG = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
       b"Subject: [list] hello\nList-Id: Team <team.example.org>\n"
       b"Message-ID: <s1@example.org>\n\nHello.\n")


class Box(SieveUser):
    def deliver(self, *args, input=MSG):
        return run_as(self.user, [self.lda, "-c", self.conf] + list(args), input=input)

    def files(self, folder="", sub="new"):
        path = os.path.join(self.maildir, folder, sub)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture
def box(installed, mail_users):
    with sieve_user(mail_users[1], installed, "mailslot-sieve-conf-", Box) as site:
        yield site


def test_fileinto_by_list_id(box):
    box.script('require "fileinto";\n'
               'if header :contains "List-Id" "team.example.org" { fileinto "Lists"; }\n')
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert len(box.files(".Lists")) == 1 and box.files() == []
    assert "saved mail to Lists" in box.log()


def test_flags_put_the_message_in_cur(box):
    box.script('require ["imap4flags"];\naddflag "\\\\Seen";\naddflag "\\\\Flagged";\n')
    assert box.deliver().returncode == 0
    cur = box.files(sub="cur")
    assert len(cur) == 1 and cur[0].endswith(":2,FS"), cur
    assert box.files() == []


def test_keywords_land_in_dovecot_keywords(box):
    box.script('require ["imap4flags", "fileinto"];\naddflag "Junk";\n'
               'fileinto :flags "$label1 \\\\Seen" "Lists";\nkeep;\n')
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    inbox, lists = box.files(sub="cur"), box.files(".Lists", sub="cur")
    assert len(inbox) == 1 and inbox[0].endswith(":2,a"), inbox
    assert len(lists) == 1 and lists[0].endswith(":2,Sa"), lists
    with open(os.path.join(box.maildir, "dovecot-keywords"), "rb") as f:
        assert f.read() == b"0 Junk\n"
    with open(os.path.join(box.maildir, ".Lists", "dovecot-keywords"), "rb") as f:
        assert f.read() == b"0 $label1\n"
    assert box.files() == [] and box.files(".Lists") == []


def test_keyword_that_cannot_be_stored_is_logged_not_fatal(box):
    # imap4flags accepts any atom; Dovecot (and so the storage) no keyword over 50.
    box.script('require ["imap4flags"];\naddflag "%s";\naddflag "Junk";\n' % ("k" * 51))
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    inbox = box.files(sub="cur")
    assert len(inbox) == 1 and inbox[0].endswith(":2,a"), inbox
    log = box.log()
    assert "not stored: longer than 50 characters" in log and "saved mail to INBOX" in log


def test_discard_files_nothing(box):
    box.script("discard;\n")
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert box.files() == [] and box.files(sub="cur") == []
    assert "discarded by sieve" in box.log()


@pytest.mark.parametrize("script,args", [("reject", ("-e",)), ("ereject", ())],
                         ids=["reject with -e", "ereject"])
def test_reject_exits_77_with_the_reason(box, script, args):
    # README's exit table and mailslot-lda(1) (tests/docs checks the docs); a reject
    # without -e mails the rejection (tests/send/test_engine_send.py).
    box.script(f'require "{script}";\n{script} "No lists here.";\n')
    proc = box.deliver(*args)
    assert proc.returncode == 77
    assert b"No lists here." in proc.stderr
    assert box.files() == []


def test_runtime_failure_keeps_the_message(box):
    # A fileinto of a name that cannot exist fails at run time; the message is kept.
    box.script('require ["fileinto", "mailbox", "encoded-character"];\n'
               'fileinto :create "a${unicode:1}b";\n')
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1, box.log() + str(os.listdir(box.maildir))


def test_script_that_does_not_compile_keeps_the_message(box):
    box.script("if header :nonsense { keep; \n")
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1


@pytest.mark.parametrize("name", ["../../escape", "a/../../x", "..", "${hex:00}x",
                                  "${unicode:7f}", "a.${hex:0a}b"])
def test_hostile_fileinto_lands_in_inbox(box, name):
    box.script('require ["fileinto", "encoded-character"];\n'
               f'fileinto "{name}";\n')
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1
    home = os.path.dirname(box.maildir)
    assert set(os.listdir(home)) <= {"Maildir", "log", ".dovecot.sieve",
                                     ".dovecot.msbin", ".dovecot.sieve.log"}


def test_redirect_is_not_lost_when_sending_fails(box):
    # Nothing saved and the forward cannot go out: a temporary failure, the MTA
    # keeps the message (tests/send covers what is sent).
    box.script('redirect "carol@example.net";\n')
    proc = box.deliver("-o", "sendmail_path=/nonexistent/sendmail")
    assert proc.returncode == 75, proc.stderr
    assert b"cannot run /nonexistent/sendmail" in proc.stderr
    assert box.files() == []


def test_editheader_changes_the_stored_copy(box):
    box.script('require ["editheader", "fileinto"];\n'
               'addheader "X-Filed" "by sieve";\nfileinto "Tagged";\n')
    # editheader is off by default, as in Pigeonhole.
    assert box.deliver("-o", "sieve_extensions=+editheader").returncode == 0
    name = box.files(".Tagged")[0]
    data = open(os.path.join(box.maildir, ".Tagged", "new", name), "rb").read()
    assert data.startswith(b"X-Filed: by sieve\n")
    assert data.endswith(b"\n\nHello.\n")


def test_fileinto_create_even_with_n(box):
    box.script('require ["fileinto", "mailbox"];\nfileinto :create "Made";\n')
    assert box.deliver("-n").returncode == 0
    assert len(box.files(".Made")) == 1


def test_fileinto_missing_without_create_and_n_goes_to_inbox(box):
    box.script('require "fileinto";\nfileinto "Missing";\n')
    assert box.deliver("-n").returncode == 0
    assert len(box.files()) == 1 and not os.path.exists(os.path.join(box.maildir,
                                                                     ".Missing"))


def test_body_test_reads_the_whole_message(box):
    box.script('require ["body", "fileinto"];\n'
               'if body :contains "Hello" { fileinto "Greetings"; }\n')
    assert box.deliver().returncode == 0
    name = box.files(".Greetings")[0]
    assert open(os.path.join(box.maildir, ".Greetings", "new", name), "rb").read() == MSG


@pytest.mark.parametrize("location", ["maildir:~/Maildir", "mbox:~/mail:INBOX=~/mail/inbox"])
def test_two_copies_after_the_input_is_consumed(box, location):
    # The second and third saves come after stdin was read to its end: they must
    # come from the first copy, whole, in either format.
    box.script('require ["fileinto", "copy"];\n'
               'fileinto :copy "One";\nfileinto "Two";\n')
    big = MSG + b"x" * 300_000 + b"\n"          # more than one read chunk
    proc = box.deliver("-o", f"mail_location={location}", input=big)
    assert proc.returncode == 0, proc.stderr
    home = os.path.dirname(box.maildir)
    if location.startswith("maildir"):
        copies = [open(os.path.join(box.maildir, f".{name}", "new",
                                    box.files(f".{name}")[0]), "rb").read()
                  for name in ("One", "Two")]
        assert copies == [big, big]
        assert box.files() == []                  # no implicit keep after fileinto
    else:
        for name in ("One", "Two"):
            data = open(os.path.join(home, "mail", name), "rb").read()
            assert data.startswith(b"From ") and big in data
        assert not os.path.exists(os.path.join(home, "mail", "inbox")) or \
            big not in open(os.path.join(home, "mail", "inbox"), "rb").read()
    log = box.log()
    assert "saved mail to One" in log and "saved mail to Two" in log


# An edited copy (editheader) keeps every line it did not edit byte for byte
# (issue 20.3): folded lines with their TABs, a field with space before its colon,
# a line that is no field, the 1500 fields after field 1000 and, in mbox, the
# envelope sender of the From_ line.
EDIT_HEAD = (b"Received: from a.example.org\n\tby b.example.org;\n  Fri, 4 Dec 2026\n"
             b"X-Spaced   : a value\n"
             b"this line is no field\n"
             b"X-Del: remove me\n"
             + b"".join(b"X-N: %d\n" % i for i in range(1500))
             + b"Subject: kept\n")
EDIT_BODY = b"\nbody line\n"
EDIT_SCRIPT = ('require ["editheader", "fileinto"];\n'
               'addheader "X-Top" "1";\naddheader :last "X-Bottom" "2";\n'
               'deleteheader "X-Del";\nfileinto "Ed";\n')
EDITED = (b"X-Top: 1\n"
          + EDIT_HEAD.replace(b"X-Del: remove me\n", b"") + b"X-Bottom: 2\n" + EDIT_BODY)


def test_edited_copy_keeps_every_unedited_line_maildir(box):
    box.script(EDIT_SCRIPT)
    proc = box.deliver("-o", "sieve_extensions=+editheader",
                       input=EDIT_HEAD + EDIT_BODY)
    assert proc.returncode == 0, proc.stderr
    name = box.files(".Ed")[0]
    with open(os.path.join(box.maildir, ".Ed", "new", name), "rb") as f:
        assert f.read() == EDITED


def test_edited_copy_keeps_the_envelope_sender_mbox(box):
    box.script(EDIT_SCRIPT)
    proc = box.deliver("-o", "sieve_extensions=+editheader",
                       "-o", "mail_location=mbox:~/mail:INBOX=~/mail/inbox",
                       input=b"From sender@example.net  Fri Dec  4 10:00:00 2026\n"
                       + EDIT_HEAD + EDIT_BODY)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(os.path.dirname(box.maildir), "mail", "Ed"), "rb") as f:
        data = f.read()
    assert data.startswith(b"From sender@example.net "), data[:80]
    assert EDITED[:-len(EDIT_BODY)] in data


def test_one_copy_a_mailbox_when_a_fileinto_fails(box):
    # RFC 5228 2.10.3: the failed fileinto's implicit keep and fileinto "INBOX"
    # are one delivery to INBOX (issue 12.12), not two copies.
    box.script('require "fileinto";\nfileinto "Missing";\nfileinto "INBOX";\n')
    proc = box.deliver("-n")
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1, box.log()
    assert "failed to store into mailbox 'Missing'" in box.log()
    assert box.log().count("saved mail to INBOX") == 1



def test_edited_copy_is_the_one_dovecot_lda_stores(box):
    # The oracle: Pigeonhole under Debian's dovecot-lda, same message and script.
    # (Without the line that is no field: dovecot-lda 2.3.19 aborts in
    # edit_mail_header_delete on such a header; mailslot keeps the line.)
    from tests.dovecot_env import DovecotEnv, dovecot_missing
    if dovecot_missing():
        pytest.skip(dovecot_missing())
    message = EDIT_HEAD.replace(b"this line is no field\n", b"") + EDIT_BODY
    box.script(EDIT_SCRIPT)
    proc = box.deliver("-o", "sieve_extensions=+editheader", input=message)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(box.maildir, ".Ed", "new", box.files(".Ed")[0]), "rb") as f:
        ours = f.read()
    env = DovecotEnv.create()
    try:
        with open(env.conf, "a") as f:
            f.write("lda_mailbox_autocreate = yes\nprotocol lda {\n  mail_plugins = sieve\n}\n"
                    "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n"
                    "  sieve_extensions = +editheader\n}\n")
        with open(os.path.join(env.home, ".dovecot.sieve"), "w") as f:
            f.write(EDIT_SCRIPT)
        env.give(env.home)
        env.lda(message)
        new = os.path.join(env.home, "Maildir", ".Ed", "new")
        with open(os.path.join(new, os.listdir(new)[0]), "rb") as f:
            theirs = f.read()
    finally:
        env.cleanup()
    assert ours == theirs
    assert ours.startswith(b"X-Top: 1\nReceived: from a.example.org\n\tby b.example.org;\n")


def test_a_filter_list_delivery_loads_no_compiler_nor_duplicate_database(box):
    # The second delivery runs from the compile cache: no lexer, parser or
    # validator, and a script that neither sends nor uses duplicate does not
    # load the duplicate database (sieve_filing makes it on first use).
    box.script('require ["fileinto", "envelope"];\n'
               'if header :contains "List-Id" "team.example.org" { fileinto "Lists"; }\n'
               'if envelope :is "from" "x@example.org" { fileinto "X"; }\n')
    assert box.deliver().returncode == 0
    proc = run_as(box.user, ["/usr/bin/python3", "-X", "importtime", "-I", "-S", box.lda,
                             "-c", box.conf], input=MSG)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:")}
    assert "mailslot.sieve.extensions.core_runtime" in imported
    assert "mailslot.actions" in imported
    for never in ("mailslot.duplicates", "mailslot.sieve.lexer", "mailslot.sieve.parser",
                  "mailslot.sieve.validator", "mailslot.send"):
        assert never not in imported, never
    assert len(box.files(".Lists")) == 2


def test_the_duplicate_database_made_on_first_use_still_remembers(box):
    # sieve_filing opens the duplicate database lazily: the duplicate test reads
    # it and the delivery marks it, so the second copy of a message is caught.
    box.script('require ["duplicate", "fileinto"];\nif duplicate { fileinto "Dup"; }\n')
    for _ in range(2):
        proc = box.deliver()
        assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1 and len(box.files(".Dup")) == 1
    assert os.path.exists(os.path.join(box.home, ".mailslot.lda-dupes"))
