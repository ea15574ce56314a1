"""Dovecot reads what mailslot writes, and the two share one Maildir without friction.

Each test makes a private Dovecot configuration (tests/dovecot_env.py) and runs
both sides as the same unprivileged user: mailslot's Storage in a child process
(tests/interop/saver.py), Dovecot's own doveadm, imap and dovecot-lda binaries.
Dovecot's log must stay free of errors and warnings (a corrupt uidlist, a broken
file name or a lowered next UID would all be logged there).
"""

import json
import os
import re
import socket

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SAVER = os.path.join(HERE, "saver.py")

# Dovecot 2.3's file name for a delivered message (maildir-filename.c, maildir-save.c).
DOVECOT_NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)\.([^,:/]+),S=(\d+),W=(\d+)$")

LOCATIONS = {
    "maildir++": ("maildir:~/Maildir", "box/sub"),
    "fs+control": ("maildir:~/Mail:LAYOUT=fs:CONTROL=~/control:INDEX=~/index", "box/sub"),
    "maildir++ inbox+control": ("maildir:~/Maildir:INBOX=~/inbox:CONTROL=~/ctl", "box/sub"),
}


def message(i, extra=""):
    return (f"From: sender{i}@example.org\nTo: rcpt@example.org\n"
            f"Subject: message {i}{extra}\nMessage-ID: <m{i}@example.org>\n\n"
            f"Body line one of {i}.\nBody line two.\n")


def save_plan(env, plan):
    """Run the plan through mailslot as the test user; return the saves' results."""
    out = env.run_python_file(SAVER, env.mail_location, env.home, json.dumps(plan)).stdout
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def guid_of(path):
    return os.path.basename(path).partition(":")[0]


def assert_clean_log(env):
    problems = env.log_problems()
    assert problems == [], "Dovecot logged problems:\n" + "\n".join(problems)


@pytest.mark.parametrize("layout", sorted(LOCATIONS))
def test_dovecot_lists_mailslot_uids_and_continues_them(dovecot_factory, layout):
    location, folder = LOCATIONS[layout]
    env = dovecot_factory(mail_location=location, separator="/")
    parts = folder.split("/")
    plan = [{"op": "create", "name": parts}, {"op": "subscribe", "name": parts}]
    for i in range(100):
        plan.append({"op": "save", "name": ["INBOX"] if i % 2 else parts,
                     "body": message(i)})
    saved = save_plan(env, plan)
    assert len(saved) == 100
    assert all(s["uid"] is not None for s in saved), saved
    # UIDs count up from 1 in each mailbox, as Dovecot would have numbered them.
    inbox = [s["uid"] for s in saved if s["mailbox"] == "INBOX"]
    other = [s["uid"] for s in saved if s["mailbox"] != "INBOX"]
    assert inbox == list(range(1, 51)) and other == list(range(1, 51))

    rows = env.fetch("uid mailbox guid")
    seen = {(r["mailbox"], r["guid"]): int(r["uid"]) for r in rows}
    expected = {("INBOX" if s["mailbox"] == "INBOX" else folder, guid_of(s["path"])): s["uid"]
                for s in saved}
    assert seen == expected

    # Dovecot's own delivery takes the next UID in both mailboxes.
    env.lda(message(1000).encode())
    env.lda(message(1001).encode(), "-m", folder)
    rows = env.fetch("uid mailbox guid")
    assert max(int(r["uid"]) for r in rows if r["mailbox"] == "INBOX") == 51
    assert max(int(r["uid"]) for r in rows if r["mailbox"] == folder) == 51
    assert len(rows) == 102

    # ... and mailslot continues after Dovecot, with Dovecot agreeing.
    after = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(2000)},
                            {"op": "save", "name": parts, "body": message(2001)}])
    assert [a["uid"] for a in after] == [52, 52]
    rows = env.fetch("uid mailbox guid")
    seen = {(r["mailbox"], r["guid"]): int(r["uid"]) for r in rows}
    assert seen[("INBOX", guid_of(after[0]["path"]))] == 52
    assert seen[(folder, guid_of(after[1]["path"]))] == 52

    subscribed = [r["mailbox"] for r in env.doveadm_rows("mailbox", "list", "-s")]
    assert folder in subscribed
    assert_clean_log(env)


