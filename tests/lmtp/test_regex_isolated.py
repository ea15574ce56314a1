"""A hostile Sieve :regex over LMTP: bounded by sieve_max_cpu_time, and the server
keeps serving the other connections meanwhile.

A regular-expression match runs in C holding the GIL, and only a signal in the main
thread interrupts it (sieve/cpu.py); the server's deliveries run in connection
threads, so a delivery whose script matches with :regex is redone in a child process
(lmtp/isolated.py) whose main thread the CPU limit can stop. The bomb is
tests/reliability/hostile.py's: "^(a+)+$" against forty a's and a "!".
"""

import os
import threading
import time

import pytest

from tests.support import needs_root
from tests.lmtp.lmtpsite import Client, Site
from tests.reliability.hostile import REGEX_BOMB_SCRIPT, regex_bomb

pytestmark = needs_root

CPU_LIMIT = 2
# The child's start and save on a loaded two-core machine, beyond the CPU limit.
ALLOWANCE = 25
MATCHING = (b'require ["regex", "fileinto"];\n'
            b'if header :regex "subject" "^hel+o (wor)ld$" { fileinto "Matched"; }\n')


@pytest.fixture
def site():
    s = Site.create(extra=f"sieve_max_cpu_time: {CPU_LIMIT}s\n")
    for name, script in (("alice", REGEX_BOMB_SCRIPT), ("bob", MATCHING)):
        path = os.path.join(s.home(name), ".dovecot.sieve")
        with open(path, "wb") as f:
            f.write(script)
        os.chown(path, s.uid, s.uid)
    s.start()
    yield s
    s.cleanup()


def _fold(message):
    """hostile.regex_bomb with its 10 KB header line folded (LMTP's lines are at most
    1000 octets, RFC 5321 4.5.3.1.6); the Subject bomb is unchanged."""
    head, _, body = message.partition(b"\n\n")
    lines = []
    for line in head.split(b"\n"):
        while len(line) > 76:
            lines.append(line[:76])
            line = b" " + line[76:]
        lines.append(line)
    return b"\n".join(lines) + b"\n\n" + body


def test_regex_bomb_is_bounded_and_others_are_served(site):
    bomb = _fold(regex_bomb("lmtp"))
    assert b"Subject: " + b"a" * 40 + b"!\n" in bomb
    result = {}

    def hostile():
        c = Client.unix(site.socket)
        c.hello()
        began = time.monotonic()
        result["replies"] = c.transaction("s@example.org", ["alice@example.org"], bomb)
        result["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=hostile)
    thread.start()
    # While the bomb's delivery runs, another connection is answered at once.
    time.sleep(0.5)
    other = Client.unix(site.socket)
    other.hello()
    served = []
    while thread.is_alive() and len(served) < 5:
        began = time.monotonic()
        _, final = other.transaction("s@example.org", ["carol@example.org"],
                                     b"Subject: meanwhile\n\nhi\n")
        served.append((time.monotonic() - began, final))
    thread.join(CPU_LIMIT + ALLOWANCE + 60)
    assert not thread.is_alive()
    assert served, ("the bomb was over before the other connection was tried", result,
                    site.stderr())
    for seconds, final in served:
        # carol's script is an ereject (lmtpsite): refused, but answered promptly.
        assert final[0].startswith("550 5.7.1 <carol@example.org>"), final
        assert seconds < 10, served
    rcpt, final = result["replies"]
    # The limit stopped the script: implicit keep, as Pigeonhole does.
    assert final == ["250 2.0.0 <alice@example.org> Saved"], (final, site.stderr())
    assert result["seconds"] < CPU_LIMIT + ALLOWANCE, result
    (stored,) = site.messages("alice")
    assert stored.endswith(bomb)
    # The script's error goes to its user log, as Pigeonhole's does.
    with open(os.path.join(site.home("alice"), ".dovecot.sieve.log"), encoding="utf-8",
              errors="replace") as f:
        assert "exceeded CPU time limit" in f.read()


def test_a_regex_script_files_as_in_process(site):
    """The child delivers exactly as the thread would: fileinto, headers, 250."""
    c = Client.unix(site.socket)
    c.hello()
    _, final = c.transaction("s@example.org", ["bob@example.org"],
                             b"Subject: helllo world\n\nbody\n")
    assert final == ["250 2.0.0 <bob@example.org> Saved"], site.stderr()
    (stored,) = site.messages("bob", ".Matched")
    assert stored.startswith(b"Return-Path: <s@example.org>\nDelivered-To: "
                             b"bob@example.org\nReceived: from client.test\n")
    assert stored.endswith(b"Subject: helllo world\n\nbody\n")
    assert site.messages("bob") == []
