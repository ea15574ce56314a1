"""What a script puts in logs and on stderr is escaped; odd names are clean
refusals (issue 20.9).

A script's `error` text and a `reject` reason are the script's (or, through
variables, a sender's) data: control characters must not forge log lines or
reach a terminal. Names that are not UTF-8 (a mailbox, a script file) must end in
a logged refusal and the message in INBOX, never in a temporary failure.
Delivered by the installed mailslot-lda as an ordinary user.
"""

import os

import pytest

from tests.engine.test_sieve_delivery import box  # noqa: F401 (the fixture)
from tests.support import needs_root, world_tempdir

pytestmark = needs_root

HOSTILE = "x${hex:1b 5b 33 31 6d}red${hex:0d 0a}Forged line: yes${hex:07 00 7f c2 9b}."


def test_error_text_cannot_forge_user_log_lines(box):
    box.script('require ["ihave", "encoded-character"];\n'
               f'error "{HOSTILE}";\n')
    proc = box.deliver()
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1
    path = os.path.join(os.path.dirname(box.maildir), ".dovecot.sieve.log")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[0].startswith(b"sieve: info: started log at ")
    assert lines[1] == b"error: x?[31mred??Forged line: yes????..", lines
    assert lines[2:] == [b""]


def test_reject_reason_on_stderr_has_no_control_bytes(box):
    box.script('require ["reject", "encoded-character"];\n'
               f'reject "{HOSTILE}";\n')
    proc = box.deliver("-e")
    assert proc.returncode == 77
    assert proc.stderr == b"mailslot-lda: x?[31mred Forged line: yes????.\n", \
        proc.stderr
    assert box.files() == []


def _bad_script(box, where):
    """A script whose file name is not UTF-8, in the user's home or an admin dir."""
    if where == "personal":
        d = os.path.dirname(box.maildir)
    else:
        d = world_tempdir("mslt-sieve-badname-")
    path = os.path.join(os.fsencode(d), b"s\xff.sieve")
    with open(path, "wb") as f:
        f.write(b'require ["fileinto", "ihave"];\nerror "stop here";\n')
    os.chmod(path, 0o644)
    return os.fsdecode(path)


@pytest.mark.parametrize("case", ["fileinto", "-m", "personal", "sieve_before"])
def test_names_that_are_not_utf8_are_clean_refusals(box, case):
    args = []
    if case == "fileinto":
        with open(os.path.join(os.path.dirname(box.maildir), ".dovecot.sieve"),
                  "wb") as f:
            f.write(b'require ["fileinto", "variables"];\n'
                    b'set "a" "\xff";\nfileinto "x${a}";\n')
    elif case == "-m":
        box.script("keep;\n")
        args = ["-m", os.fsdecode(b"a\xffb")]
    else:
        script = _bad_script(box, case)
        args = ["-o", ("sieve=" if case == "personal" else "sieve_before=") + script]
    proc = box.deliver(*args)
    assert proc.returncode == 0, proc.stderr
    assert len(box.files()) == 1
    log = box.log()
    assert "internal error" not in log and "saved mail to INBOX" in log
    if case in ("-m", "sieve_before"):
        assert ("invalid UTF-8" in log) if case == "-m" else ("stop here" in log), log
