"""Over quota through mailslot-lmtpd: the MTA gets the answer, nobody gets a DSN.

As Dovecot's lmtp: 552 5.2.2 with quota_full_tempfail off, 452 4.2.2 with it on,
each recipient its own reply in one transaction; the limits from the passwd-file
userdb. sendmail_path is /bin/false, so a DSN mailed by mistake would show as a
451 (a failed send), not as the 552.
"""

import os

from tests.lmtp.lmtpsite import Client, Site
from tests.support import needs_root

pytestmark = needs_root

MSG = (b"From: a@example.org\nSubject: big\nMessage-ID: <q@example.org>\n\n"
       + (b"x" * 75 + b"\n") * 40)
USERS = ("full::%UID%:%UID%::%TOP%/home-full::userdb_quota_rule=*:storage=1k\n"
         "deferred::%UID%:%UID%::%TOP%/home-deferred::userdb_quota_rule=*:storage=1k "
         "userdb_quota_full_tempfail=yes\n"
         "roomy::%UID%:%UID%::%TOP%/home-roomy::userdb_quota_rule=*:storage=1M\n")


def test_lmtp_replies_552_or_452():
    site = Site.create(users_extra=USERS, extra="sendmail_path: /bin/false\n")
    try:
        for name in ("full", "deferred", "roomy"):
            os.mkdir(site.home(name), 0o700)
            os.chown(site.home(name), site.uid, site.uid)
        site.start()
        c = Client.unix(site.socket)
        c.hello()
        rcpt, final = c.transaction("s@example.org", ["full@example.org",
                                                      "deferred@example.org",
                                                      "roomy@example.org"], MSG)
        assert rcpt == ["250 2.1.5 OK"] * 3
        assert final == [
            "552 5.2.2 <full@example.org> Quota exceeded (mailbox for user is full)",
            "452 4.2.2 <deferred@example.org> Quota exceeded (mailbox for user is full)",
            "250 2.0.0 <roomy@example.org> Saved"]
        assert site.maildir("full") == [] and site.maildir("deferred") == []
        assert len(site.maildir("roomy")) == 1
        with open(os.path.join(site.home("roomy"), "Maildir", "maildirsize")) as f:
            text = f.read()
        assert text.startswith("1048576S\n0 0\n") and text.count("\n") == 3
    finally:
        site.cleanup()
