"""The cheap forms of per-message work in mailslot-lmtpd give the same results as
the plain ones: the umask read once, header lines without a per-character pass
when nothing needs dropping, the settings copy that copies only containers."""

import os

import pytest

from mailslot.message import header_line
from mailslot.recipient import copy_settings
from mailslot.storage import dirs


def test_the_umask_read_once_is_the_one_used(monkeypatch):
    real = os.umask(0o022)
    try:
        monkeypatch.setattr(dirs, "PROCESS_UMASK", 0o027)
        assert dirs.current_umask() == 0o027
        monkeypatch.setattr(dirs, "PROCESS_UMASK", None)
        assert dirs.current_umask() == 0o022
    finally:
        os.umask(real)


@pytest.mark.parametrize("value,expected", [
    ("<bob@example.org>", b"<bob@example.org>"),
    ("a\tb\r\nc", b"abc"),                  # control characters dropped
    ("x\x7fy\x00z", b"xyz"),
    ("j\u00fcrgen \u00a0nbsp", "j\u00fcrgen \u00a0nbsp".encode()),  # kept
    ("raw \udcff byte", b"raw \xff byte"),   # surrogateescape'd byte kept
    ("", b""),
])
def test_header_line_drops_only_control_characters(value, expected):
    assert header_line("X-Test", value) == b"X-Test: " + expected + b"\n"


def test_settings_copy_shares_no_container():
    base = {"a": "x", "n": 3, "userdb": [{"driver": "passwd-file", "args": "f"}],
            "namespace": {"inbox": {"prefix": ""}}}
    copy = copy_settings(base)
    assert copy == base
    copy["userdb"][0]["args"] = "changed"
    copy["namespace"]["inbox"]["prefix"] = "INBOX."
    copy["a"] = "y"
    assert base["userdb"][0]["args"] == "f"
    assert base["namespace"]["inbox"]["prefix"] == ""
    assert base["a"] == "x"
