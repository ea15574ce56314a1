"""Case (3): user+ext@ is filed into the folder ext (-m ${extension}).

Postfix strips the extension for the lookup (recipient_delimiter = +) and passes
it to the pipe as ${extension}; the engine creates the folder (Maildir++ .ext) as
the user and files the message there, not in INBOX.
"""
import os

MARK = b"X-Test-Case: extension-folder-3"


def test_extension_names_the_folder(postfix):
    v1 = postfix.virtual[0]
    address = f"{v1.name}+lists@{v1.address.split('@')[1]}"
    postfix.send("sender@example.net", [address],
                 b"Subject: to a folder\n" + MARK + b"\n\nFiled by extension.\n")
    maildir = os.path.join(v1.home, "Maildir")
    found = postfix.wait_for_message(os.path.join(maildir, ".lists"), MARK)
    assert len(found) == 1, postfix.log()[-3000:]
    assert os.stat(found[0]).st_uid == v1.uid
    assert os.path.exists(os.path.join(maildir, ".lists", "maildirfolder"))
    assert postfix.wait_for_message(maildir, MARK, timeout=0) == []


def test_empty_extension_means_inbox(postfix):
    v2 = postfix.virtual[1]
    postfix.send("sender@example.net", [v2.address],
                 b"Subject: no extension\nX-Test-Case: no-extension\n\nINBOX.\n")
    found = postfix.wait_for_message(os.path.join(v2.home, "Maildir"), b"no-extension")
    assert len(found) == 1, postfix.log()[-3000:]


def test_extension_arrives_lower_cased(postfix):
    # Postfix folds ${extension} to lower case (flag u of the shipped master.cf line),
    # as docs/deployment.md and the example say: +Shopping files into "shopping".
    v1 = postfix.virtual[0]
    address = f"{v1.name}+Shopping@{v1.address.split('@')[1]}"
    postfix.send("sender@example.net", [address],
                 b"Subject: mixed case\nX-Test-Case: extension-case\n\nLower.\n")
    maildir = os.path.join(v1.home, "Maildir")
    found = postfix.wait_for_message(os.path.join(maildir, ".shopping"), b"extension-case")
    assert len(found) == 1, postfix.log()[-3000:]
    assert not os.path.exists(os.path.join(maildir, ".Shopping"))
