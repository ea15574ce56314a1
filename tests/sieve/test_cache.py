"""The compile cache: used when fresh, rebuilt when the source (or an include)
changes, ignored when corrupt, never a way to run anything but Sieve ops.
"""

import os

import pytest

from mailslot import sieve
from mailslot.sieve import cache
from mailslot.sieve.diagnostics import Diagnostics
from mailslot.sieve.mail import RawMessage
from mailslot.sieve.script import load_program, make_env
from mailslot.sieve.settings import SieveSettings

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"
ENVELOPE = {"from": "a@example.org", "to": "b@example.com"}


def load(path, settings=None):
    settings = settings or SieveSettings()
    diag = Diagnostics()
    program = load_program(str(path), make_env(settings), diag, settings)
    return program, diag


def test_codec_roundtrip():
    value = {"a": [1, -2, "x\u00e9\udcff", None, True, False, ["t", []]], "b": {}}
    assert cache.decode(cache.encode(value)) == value


@pytest.mark.parametrize("data", [b"", b"x", b"[1,", b"{\"a\":}", b"[1] 2", b"NaN",
                                  b"\xff", b"[\"a\\x\"]", b"{1: 2}", b"'a'"])
def test_codec_rejects_garbage(data):
    with pytest.raises(cache.CorruptCacheError):
        cache.decode(data)


def test_codec_rejects_deep_nesting():
    with pytest.raises(cache.CorruptCacheError):
        cache.decode(b"[" * 100000 + b"]" * 100000)


def test_cache_written_and_used(tmp_path, monkeypatch):
    script = tmp_path / "s.sieve"
    script.write_text('require "fileinto";\nfileinto "A";\n')
    os.chmod(script, 0o600)
    program, _ = load(script)
    cfile = tmp_path / "s.msbin"
    assert cfile.exists()
    # As readable as the script, no more (a 0644 admin script gets a 0644 cache).
    assert oct(cfile.stat().st_mode & 0o777) == "0o600"
    # A second load must not compile: make compiling impossible and load again.
    import mailslot.sieve.script as script_mod
    monkeypatch.setattr(script_mod, "compile_text",
                        lambda *a, **k: pytest.fail("recompiled a fresh script"))
    again, _ = load(script)
    assert cache.encode(again.ops) == cache.encode(program.ops)


def test_changed_source_is_recompiled(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_text('require "fileinto";\nfileinto "A";\n')
    load(script)
    script.write_text('require "fileinto";\nfileinto "Changed";\n')
    os.utime(script, ns=(1, 1))
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    assert res.actions == [{"type": "store", "mailbox": "Changed"}]


def test_edit_keeping_size_and_mtime_is_recompiled(tmp_path):
    # An edit in place of the same length whose mtime is put back (touch -r,
    # an editor or sync tool keeping times): only ctime tells the versions apart.
    script = tmp_path / "s.sieve"
    script.write_text('require "fileinto";\nfileinto "AAAA";\n')
    before = os.stat(script)
    load(script)
    with open(script, "r+b") as f:          # same inode, same size
        f.write(b'require "fileinto";\nfileinto "BBBB";\n')
    os.utime(script, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(script)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    assert res.actions == [{"type": "store", "mailbox": "BBBB"}]


def test_changed_include_is_recompiled(tmp_path):
    d = tmp_path / "sieve"
    d.mkdir()
    (d / "lib.sieve").write_text('require "fileinto";\nfileinto "One";\n')
    main = d / "main.sieve"
    main.write_text('require "include";\ninclude "lib";\n')
    settings = {"sieve_dir": str(d)}
    res = sieve.run([str(main)], RawMessage(MSG), ENVELOPE, settings=settings)
    assert res.actions == [{"type": "store", "mailbox": "One"}]
    (d / "lib.sieve").write_text('require "fileinto";\nfileinto "Two";\n')
    os.utime(d / "lib.sieve", ns=(5, 5))
    res = sieve.run([str(main)], RawMessage(MSG), ENVELOPE, settings=settings)
    assert res.actions == [{"type": "store", "mailbox": "Two"}]


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "foreign-op"])
def test_corrupt_cache_is_ignored(tmp_path, damage):
    script = tmp_path / "s.sieve"
    script.write_text('require "fileinto";\nfileinto "A";\n')
    load(script)
    cfile = tmp_path / "s.msbin"
    data = cfile.read_bytes()
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data = data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]
    elif damage == "magic":
        data = b"X" + data[1:]
    else:
        # A well-formed file whose program names an unknown extension.
        record = cache.decode(data[len(cache.MAGIC) + 9:])
        record["program"]["extensions"] = ["os.system"]
        payload = cache.encode(record)
        import zlib
        data = cache.MAGIC + b"%08x\n" % zlib.crc32(payload) + payload
    cfile.write_bytes(data)
    res = sieve.run([str(script)], RawMessage(MSG), ENVELOPE)
    assert res.actions == [{"type": "store", "mailbox": "A"}]
    # ... and the cache was rewritten valid.
    assert cfile.read_bytes() != data


def test_settings_change_invalidates(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_text('require "editheader";\naddheader "X-A" "b";\n')
    program, diag = load(script, SieveSettings.from_mapping(
        {"sieve_extensions": "+editheader"}))
    assert program is not None
    program, diag = load(script)
    assert program is None
    assert "unknown Sieve capability `editheader'" in diag.lines[0]


def test_symlinked_cache_file_is_not_followed(tmp_path):
    script = tmp_path / "s.sieve"
    script.write_text("keep;\n")
    target = tmp_path / "elsewhere"
    target.write_bytes(b"secret")
    os.symlink(target, tmp_path / "s.msbin")
    assert cache._read_file(str(tmp_path / "s.msbin"), {os.geteuid()}) is None
    load(script)
    # The symlink was replaced by a real file (rename over it), target untouched.
    assert target.read_bytes() == b"secret"
    assert not os.path.islink(tmp_path / "s.msbin")
