"""The five man pages: they render without warnings, and say what the code does.

Plain roff with man(7) macros, so they build offline with groff (groff-base, which
man-db needs). The consistency checks read the sources the pages describe: every
dovecot-lda option the engine parses, every policy key the relay accepts.
"""
import os
import re
import shutil
import subprocess

import pytest

from tests.support import REPO

MAN = os.path.join(REPO, "docs", "man")
PAGES = ["mailslot-lda.1", "mailslot.1", "mailslot.yaml.5", "mailslot-relay.8",
         "mailslot-dotlock.8"]


def _page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read()


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("name", PAGES)
def test_renders_without_warnings(name):
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(MAN, name)],
                          capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("name", PAGES)
def test_title_and_sections(name):
    text = _page(name)
    title, section = name.rsplit(".", 1)
    assert re.search(rf'^\.TH {re.escape(title.upper())} {section} ', text, re.M)
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f".SH {heading}" in text, (name, heading)


def _engine_options():
    with open(os.path.join(REPO, "pyside", "mailslot", "cli.py")) as f:
        source = f.read()
    with_arg = re.search(r'^OPTIONS_WITH_ARGUMENT = "(\w+)"', source, re.M).group(1)
    flags = re.search(r'^FLAG_OPTIONS = "(\w+)"', source, re.M).group(1)
    return sorted(set(with_arg + flags))


@pytest.mark.parametrize("letter", _engine_options())
def test_lda_page_documents_every_option(letter):
    # roff writes a minus as \-: "\-d", ".BI \-d " user"".
    assert re.search(rf"\\-{letter}\b", _page("mailslot-lda.1")), letter


def _policy_keys():
    with open(os.path.join(REPO, "helper_c", "relay_policy.c")) as f:
        source = f.read()
    table = re.search(r"policy_keys\[K_COUNT\] = \{(.*?)\};", source, re.S).group(1)
    return re.findall(r'"(\w+)"', table)


@pytest.mark.parametrize("key", _policy_keys())
def test_relay_page_documents_every_policy_key(key):
    assert key in _page("mailslot-relay.8").replace("\\", ""), key


def _settings():
    with open(os.path.join(REPO, "pyside", "mailslot", "config.py")) as f:
        source = f.read()
    schema = re.search(r"^SCHEMA = \{(.*?)^\}", source, re.S | re.M).group(1)
    return re.findall(r'^\s+"(\w+)":', schema, re.M)


@pytest.mark.parametrize("setting", _settings())
def test_settings_page_documents_every_setting(setting):
    text = _page("mailslot.yaml.5").replace("\\", "")
    # sieve_before2/3 and sieve_after2/3 are written as sieve_before[2|3].
    base = re.sub(r"[23]$", "", setting)
    assert setting in text or base in text, setting


def _admin_commands():
    with open(os.path.join(REPO, "pyside", "mailslot", "admin.py")) as f:
        source = f.read()
    usage = re.search(r'^USAGE = """(.*?)"""', source, re.S | re.M).group(1)
    return sorted(set(re.findall(r"mailslot ([\w-]+)", usage)))


@pytest.mark.parametrize("command", _admin_commands())
def test_admin_page_documents_every_command(command):
    assert f".B {command.replace('-', chr(92) + '-')}" in _page("mailslot.1"), command
