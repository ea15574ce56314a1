"""mail_location parsing (mailslot.storage.location), Dovecot's syntax."""

import pytest

from mailslot.errors import ConfigError
from mailslot.storage.location import parse_mail_location

HOME = "/home/bob"

VALID = [
    ("maildir:~/Maildir", dict(root="/home/bob/Maildir", layout="maildir++", inbox=None,
                               control=None, index=None, utf8=False,
                               subscriptions_name="subscriptions")),
    ("maildir:~", dict(root="/home/bob")),
    ("maildir:~/Maildir/", dict(root="/home/bob/Maildir")),
    ("maildir:/var/vmail/example.org/bob", dict(root="/var/vmail/example.org/bob")),
    ("maildir:~/Maildir:LAYOUT=fs", dict(layout="fs")),
    ("maildir:~/Maildir:LAYOUT=Maildir++", dict(layout="maildir++")),
    ("maildir:~/M:INBOX=~/inbox:CONTROL=/ctl/bob/:INDEX=MEMORY",
     dict(inbox="/home/bob/inbox", control="/ctl/bob", index="MEMORY")),
    ("maildir:~/M:INDEX=/idx/bob", dict(index="/idx/bob")),
    ("maildir:~/M:UTF-8", dict(utf8=True)),
    ("maildir:~/M:SUBSCRIPTIONS=subs", dict(subscriptions_name="subs")),
    ("maildir:/a::b/M", dict(root="/a:b/M")),              # '::' is a literal ':'
    ("maildir:~/M:", dict(root="/home/bob/M")),             # trailing ':' ignored
    ("maildir:~/M:VOLATILEDIR=/run/x:NO-NOSELECT:LISTINDEX=x:INDEXPVT=/p",
     dict(root="/home/bob/M")),
]

INVALID = [
    "", "   ", "~/Maildir", "maildir", "maildir:", "mbox:~/mail:LAYOUT=maildir++",
    "sdbox:~/dbox", "bogus:~/x", "maildir:Maildir", "maildir:~bob/Maildir",
    "maildir:INBOX=/x", "maildir:~/M:LAYOUT=index", "maildir:~/M:LAYOUT=imapdir",
    "maildir:~/M:DIRNAME=mail", "maildir:~/M:FULLDIRNAME=x", "maildir:~/M:MAILBOXDIR=x",
    "maildir:~/M:NOSUCH=1", "maildir:~/M:CONTROL=", "maildir:~/M:CONTROL=relative",
    "maildir:~/M:SUBSCRIPTIONS=a/b", "maildir:/x\x00y",
]


@pytest.mark.parametrize("value,fields", VALID)
def test_valid(value, fields):
    loc = parse_mail_location(value, home=HOME)
    assert loc.format == "maildir"
    for key, expected in fields.items():
        assert getattr(loc, key) == expected, key


@pytest.mark.parametrize("value", INVALID)
def test_invalid(value):
    with pytest.raises(ConfigError) as info:
        parse_mail_location(value, home=HOME)
    assert info.value.key == "mail_location"


def test_mbox_gets_dovecots_defaults():
    # More mbox cases: tests/mbox/test_mbox_location.py.
    loc = parse_mail_location("mbox:~/mail", home=HOME)
    assert (loc.format, loc.root, loc.inbox, loc.layout, loc.subscriptions_name) == (
        "mbox", "/home/bob/mail", "/home/bob/mail/inbox", "fs", ".subscriptions")


@pytest.mark.parametrize("home", [None, "", "relative"])
def test_tilde_needs_an_absolute_home(home):
    with pytest.raises(ConfigError, match="home"):
        parse_mail_location("maildir:~/Maildir", home=home)
