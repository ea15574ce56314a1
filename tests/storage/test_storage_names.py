"""Mailbox names (mailslot.mailbox_name): namespace splitting and modified UTF-7."""

import pytest

from mailslot.errors import ConfigError, MailboxNameError
from mailslot.mailbox_name import (check_components, decode_mutf7, encode_mutf7,
                                   split_mailbox_name)

# (name, prefix, separator) -> components
VALID = [
    ("INBOX", "", "/", ("INBOX",)),
    ("inbox", "", "/", ("INBOX",)),
    ("InBoX", "INBOX/", "/", ("INBOX",)),
    ("INBOX/box/sub", "INBOX/", "/", ("box", "sub")),
    ("inbox/box/sub", "INBOX/", "/", ("box", "sub")),
    ("INBOX.box.sub", "INBOX.", ".", ("box", "sub")),
    ("a.b", "", ".", ("a", "b")),
    ("a/b", "", "/", ("a", "b")),
    ("inbox/x", "", "/", ("INBOX", "x")),
    ("Tést/ü&x", "", "/", ("Tést", "ü&x")),
    ("with space", "", "/", ("with space",)),
    ("x~", "", "/", ("x~",)),
    ("a.b/c", "", "/", ("a.b", "c")),        # the storage decides if '.' can be stored
    ("日本語", "", ".", ("日本語",)),
]

# (name, prefix, separator): refused with MailboxNameError
INVALID = [
    ("", "", "/"),
    ("/", "", "/"),
    ("a//b", "", "/"),
    ("a/", "", "/"),
    ("/a", "", "/"),
    (".", "", "/"),
    ("..", "", "/"),
    ("a/../b", "", "/"),
    ("../../etc/passwd", "", "/"),
    ("a/./b", "", "/"),
    ("a..b", "", "."),
    ("a/b", "", "."),                          # '/' is never part of a component
    ("x\x00y", "", "/"),
    ("x\ny", "", "/"),
    ("x\ty", "", "/"),
    ("x\x1by", "", "/"),
    ("x\x7fy", "", "/"),
    ("x\x9by", "", "/"),
    ("bad\udcffutf8", "", "/"),                # undecodable argv bytes
    ("\ud800", "", "/"),
    ("~root/x", "", "/"),
    ("~", "", "/"),
    ("box", "INBOX/", "/"),                    # outside the namespace prefix
    ("INBOX/", "INBOX/", "/"),
    ("x" * 256, "", "/"),
    ("/".join(["a"] * 65), "", "/"),
    ("a" * 4097, "", "/"),
]


@pytest.mark.parametrize("name,prefix,sep,expected", VALID)
def test_valid_names(name, prefix, sep, expected):
    assert split_mailbox_name(name, prefix=prefix, separator=sep) == expected


@pytest.mark.parametrize("name,prefix,sep", INVALID)
def test_invalid_names(name, prefix, sep):
    with pytest.raises(MailboxNameError):
        split_mailbox_name(name, prefix=prefix, separator=sep)


@pytest.mark.parametrize("prefix,sep", [("INBOX/", "//"), ("INBOX/", ""), ("INBOX", "/")])
def test_bad_namespace_settings_are_config_errors(prefix, sep):
    with pytest.raises(ConfigError):
        split_mailbox_name("x", prefix=prefix, separator=sep)


@pytest.mark.parametrize("name", [("a/b",), ("..",), ("",), (), "INBOX", (1,), ("\udc80",)])
def test_check_components_refuses(name):
    with pytest.raises(MailboxNameError):
        check_components(name)


def test_check_components_normalises_inbox():
    assert check_components(("inbox", "x")) == ("INBOX", "x")


# RFC 3501 section 5.1.3's example, Dovecot's on-disk names, and round trips.
MUTF7 = [
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Tést", "T&AOk-st"),
    ("ü&x", "&APw-&-x"),
    ("&", "&-"),
    ("a&b&", "a&-b&-"),
    ("plain ascii ~!", "plain ascii ~!"),
    ("😀", "&2D3eAA-"),
    ("éé", "&AOkA6Q-"),
    ("", ""),
]


@pytest.mark.parametrize("text,encoded", MUTF7)
def test_mutf7(text, encoded):
    assert encode_mutf7(text) == encoded
    assert decode_mutf7(encoded) == text


@pytest.mark.parametrize("bad", [
    "&", "&AOk", "&AOk!-", "&AGE-",        # unterminated, bad base64, encoded ASCII
    "&AOl-",                                 # non-zero padding bits: not canonical
    "tab\there", "caf\u00e9",                 # not printable US-ASCII
    "&2D0-",                                 # a lone surrogate
])
def test_mutf7_decode_refuses(bad):
    with pytest.raises(MailboxNameError):
        decode_mutf7(bad)


def test_mutf7_encode_refuses_lone_surrogates():
    with pytest.raises(MailboxNameError):
        encode_mutf7("x\udcffy")
