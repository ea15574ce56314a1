"""mailslot-lda-front under ASan+UBSan and under valgrind: the same runs, no findings.

The instrumented builds (make asan / make debug, with the test's HANDOFF_DIR and
ENGINE_PATH) run as the test user in every branch of the front: the hand-off
(a server listening), the fallback exec (no server; a server that refuses; -k),
the engine's own exit codes through both (usage 64, unknown user 67). A finding
makes the run exit 99, which no scenario expects. valgrind follows only the front
(--trace-children=no: the fallback's engine is Python).
"""

import shutil
import subprocess

import pytest

from tests.fastpath.helpers import MSG, Box
from tests.support import needs_root

pytestmark = needs_root
FINDING = 99
SAN_ENV = {
    "ASAN_OPTIONS": f"exitcode={FINDING}:detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": f"halt_on_error=1:exitcode={FINDING}:print_stacktrace=1",
    "LSAN_OPTIONS": f"exitcode={FINDING}",
}
# name, server running, argv, expected exit code, handed off
SCENARIOS = [
    ("handoff", True, [], 0, True),
    ("handoff-usage", True, ["-X"], 64, None),
    ("handoff-unknown-user", True, ["-d", "mslt-nobody-here"], 67, None),
    ("fallback-no-server", False, [], 0, False),
    ("fallback-k", True, ["-k"], 0, False),
    ("fallback-usage", False, ["-X"], 64, None),
]


@pytest.fixture
def box(mail_users, front):
    b = Box(mail_users[0], front)
    yield b
    b.close()


def run(box, start_server, scenario, binary, wrapper=()):
    name, serving, argv, expected, handed = scenario
    if serving:
        start_server(box.user)
    else:
        shutil.rmtree(box.front.socket_dir(box.user.pw_uid), ignore_errors=True)
    proc = box.deliver(*argv, binary=binary, prefix=wrapper, env=SAN_ENV)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == expected, f"{name}: {proc.returncode}\n{err}"
    assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err
    assert "ERROR SUMMARY" not in err or "ERROR SUMMARY: 0 errors" in err, err
    if handed is not None:
        assert box.log_counts() == ((1, 0) if handed else (0, 1)), name


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_front_under_asan_ubsan(box, start_server, scenario):
    run(box, start_server, scenario, box.front.asan)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_front_under_valgrind(box, start_server, scenario):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (make deps-test installs it)")
    run(box, start_server, scenario, box.front.debug,
        wrapper=["valgrind", "-q", f"--error-exitcode={FINDING}", "--trace-children=no",
                 "--track-origins=yes", "--leak-check=no"])


def test_fuzz_target_finds_nothing(tmp_path):
    """libFuzzer on the frame's decoder and encoder (helper_c/fuzz/fuzz_handoff.c),
    from the kept corpus, MAILSLOT_FUZZ_SECONDS (default 20)."""
    import os
    from tests.support import REPO
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (make deps-test installs clang and libclang-rt-14-dev)")
    out = tmp_path / "build"
    proc = subprocess.run(["make", "-s", "-C", os.path.join(REPO, "helper_c"), f"OUT={out}",
                           f"{out}/fuzz/fuzz_handoff"], capture_output=True, text=True)
    if proc.returncode != 0 and "libclang_rt.fuzzer" in proc.stderr:
        pytest.skip("libFuzzer runtime missing (libclang-rt-14-dev)")
    assert proc.returncode == 0, proc.stderr
    seconds = int(os.environ.get("MAILSLOT_FUZZ_SECONDS", 20))
    kept = os.path.join(REPO, "helper_c", "fuzz", "corpus", "handoff")
    assert os.listdir(kept), "the kept corpus is empty"
    new = tmp_path / "new"
    new.mkdir()
    proc = subprocess.run(
        [str(out / "fuzz" / "fuzz_handoff"), f"-max_total_time={seconds}", "-max_len=8192",
         "-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/", str(new), kept],
        capture_output=True, text=True, timeout=seconds + 120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))
