"""mailslot-lmtpd keeps its passwd-file in memory (userdb/passwd_cache.py) and still
sees every change at the next RCPT: a user removed or changed in place (same size,
same mtime), a file replaced by rename. The daemon is real, on a real socket."""

import os
import time

from tests.support import needs_root
from tests.lmtp.lmtpsite import Client, Site

pytestmark = needs_root

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"
OLD = time.time() - 3600


def set_users(site, text, *, rename=False):
    """Write the users file (in place, or by rename), its mtime an hour ago."""
    path = os.path.join(site.top, "users")
    target = path + ".new" if rename else path
    with open(target, "w") as f:
        f.write(text)
    os.utime(target, (OLD, OLD))
    if rename:
        os.rename(target, path)


def rcpt(client, name):
    replies, finals = client.transaction("s@example.org", [f"{name}@lmtp.test"], MSG)
    if not finals:                  # refused: end the transaction
        client.send(b"RSET\r\n")
        assert client.reply().startswith("250 ")
    return replies[0].split(" ", 2)[:2] + [finals]


def test_passwd_file_changes_are_seen_at_the_next_rcpt():
    site = Site.create()
    try:
        with open(os.path.join(site.top, "users")) as f:
            users = f.read()
        set_users(site, users)
        # Past the racy window of the file's ctime (just now): the daemon keeps
        # its copy from the first RCPT on.
        time.sleep(2.2)
        site.start()
        client = Client.unix(site.socket)
        client.hello()
        assert rcpt(client, "alice")[:2] == ["250", "2.1.5"]
        assert rcpt(client, "alice")[2] == ["250 2.0.0 <alice@lmtp.test> Saved"]

        # alice renamed in place: same size, the mtime put back.
        set_users(site, users.replace("alice::", "xlice::"))
        assert rcpt(client, "alice")[:2] == ["550", "5.1.1"]
        assert rcpt(client, "xlice")[:2] == ["250", "2.1.5"]

        # The file replaced by rename (another inode, same size and mtime).
        set_users(site, users, rename=True)
        assert rcpt(client, "alice")[:2] == ["250", "2.1.5"]
        assert rcpt(client, "xlice")[:2] == ["550", "5.1.1"]

        # bob's home changed in place: his next message goes to the new one.
        new_home = site.home("bob") + "2"
        os.mkdir(new_home, 0o700)
        os.chown(new_home, site.uid, site.uid)
        set_users(site, users.replace(site.home("bob") + ":", new_home + ":"))
        assert rcpt(client, "bob")[2] == ["250 2.0.0 <bob@lmtp.test> Saved"]
        assert len(os.listdir(os.path.join(new_home, "Maildir", "new"))) == 1
        assert site.maildir("bob") == []
        client.close()
    finally:
        site.cleanup()
