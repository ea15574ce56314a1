"""The relay under ASan+UBSan and under valgrind: the same runs, no findings.

The instrumented builds (make asan / make debug) cannot be setuid (the sanitizer
runtimes refuse secure mode), so they run as root with the caller group as a
supplementary group (setpriv --groups): the caller check, the parsers, the target
resolution, the drop to the target and the exec are all exercised. A finding makes
the run exit 99, which no scenario expects.
"""
import grp
import os
import shutil
import subprocess

import pytest

from tests.relay.relaytest import ALICE, SECMAIL

FINDING = 99
SAN_ENV = {
    "PATH": "/usr/bin:/bin",
    "ASAN_OPTIONS": f"exitcode={FINDING}:detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": f"halt_on_error=1:exitcode={FINDING}:print_stacktrace=1",
    "LSAN_OPTIONS": f"exitcode={FINDING}",
}
LOOKUP_SCRIPT = 'import sys\nsys.stdout.write("OK\\tuid=60008\\tgid=60009\\thome=/nonexistent\\n")\n'

# name, policy overrides, argv, extra caller env, in caller group, expected exit code
SCENARIOS = [
    ("deliver", {}, ["-d", ALICE, "-f", "a@b", "-m", "", "-e"], {}, True, 0),
    ("deliver-k-hostile-env", {"pass_env": "FOO"}, ["-kd", ALICE],
     {"LD_PRELOAD": "/x.so", "PYTHONSTARTUP": "/x", "SENDER": "s", "FOO": "1"}, True, 0),
    ("outsider", {}, ["-d", ALICE], {}, False, 77),
    ("unknown-user", {}, ["-d", "mslt-nobody-here"], {}, True, 67),
    ("root-target", {}, ["-d", "root"], {}, True, 75),
    ("usage", {}, ["-d", ALICE, "-x"], {}, True, 64),
    ("caller-config", {}, ["-d", ALICE, "-o", "a=b"], {}, True, 77),
    ("bad-policy", {"colour": "blue"}, ["-d", ALICE], {}, True, 75),
    ("passwd-file", "passwd", ["-d", "vuser1"], {}, True, 0),
    ("passwd-file-root", "passwd", ["-d", "evilroot"], {}, True, 75),
    ("lookup", "lookup", ["-d", "anyone"], {}, True, 0),
]


def prepare(relay, overrides):
    if overrides == "passwd":
        relay.passwd_file.write_text(f"vuser1:x:60001:60002::{relay.homes}/v1\n"
                                     "evilroot:x:0:0::/root\n")
        os.chmod(relay.passwd_file, 0o644)
        relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file))
    elif overrides == "lookup":
        relay.lookup_entry.write_text(LOOKUP_SCRIPT)
        os.chmod(relay.lookup_entry, 0o644)
        relay.write_policy(resolver="lookup", lookup_user="nobody",
                           lookup_entry=str(relay.lookup_entry))
    else:
        relay.write_policy(**overrides)


def run_tool(relay, binary, scenario, wrapper=()):
    name, overrides, argv, env, in_group, expected = scenario
    prepare(relay, overrides)
    groups = str(grp.getgrnam(SECMAIL).gr_gid) if in_group else "65534"
    cmd = ["setpriv", f"--groups={groups}"] + list(wrapper) + [str(binary)] + argv
    proc = subprocess.run(cmd, input=b"Subject: x\n\nbody\n", capture_output=True,
                          env=dict(SAN_ENV, **env), timeout=120)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == expected, f"{name}: {proc.returncode}\n{err}"
    assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err
    assert "ERROR SUMMARY" not in err or "ERROR SUMMARY: 0 errors" in err, err


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_relay_under_asan_ubsan(relay, scenario):
    run_tool(relay, relay.build / "asan" / "mailslot-relay", scenario)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_relay_under_valgrind(relay, scenario):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (make deps-test installs it)")
    run_tool(relay, relay.build / "debug" / "mailslot-relay", scenario,
             wrapper=["valgrind", "-q", f"--error-exitcode={FINDING}", "--trace-children=no",
                      "--track-origins=yes", "--leak-check=no"])
