"""mailslot-dotlock under ASan+UBSan and valgrind: the same operations, no findings.

valgrind cannot run a set-group-id program, and the sanitizer runtimes ignore their
options in secure mode, so the instrumented copies are plain (not setgid) and the test
user gets the mail group as a supplementary group instead: the same code paths run,
including raising and lowering the effective gid. LeakSanitizer is off: it needs
ptrace, which the helper, non-dumpable by design, refuses (the helper allocates
nothing itself). A finding makes the run exit 99.
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.dotlock.dotlocktest import ALICE, BOB

FINDING = 99
SAN_ENV = {
    "PATH": "/usr/bin:/bin",
    "ASAN_OPTIONS": f"exitcode={FINDING}:detect_leaks=0",
    "UBSAN_OPTIONS": f"halt_on_error=1:exitcode={FINDING}:print_stacktrace=1",
}
# PLANT puts an aged lock of a dead local pid in place: the stale path (pid read,
# kill, re-check, unlinkat) runs too, not only the happy one.
PLANT = "plant-dead-lock"
SEQUENCE = [("create", ALICE, 0), ("lock", ALICE, 0), ("trylock", ALICE, 75),
            ("touch", ALICE, 0), ("unlock", ALICE, 0), (PLANT, ALICE, None),
            ("trylock", ALICE, 0), ("unlock", ALICE, 0), ("lock", BOB, 77),
            ("steal", ALICE, 64)]


def plant_dead_lock(dotlock):
    proc = subprocess.Popen(["true"])
    proc.wait()
    lock = dotlock.lock_file(ALICE)
    lock.write_text(f"{proc.pid}:{socket.gethostname()}\n")
    os.chown(lock, dotlock.accounts[ALICE].pw_uid, dotlock.mail_gid)
    os.utime(lock, (time.time() - 60, time.time() - 60))


def run_sequence(dotlock, helper, wrapper=(), groups=None):
    for cmd, target, expected in SEQUENCE:
        if cmd == PLANT:
            plant_dead_lock(dotlock)
            continue
        proc = dotlock.run(ALICE, cmd, str(dotlock.spool_file(target)), helper=helper,
                           env=SAN_ENV, wrapper=wrapper, groups=groups)
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == expected, f"{cmd}: {err}"
        assert "Sanitizer" not in err and "runtime error" not in err, err
    assert dotlock.leftovers() == []


def test_dotlock_under_asan_ubsan(dotlock):
    alice = dotlock.accounts[ALICE]
    run_sequence(dotlock, dotlock.bin / "mailslot-dotlock.asan",
                 groups=[alice.pw_gid, dotlock.mail_gid])


def test_dotlock_under_valgrind(dotlock):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (make deps-test installs it)")
    alice = dotlock.accounts[ALICE]
    run_sequence(dotlock, dotlock.bin / "mailslot-dotlock.debug",
                 wrapper=["valgrind", "-q", f"--error-exitcode={FINDING}", "--track-origins=yes"],
                 groups=[alice.pw_gid, dotlock.mail_gid])
