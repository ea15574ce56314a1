"""make demo's runner: the whole pipeline, relay included, from the repository."""

import os
import subprocess
import sys

import pytest

from tests.support import REPO, needs_root


def untrusted_parent(path):
    """The first directory above path the relay would not trust, or others not reach."""
    path = os.path.realpath(path)
    while True:
        st = os.stat(path)
        writable = st.st_mode & 0o022 and not st.st_mode & 0o1000
        if st.st_uid != 0 or writable or not st.st_mode & 0o001:
            return path
        if path == "/":
            return None
        path = os.path.dirname(path)


@needs_root
def test_demo_delivers_through_the_relay_to_each_users_uid():
    bad = untrusted_parent(REPO)
    if bad:
        pytest.skip(f"{bad} is not root-owned, is writable by others, or others cannot "
                    "enter it: the relay would refuse its policy there (clone elsewhere)")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "demo", "run_demo.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "-rwsr-x--- root:nogroup" in out
    # The LMTP part: one reply per RCPT, then one per accepted recipient after DATA.
    assert ("  S: 550 5.1.1 <nosuch@example.com> User doesn't exist: nosuch@example.com\n"
            in out)
    assert "  S: 250 2.0.0 <dave@example.com> Saved\n  S: 250 2.0.0 <erin@example.com> Saved\n" in out
    for name in ("dave", "erin"):
        new = os.path.join(REPO, "demo", "out", "lmtp", name, "Maildir", "new")
        assert [os.stat(os.path.join(new, f)).st_uid for f in os.listdir(new)] == [5010]
    assert out.count(" ok\n") == 7
    # The refused sender gets the rejection mailed (an MDN), alice's correspondent
    # her vacation reply, both to the demo's SMTP server.
    assert "  MAIL FROM:<> RCPT TO:<offers@spam.example>\n" in out
    assert "  | Subject: Rejected: You have won!\n" in out
    assert "  | This address does not accept offers.\n" in out
    assert "  MAIL FROM:<> RCPT TO:<carol@example.net>\n" in out
    assert "  | Auto-Submitted: auto-replied (vacation)\n" in out
    assert "  | Subject: Auto: Frage zum Treffen in =?utf-8?b?S8O2bG4=?=\n" in out
    vmail = os.path.join(REPO, "demo", "out", "vmail")
    owners = {}
    for user in ("bob", "alice"):
        for dirpath, _, files in os.walk(os.path.join(vmail, user, "Maildir")):
            if os.path.basename(dirpath) in ("new", "cur"):
                for name in files:
                    owners.setdefault(user, set()).add(
                        os.stat(os.path.join(dirpath, name)).st_uid)
    assert owners == {"bob": {5001}, "alice": {5002}}
    assert "vacation action: sent vacation response to <carol@example.net>" in out
    bob = os.path.join(vmail, "bob", "Maildir")
    # Sieve: List-Id filing, the +detail folder, the flag and keyword; the offer was refused.
    assert len(os.listdir(os.path.join(bob, ".Lists.announce", "new"))) == 1
    shopping = os.listdir(os.path.join(bob, ".shopping", "cur"))
    assert len(shopping) == 1 and shopping[0].endswith(":2,Fa")
    assert open(os.path.join(bob, ".shopping", "dovecot-keywords")).read() == "0 $Invoice\n"
    assert "\\Flagged $Invoice" in out
    assert len(os.listdir(os.path.join(bob, "new"))) == 2
    assert "saved mail to Lists/announce" in out
