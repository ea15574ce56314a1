"""Dovecot shows the keywords mailslot stores, and the two agree on dovecot-keywords.

Real Dovecot 2.3 (Debian's packages) through tests/dovecot_env.py: doveadm fetch
reads the flags back; dovecot-lda with Pigeonhole's imap4flags and doveadm flags
add create keywords of their own in the same mailbox, and mailslot must reuse the
letters they chose (and they mailslot's). For mbox, Dovecot shows a keyword only
when the mbox's first message declares it in X-IMAPbase (storage/mbox.py).
Dovecot's log must stay free of errors and warnings.
"""

import os

import pytest

from tests.interop.test_interop_dovecot import (LOCATIONS, assert_clean_log, message,
                                                save_plan)

SIEVE_PLUGIN = ("protocol lda {\n  mail_plugins = $mail_plugins sieve\n}\n"
                "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n")


def flags_by_subject(env, mailbox="INBOX"):
    """{subject: set of flags} as doveadm fetch reports them (\\Recent left out)."""
    rows = env.fetch("flags hdr.subject", f"mailbox {mailbox}")
    return {row["hdr.subject"]: set(row["flags"].split()) - {"\\Recent"} for row in rows}


def keywords_file(env, location):
    """dovecot-keywords of INBOX, wherever the layout puts its control directory."""
    control = {"maildir:~/Maildir": "Maildir",
               "maildir:~/Mail:LAYOUT=fs:CONTROL=~/control:INDEX=~/index": "control/INBOX",
               "maildir:~/Maildir:INBOX=~/inbox:CONTROL=~/ctl": "ctl/.INBOX"}[location]
    with open(os.path.join(env.home, control, "dovecot-keywords"), "rb") as f:
        return f.read()


@pytest.mark.parametrize("layout", sorted(LOCATIONS))
def test_dovecot_shows_mailslot_keywords(dovecot_factory, layout):
    location, folder = LOCATIONS[layout]
    env = dovecot_factory(mail_location=location, separator="/")
    parts = folder.split("/")
    plan = [{"op": "create", "name": parts},
            {"op": "save", "name": ["INBOX"], "body": message(1), "flags": ["Junk", "$label1"]},
            {"op": "save", "name": ["INBOX"], "body": message(2), "flags": ["\\Seen", "junk"]},
            {"op": "save", "name": parts, "body": message(3), "flags": ["$label1"]},
            {"op": "save", "name": ["INBOX"], "body": message(4)},
            {"op": "save", "name": ["INBOX"], "body": message(5),
             "flags": ["\\Flagged", "Work", "bad name"]}]
    saved = save_plan(env, plan)
    assert [len(s["warnings"]) for s in saved] == [0, 0, 0, 0, 1]
    assert flags_by_subject(env) == {
        "message 1": {"Junk", "$label1"},
        "message 2": {"\\Seen", "Junk"},        # Dovecot's lookup folds case, too
        "message 4": set(),
        "message 5": {"\\Flagged", "Work"}}
    assert flags_by_subject(env, folder) == {"message 3": {"$label1"}}
    assert keywords_file(env, location) == b"0 Junk\n1 $label1\n2 Work\n"
    assert_clean_log(env)


def test_dovecot_and_mailslot_share_the_letters(dovecot_factory):
    location = "maildir:~/Maildir"
    env = dovecot_factory(mail_location=location, separator="/")
    with open(env.conf, "a") as f:
        f.write(SIEVE_PLUGIN)
    with open(os.path.join(env.home, ".dovecot.sieve"), "w") as f:
        f.write('require ["imap4flags"];\naddflag "Work";\naddflag "$label1";\nkeep;\n')
    env.give(env.home)

    def save(i, flags):
        plan = [{"op": "save", "name": ["INBOX"], "body": message(i), "flags": flags}]
        return save_plan(env, plan)[0]

    first = save(1, ["Junk", "$label1"])
    env.lda(message(2).encode())            # Pigeonhole: addflag Work, $label1
    assert keywords_file(env, location) == b"0 Junk\n1 $label1\n2 Work\n"
    lda_file = [f for f in os.listdir(os.path.join(env.home, "Maildir", "cur"))
                if os.path.basename(first["path"]) != f]
    assert [f.partition(":2,")[2] for f in lda_file] == ["bc"]
    third = save(3, ["work", "Other"])      # Dovecot's letter for Work, a new one after it
    assert third["path"].endswith(":2,cd")
    uid = [r["uid"] for r in env.fetch("uid hdr.subject", "mailbox INBOX")
           if r["hdr.subject"] == "message 1"][0]
    env.doveadm("flags", "add", "FromDovecot", "mailbox", "INBOX", "uid", uid)
    assert keywords_file(env, location).endswith(b"3 Other\n4 FromDovecot\n")
    fourth = save(4, ["fromdovecot", "\\Seen"])
    assert fourth["path"].endswith(":2,Se")
    assert flags_by_subject(env) == {
        "message 1": {"Junk", "$label1", "FromDovecot"},
        "message 2": {"Work", "$label1"},
        "message 3": {"Work", "Other"},
        "message 4": {"\\Seen", "FromDovecot"}}
    assert_clean_log(env)


MBOX_LOCATION = "mbox:~/mail:INBOX=~/mail/inbox"


def test_dovecot_shows_mbox_keywords_its_first_message_declares(dovecot_factory):
    env = dovecot_factory(mail_location=MBOX_LOCATION, separator="/")
    plan = [{"op": "save", "name": ["INBOX"], "body": message(1), "flags": ["Junk"]}]
    save_plan(env, plan)
    # Not declared yet: Dovecot shows nothing (the limit mbox.py documents) ...
    assert flags_by_subject(env) == {"message 1": set()}
    # ... until the keyword is used through Dovecot, which declares it in X-IMAPbase.
    env.doveadm("flags", "add", "Junk $label1", "mailbox", "INBOX", "uid", "1")
    with open(os.path.join(env.home, "mail", "inbox"), "rb") as f:
        assert b"\nX-IMAPbase: " in f.read().split(b"\n\n")[0]
    plan = [{"op": "save", "name": ["INBOX"], "body": message(2), "flags": ["junk"]},
            {"op": "save", "name": ["INBOX"], "body": message(3),
             "flags": ["Junk", "Fresh", "$label1", "\\Seen"]}]
    saved = save_plan(env, plan)
    assert saved[0]["warnings"] == []
    assert len(saved[1]["warnings"]) == 1 and "Fresh" in saved[1]["warnings"][0]
    assert flags_by_subject(env) == {
        "message 1": {"Junk", "$label1"},
        "message 2": {"Junk"},
        "message 3": {"Junk", "$label1", "\\Seen"}}
    assert_clean_log(env)
