"""Case (4): a Sieve fileinto rule filing a message through the relay path.

Virtual user v2's active script (~/.dovecot.sieve, the default `sieve` setting)
files messages whose subject carries [sort] into the folder Sorted; the delivery
comes through Postfix's pipe and the setuid relay, so the script runs as v2.
"""
import os


MARK = b"X-Test-Case: sieve-fileinto-4"
SCRIPT = b'require "fileinto";\nif header :contains "subject" "[sort]" {\n  fileinto "Sorted";\n}\n'


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
