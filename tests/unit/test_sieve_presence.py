"""sieve.has_scripts: the cheap check that keeps the interpreter off the plain path."""

import os

from mailslot import config, sieve


def settings(**values):
    s = config.default_settings()
    s.update(values)
    return s


def test_no_script_no_sieve(tmp_path):
    assert not sieve.has_scripts(settings(), str(tmp_path))


def test_active_personal_script(tmp_path):
    (tmp_path / ".dovecot.sieve").write_text("keep;\n")
    assert sieve.has_scripts(settings(), str(tmp_path))


def test_active_symlink_into_the_script_directory(tmp_path):
    (tmp_path / "sieve").mkdir()
    (tmp_path / "sieve" / "main.sieve").write_text("keep;\n")
    os.symlink("sieve/main.sieve", tmp_path / ".dovecot.sieve")
    assert sieve.has_scripts(settings(), str(tmp_path))
    os.unlink(tmp_path / "sieve" / "main.sieve")       # a dangling link: no script
    assert not sieve.has_scripts(settings(), str(tmp_path))


def test_plain_path_location(tmp_path):
    (tmp_path / "my.sieve").write_text("keep;\n")
    assert sieve.has_scripts(settings(sieve="~/my.sieve"), str(tmp_path))
    assert not sieve.has_scripts(settings(sieve="~/other.sieve"), str(tmp_path))


def test_admin_scripts_always_count(tmp_path):
    for key in sieve.ADMIN_SCRIPT_SETTINGS:
        assert sieve.has_scripts(settings(**{key: "/etc/mailslot/x.sieve"}), str(tmp_path))
