"""The caller's resource limits and closed stdio never crash the relay.

A caller chooses the relay's rlimits and fds. The relay sizes its buffers to what it
needs (no 64 MiB static buffer, no 256 KiB array on the stack), allocates them
checked, and refuses below a floor of its own with a reason (75), instead of dying
of SIGSEGV. Closed stdio: glibc hands a set-id program a write-only /dev/full as fd 0
and read-only /dev/null as fds 1 and 2; the relay answers 75 when there is no message
to read and makes 1 and 2 writable, so the engine never exits 120.
"""
import os
import resource

import pytest

from tests.relay.relaytest import ALICE, assert_refused, report_of

KIB = 1024
MIB = 1024 * 1024


def limited(**limits):
    def preexec():
        for name, value in limits.items():
            resource.setrlimit(getattr(resource, name), (value, value))
    return preexec


# Limits under which the relay itself crashed before (SIGSEGV: a 256 KiB gid_t array
# on the stack; a 64 MiB static passwd-file buffer), and the engine still runs.
@pytest.mark.parametrize("limits", [
    {"RLIMIT_STACK": 256 * KIB},
    {"RLIMIT_STACK": 200 * KIB},
    {"RLIMIT_AS": 72 * MIB},
    {"RLIMIT_AS": 48 * MIB},
], ids=lambda d: ",".join(f"{k}={v // KIB}KiB" for k, v in d.items()))
def test_small_limits_the_relay_fits_in_deliver(relay, limits):
    for resolver in ("nss", "passwd-file"):
        if resolver == "passwd-file":
            relay.passwd_file.write_text(f"v1::60001:60001::{relay.homes}/v1::\n")
            os.chmod(relay.passwd_file, 0o644)
            relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file))
            user = "v1"
        else:
            user = ALICE
        proc = relay.run(["-d", user], preexec=limited(**limits))
        assert proc.returncode == 0, (resolver, proc.returncode, proc.stderr)
        assert report_of(proc)["argv"][2] == user


@pytest.mark.parametrize("limits, name", [
    ({"RLIMIT_STACK": 64 * KIB}, "RLIMIT_STACK"),
    ({"RLIMIT_AS": 24 * MIB}, "RLIMIT_AS"),
    ({"RLIMIT_DATA": 16 * MIB}, "RLIMIT_DATA"),
])
def test_limits_below_the_relays_floor_are_a_75_with_the_reason(relay, limits, name):
    proc = relay.run(["-d", ALICE], preexec=limited(**limits))
    assert_refused(proc, 75, "rlimit")
    assert name.encode() in proc.stderr


def _close(*fds):
    def preexec():
        for fd in fds:
            os.close(fd)
    return preexec


def test_all_stdio_closed_is_a_75_never_120(relay):
    proc = relay.run(["-d", ALICE], preexec=_close(0, 1, 2))
    assert proc.returncode == 75


def test_closed_stdin_is_a_75_with_the_reason(relay):
    proc = relay.run(["-d", ALICE], preexec=_close(0))
    assert_refused(proc, 75, "stdio")
    assert b"stdin" in proc.stderr


def test_closed_stdout_is_made_writable_for_the_engine(relay):
    # glibc's read-only /dev/null made the engine's first write fail (exit 120).
    proc = relay.run(["-d", ALICE], preexec=_close(1))
    assert proc.returncode == 0, proc.stderr


def test_closed_stdout_and_stderr_deliver(relay):
    proc = relay.run(["-d", ALICE], preexec=_close(1, 2))
    assert proc.returncode == 0