def test_imap_sees_mailslot_uidvalidity_and_uidnext(dovecot_factory):
    env = dovecot_factory(separator="/")
    saved = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(i)}
                            for i in range(3)])
    with open(os.path.join(env.home, "Maildir", "dovecot-uidlist")) as f:
        header = f.readline().split()
    uidvalidity = header[1][1:]
    out = env.imap(["SELECT INBOX", "UID FETCH 1:* (UID RFC822.SIZE)"])
    assert f"[UIDVALIDITY {uidvalidity}]" in out
    assert "[UIDNEXT 4]" in out
    for s in saved:
        assert f"UID {s['uid']} RFC822.SIZE {s['vsize']}" in out
    assert_clean_log(env)


def test_file_names_and_sizes_match_dovecot_lda(dovecot_factory):
    env = dovecot_factory(separator="/")
    body = message(7, extra=" with \u00fcmlaut")
    env.lda(body.encode())
    saved = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": body}])[0]
    new = os.path.join(env.home, "Maildir", "new")
    names = sorted(os.listdir(new))
    assert len(names) == 2
    theirs = [DOVECOT_NAME.match(n) for n in names if n != os.path.basename(saved["path"])][0]
    ours = DOVECOT_NAME.match(os.path.basename(saved["path"]))
    assert theirs and ours, names
    # Same host part, same S= and W= for the same bytes.
    assert ours.group(4) == theirs.group(4) == socket.gethostname()
    assert ours.group(5, 6) == theirs.group(5, 6)
    assert int(ours.group(3)) != int(theirs.group(3))       # each its own pid
    with open(saved["path"], "rb") as f:
        assert f.read() == body.encode()
    st = os.stat(saved["path"])
    assert st.st_mode & 0o777 == 0o600 | (os.stat(os.path.join(env.home, "Maildir")).st_mode & 0o066)
    rows = env.fetch("uid guid")
    assert sorted(int(r["uid"]) for r in rows) == [1, 2]
    assert_clean_log(env)


def test_busy_uidlist_lock_leaves_numbering_to_dovecot(dovecot_factory):
    env = dovecot_factory(separator="/")
    save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(1)}])
    lock = os.path.join(env.home, "Maildir", "dovecot-uidlist.lock")
    # A fresh lock held by "someone": mailslot must not wait for it nor break it.
    with open(lock, "w") as f:
        f.write("1:" + socket.gethostname())
    env.give(lock)
    saved = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(2)}])[0]
    assert saved["uid"] is None and "locked" in saved["uid_error"]
    assert os.path.dirname(saved["path"]).endswith("/new")
    os.unlink(lock)
    rows = env.fetch("uid guid")
    uids = {r["guid"]: int(r["uid"]) for r in rows}
    assert uids[guid_of(saved["path"])] == 2
    # mailslot then continues after the UID Dovecot gave it.
    again = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(3)}])[0]
    assert again["uid"] == 3
    assert_clean_log(env)


def test_unicode_folders_both_ways(dovecot_factory):
    env = dovecot_factory(separator="/")
    save_plan(env, [{"op": "create", "name": ["Tést", "ü&x"]},
                    {"op": "subscribe", "name": ["Tést", "ü&x"]},
                    {"op": "save", "name": ["Tést", "ü&x"], "body": message(1)}])
    listed = [r["mailbox"] for r in env.doveadm_rows("mailbox", "list")]
    assert "Tést/ü&x" in listed
    assert "Tést/ü&x" in [r["mailbox"] for r in env.doveadm_rows("mailbox", "list", "-s")]
    # A folder Dovecot made: mailslot finds it under the same name and numbers on.
    env.doveadm("mailbox", "create", "Ünï/cödé")
    env.lda(message(2).encode(), "-m", "Ünï/cödé")
    saved = save_plan(env, [{"op": "save", "name": ["Ünï", "cödé"], "body": message(3)}])[0]
    assert saved["uid"] == 2
    rows = env.fetch("uid mailbox guid", "mailbox Ünï/cödé ALL")
    assert sorted(int(r["uid"]) for r in rows) == [1, 2]
    assert_clean_log(env)


def test_hard_linked_copy_and_flags_are_read_by_dovecot(dovecot_factory):
    env = dovecot_factory(separator="/")
    saved = save_plan(env, [
        {"op": "create", "name": ["copies"]},
        {"op": "save", "name": ["INBOX"], "body": message(1)},
        {"op": "save", "name": ["copies"], "body": message(1), "link_previous": True,
         "flags": ["\\Seen", "\\Flagged"]},
    ])
    first, copy = saved
    assert os.stat(first["path"]).st_ino == os.stat(copy["path"]).st_ino
    assert copy["path"].endswith(":2,FS") and "/cur/" in copy["path"]
    rows = env.fetch("uid mailbox flags")
    flags = {r["mailbox"]: r["flags"] for r in rows}
    assert set(flags["copies"].split()) == {"\\Seen", "\\Flagged"}
    assert "\\Seen" not in flags["INBOX"]
    assert_clean_log(env)


