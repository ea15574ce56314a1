"""Case (4): a Sieve fileinto rule filing a message through the relay path.

Virtual user v2's active script (~/.dovecot.sieve, the default `sieve` setting)
files messages whose subject carries [sort] into the folder Sorted; the delivery
comes through Postfix's pipe and the setuid relay, so the script runs as v2.
"""
import os

import pytest

from tests.support import REPO

MARK = b"X-Test-Case: sieve-fileinto-4"
SCRIPT = b'require "fileinto";\nif header :contains "subject" "[sort]" {\n  fileinto "Sorted";\n}\n'


def _sieve_runs_in_delivery():
    """Whether an engine module outside the admin command imports the Sieve package."""
    import re
    top = os.path.join(REPO, "pyside", "mailslot")
    for name in os.listdir(top):
        if name.endswith(".py") and name != "admin.py":
            with open(os.path.join(top, name)) as f:
                if re.search(r"from \.sieve\b|from \. import sieve\b|mailslot\.sieve\b", f.read()):
                    return True
    return False


@pytest.mark.skipif(not _sieve_runs_in_delivery(),
                    reason="the delivery pipeline does not run Sieve yet (no engine module "
                           "imports pyside/mailslot/sieve); this case runs as soon as one does")
def test_fileinto_files_the_message_through_the_relay(postfix):
    v2 = postfix.virtual[1]
    script = os.path.join(v2.home, ".dovecot.sieve")
    with open(script, "wb") as f:
        f.write(SCRIPT)
    os.chown(script, v2.uid, v2.gid)
    try:
        postfix.send("sender@example.net", [v2.address],
                     b"Subject: [sort] filed by Sieve\n" + MARK + b"\n\nSorted.\n")
        maildir = os.path.join(v2.home, "Maildir")
        found = postfix.wait_for_message(os.path.join(maildir, ".Sorted"), MARK)
        assert len(found) == 1, postfix.log()[-3000:]
        assert os.stat(found[0]).st_uid == v2.uid
        assert postfix.wait_for_message(maildir, MARK, timeout=0) == []
    finally:
        os.unlink(script)
