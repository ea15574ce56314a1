"""mbox mail_location values and mbox settings, as Dovecot reads them."""

import pytest

from mailslot.errors import ConfigError
from mailslot.storage import open_storage
from mailslot.storage.location import parse_mail_location

HOME = "/home/bob"

VALID = [
    ("mbox:~/mail", dict(root="/home/bob/mail", inbox="/home/bob/mail/inbox", layout="fs",
                         subscriptions_name=".subscriptions", index=None, control=None)),
    ("mbox:~/mail:INBOX=/var/mail/bob", dict(inbox="/var/mail/bob")),
    ("mbox:/var/mail/folders/bob:INBOX=/var/mail/bob:INDEX=/var/index/bob",
     dict(root="/var/mail/folders/bob", index="/var/index/bob")),
    ("mbox:~/mail:LAYOUT=fs:UTF-8", dict(layout="fs", utf8=True)),
    ("mbox:~/mail:SUBSCRIPTIONS=subs", dict(subscriptions_name="subs")),
    ("mbox:~/mail:INDEX=MEMORY", dict(index="MEMORY")),
]

INVALID = ["mbox:", "mbox:mail", "mbox:~/mail:LAYOUT=maildir++", "mbox:~/mail:LAYOUT=index",
           "mbox:INBOX=/var/mail/bob", "mbox:~/mail:INBOX=", "mbox:~/mail:DIRNAME=x"]


@pytest.mark.parametrize("value,fields", VALID)
def test_valid(value, fields):
    loc = parse_mail_location(value, home=HOME)
    assert loc.format == "mbox"
    for key, want in fields.items():
        assert getattr(loc, key) == want, key


@pytest.mark.parametrize("value", INVALID)
def test_invalid(value):
    with pytest.raises(ConfigError) as info:
        parse_mail_location(value, home=HOME)
    assert info.value.key == "mail_location"


@pytest.mark.parametrize("settings,key", [
    ({"mbox_write_locks": "dotlock nosuch"}, "mbox_write_locks"),
    ({"mbox_write_locks": "fcntl fcntl"}, "mbox_write_locks"),
    ({"mbox_write_locks": ""}, "mbox_write_locks"),
    # Dovecot's rule: the write locks contain the read locks, in the same order.
    ({"mbox_write_locks": "fcntl dotlock", "mbox_read_locks": "dotlock fcntl"},
     "mbox_read_locks"),
    ({"mbox_write_locks": "dotlock", "mbox_read_locks": "fcntl"}, "mbox_read_locks"),
    ({"mbox_variant": "mboxcl2"}, "mbox_variant"),
])
def test_bad_lock_settings_are_config_errors(tmp_path, settings, key):
    with pytest.raises(ConfigError) as info:
        open_storage("mbox:~/mail", user="t", home=str(tmp_path), hostname="h",
                     settings=settings)
    assert info.value.key == key


@pytest.mark.parametrize("write,read", [
    ("dotlock fcntl", "fcntl"), ("dotlock_try fcntl flock", "fcntl flock"),
    ("FCNTL", "fcntl"), ("lockf", ""), ("dotlock", "dotlock"),
])
def test_good_lock_settings(tmp_path, write, read):
    storage = open_storage("mbox:~/mail", user="t", home=str(tmp_path), hostname="h",
                           settings={"mbox_write_locks": write, "mbox_read_locks": read or
                                     write.split()[0].lower()})
    assert storage.write_locks == tuple(write.lower().split())


def test_settings_default_to_the_schema(tmp_path):
    from mailslot.config import SCHEMA
    storage = open_storage("mbox:~/mail", user="t", home=str(tmp_path), hostname="h")
    assert storage.write_locks == ("fcntl", "dotlock") == tuple(
        SCHEMA["mbox_write_locks"][1].split())
    assert (storage.lock_timeout, storage.change_timeout) == (300, 120)
    assert storage.variant == "mboxrd" and storage.privileged_group == ""


# Issue 12.7: INBOX=~/.profile would turn every delivery into shell start-up code.
@pytest.mark.parametrize("inbox", ["~/.profile", "~/.bashrc", "~/mail/../.forward",
                                   "~//.profile", "@HOME@/.profile", "~/./.login"])
def test_mbox_inbox_never_created_as_a_dot_file_in_home(tmp_path, inbox):
    from tests.storage.sources import BytesSource, message
    home = tmp_path / "home"
    (home / "mail").mkdir(parents=True)
    storage = open_storage(f"mbox:~/mail:INBOX={inbox.replace('@HOME@', str(home))}",
                           user="t", home=str(home), hostname="h")
    with pytest.raises(ConfigError) as info:
        storage.save(("INBOX",), BytesSource(message(1)))
    assert "dot file in the home directory" in str(info.value)
    assert sorted(p.name for p in home.iterdir()) == ["mail"]


@pytest.mark.parametrize("inbox, made", [("~/mbox", "mbox"), ("~/mail/.inbox", "mail/.inbox"),
                                         ("~/Mail.d/inbox", "Mail.d/inbox")])
def test_other_inbox_places_are_created(tmp_path, inbox, made):
    from tests.storage.sources import BytesSource, message
    home = tmp_path / "home"
    (home / "mail").mkdir(parents=True)
    (home / "Mail.d").mkdir()
    storage = open_storage(f"mbox:~/mail:INBOX={inbox}", user="t", home=str(home),
                           hostname="h")
    storage.save(("INBOX",), BytesSource(message(1)))
    assert (home / made).read_bytes().startswith(b"From ")