# Files only Dovecot's own index code writes; mailslot keeps no index.
INDEX_FILES = re.compile(r"(^|/)dovecot\.(index|list\.index|mailbox\.log)[^/]*$")


def _shape(root):
    """Relative paths below root, minus index files and message files; markers generic."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel == "index" or rel.startswith("index/"):
            continue                    # INDEX= holds only Dovecot's index files
        for name in dirs:
            if not (rel == "." and name == "index"):
                out.add(os.path.normpath(os.path.join(rel, name)) + "/")
        if os.path.basename(dirpath) in ("new", "cur", "tmp"):
            continue
        for name in files:
            path = os.path.normpath(os.path.join(rel, name))
            if not INDEX_FILES.search(path):
                out.add(re.sub(r"dovecot-uidvalidity\.[0-9a-f]{8}$", "dovecot-uidvalidity.X", path))
    return out - INBOX_MARKERS


# Dovecot's LDA leaves maildirfolder in an INBOX directory it creates; mailslot
# does not (it tells Maildir++ quota readers "subfolder"), so the shapes differ there.
INBOX_MARKERS = {"Maildir/maildirfolder", "inbox/maildirfolder"}


@pytest.mark.parametrize("layout", sorted(LOCATIONS))
def test_folders_and_subscriptions_are_laid_out_as_dovecot_does(dovecot_factory, layout):
    location, _ = LOCATIONS[layout]
    names = ["box/sub", "Tést/ü&x", "a", "INBOX"]
    ours = dovecot_factory(mail_location=location, separator="/")
    theirs = dovecot_factory(mail_location=location, separator="/")
    plan = [{"op": "save", "name": ["INBOX"], "body": message(0)}]
    for name in names:
        if name != "INBOX":
            plan.append({"op": "create", "name": name.split("/")})
        plan.append({"op": "subscribe", "name": name.split("/")})
    save_plan(ours, plan)
    theirs.lda(message(0).encode())
    for name in names:
        if name != "INBOX":
            theirs.doveadm("mailbox", "create", name)
        theirs.doveadm("mailbox", "subscribe", name)
    assert _shape(ours.home) == _shape(theirs.home)
    subs = [os.path.join(dirpath, "subscriptions") for dirpath, _, files in os.walk(ours.home)
            if "subscriptions" in files]
    assert len(subs) == 1
    with open(subs[0], "rb") as f:
        mine = f.read()
    with open(subs[0].replace(ours.home, theirs.home), "rb") as f:
        assert mine == f.read()
    assert_clean_log(ours)
    assert_clean_log(theirs)


@pytest.mark.parametrize("room", [0, 9])
def test_uidlist_append_cut_by_ulimit_keeps_dovecots_uids(dovecot_factory, room):
    """Issues 12.9 / 21.2: a uidlist append cut by RLIMIT_FSIZE (room=9: a short
    write; 0: EFBIG) is truncated back, so Dovecot numbers the message after the
    others and keeps that UID; before, it glued its record to the fragment and the
    UID moved (97 -> 98)."""
    env = dovecot_factory(mail_location="maildir:~/Maildir")
    saved = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(i)}
                            for i in range(40)])
    assert [s["uid"] for s in saved] == list(range(1, 41))
    assert [r["uid"] for r in env.fetch("uid")] == [str(i) for i in range(1, 41)]
    uidlist = os.path.join(env.home, "Maildir", "dovecot-uidlist")
    with open(uidlist, "rb") as f:
        before = f.read()
    cut = save_plan(env, [{"op": "fsize_limit", "file": "Maildir/dovecot-uidlist",
                           "room": room},
                          {"op": "save", "name": ["INBOX"], "body": message(40)}])
    with open(uidlist, "rb") as f:
        assert f.read() == before                       # no fragment left
    for _ in range(2):          # numbered once, and the number stays
        rows = env.fetch("uid hdr.subject")
        assert [(r["uid"], r["hdr.subject"]) for r in rows][-2:] == [
            ("40", "message 39"), ("41", "message 40")]
    assert cut[0]["uid"] is None and "truncated back" in cut[0]["uid_error"], cut
    assert any("saved without a UID" in w for w in cut[0]["warnings"]), cut
    more = save_plan(env, [{"op": "save", "name": ["INBOX"], "body": message(41)}])
    assert more[0]["uid"] == 42
    assert_clean_log(env)
