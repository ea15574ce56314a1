"""Names as Dovecot's auth process makes them: realm, translation, allowed bytes, format.

Parity with the real auth process is in test_dovecot.py (doveadm user against a
private Dovecot); here the rules themselves, and find_user's order (detail first).
"""

import pytest

from mailslot import errors, userdb
from mailslot.config import default_settings
from mailslot.recipient import find_user

DEFAULT = {}


def settings_with(**changes):
    settings = default_settings()
    settings.update(changes)
    return settings


@pytest.mark.parametrize("settings,name,expected", [
    (DEFAULT, "Bob", "bob"),
    (DEFAULT, "Bob@Example.ORG", "bob@example.org"),
    (DEFAULT, "a.b-c_d@x", "a.b-c_d@x"),
    ({"auth_username_format": ""}, "Bob", "Bob"),
    ({"auth_username_format": "%n"}, "Bob@example.org", "Bob"),
    ({"auth_username_format": "%Ln"}, "Bob@example.org", "bob"),
    ({"auth_default_realm": "example.org"}, "bob", "bob@example.org"),
    ({"auth_default_realm": "example.org"}, "bob@other", "bob@other"),
    ({"auth_username_translation": "#@/@"}, "bob#example.org", "bob@example.org"),
    ({"auth_username_translation": "#@/"}, "bob#x", "bob@x"),   # odd byte ignored
    ({"auth_username_chars": ""}, "o'hara;--", "o'hara;--"),
    ({"auth_username_chars": "", "auth_username_format": ""}, "A\tB", "A\tB"),
])
def test_normalised_names(settings, name, expected):
    assert userdb.normalize_username(name, settings) == expected


@pytest.mark.parametrize("name,byte", [
    ("o'hara", 0x27), ("a;b", 0x3b), ("50%", 0x25), ("a\tb", 0x09), ("a\nb", 0x0a),
    ("a b", 0x20), ("a/b", 0x2f), ("a+b", 0x2b), ("j\u00fcrgen", 0xc3), ("a\rb", 0x0d),
])
def test_disallowed_bytes_are_unknown_users(name, byte):
    with pytest.raises(errors.UserUnknownError) as info:
        userdb.normalize_username(name)
    text = str(info.value)
    assert text.startswith("User doesn't exist: ")
    assert f"0x{byte:02x}" in text
    assert "\n" not in text and "\t" not in text   # the name is shown escaped


def test_nul_is_refused_even_when_every_byte_is_allowed():
    with pytest.raises(errors.UserUnknownError):
        userdb.normalize_username("a\0b", {"auth_username_chars": ""})


def test_empty_result_is_refused():
    with pytest.raises(errors.UserUnknownError) as info:
        userdb.normalize_username("@example.org", {"auth_username_format": "%n"})
    assert "Empty username" in str(info.value)


def test_bad_format_is_a_config_error():
    with pytest.raises(errors.ConfigError) as info:
        userdb.normalize_username("bob", {"auth_username_format": "%q"})
    assert "auth_username_format" in str(info.value)
    assert errors.exit_code_for(info.value) == errors.EX_TEMPFAIL


def test_long_names_are_cut_in_messages():
    with pytest.raises(errors.UserUnknownError) as info:
        userdb.normalize_username("x" * 300 + ";")
    assert len(str(info.value)) < 250


def test_find_user_strips_the_detail_before_the_checks():
    # '+' is not an allowed byte: the detail must go first, as the issue asks.
    settings = settings_with(userdb=[{"driver": "static",
                                      "args": "uid=5000 gid=5000 home=/v/%u allow_all_users"}])
    assert find_user("Ann+Lists@Example.org", settings).home == "/v/ann@example.org"
    with pytest.raises(errors.UserUnknownError):
        find_user("ann+x@exa;mple.org", settings)
    settings["recipient_delimiter"] = ""
    with pytest.raises(errors.UserUnknownError):
        find_user("ann+lists@example.org", settings)


def test_find_user_unknown_name_is_shown_escaped():
    settings = settings_with(userdb=[{"driver": "passwd"}], auth_username_chars="")
    with pytest.raises(errors.UserUnknownError) as info:
        find_user("no-such\nuser", settings)
    assert "no-such\\x0auser" in str(info.value)
