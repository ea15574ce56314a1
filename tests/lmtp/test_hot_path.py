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


# -- the LMTP path checks: the same verdicts as the per-character definitions --------

def _reference_verdict(raw):
    """RFC 5321 path checks spelled out per character, as protocol.py had them."""
    if any(b < 0x20 or b == 0x7F for b in raw):
        return "control"
    text = raw.decode("utf-8", "surrogateescape")
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, None
    if local.startswith('"'):
        local_ok = len(local) >= 2 and local.endswith('"')
    else:
        local_ok = not any(ch in ' <>(),;:\\[]"' for ch in local) and ".." not in local \
            and not local.startswith(".") and not local.endswith(".")
    if domain is None:
        domain_ok = True
    elif domain.startswith("[") and domain.endswith("]"):
        domain_ok = len(domain) > 2
    else:
        domain_ok = all(lab and not lab.startswith("-") and not lab.endswith("-") and
                        not any(ch in ' <>()[],;:\\@"' for ch in lab)
                        for lab in domain.split("."))
    return "ok" if local and local_ok and domain_ok else "invalid"


def _paths():
    yield from (b"bob@example.org", b"bob", b"a.b@x.y", b"\"a b\"@x", b"a..b@x", b".a@x",
                b"a.@x", b"a@-x.org", b"a@x-.org", b"a@[1.2.3.4]", b"a@[]", b"a@x..org",
                b"a@", b"a b@x", b"a@x y", b"a(b)@x", b"a@x;y")
    for byte in range(0x100):
        ch = bytes([byte])
        yield b"bo" + ch + b"b@example.org"
        yield b"bob@exa" + ch + b"mple.org"


def test_path_checks_match_the_per_character_definitions():
    from mailslot.lmtp.protocol import _check_path
    for raw in _paths():
        got = _check_path(raw, True, null_ok=False)
        expected = _reference_verdict(raw)
        if expected == "control":
            assert got == ("501 5.1.3 Invalid address",), raw
        elif not raw.isascii():
            continue        # UTF-8 validity decides first (covered in test_protocol)
        elif expected == "ok":
            assert got == raw.decode(), raw
        else:
            assert got == ("501 5.1.3 Invalid address",), raw


@pytest.mark.parametrize("text,expected", [
    ("250 2.0.0 <bob@x> Saved", "250 2.0.0 <bob@x> Saved"),
    ("451 4.3.0 <bob@x> a\r\nb\tc\x7fd", "451 4.3.0 <bob@x> a  b c d"),
])
def test_reply_lines_have_no_control_characters(text, expected):
    from mailslot.lmtp.protocol import _one_line
    assert _one_line(text) == expected
