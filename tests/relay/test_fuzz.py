"""libFuzzer runs of the relay's parsers, bounded in time, on the corpus kept in git.

Each target (helper_c/fuzz/fuzz_*.c) is built with clang -fsanitize=fuzzer,address,
undefined and run for a fixed time starting from helper_c/fuzz/corpus/<name>/ (read
only: new inputs go to a temp dir). A crash, a sanitizer finding or a broken promise
(the targets abort() on one) fails the test with libFuzzer's report. Seconds per
target: MAILSLOT_FUZZ_SECONDS (default 20; 10 for the passwd-file target).
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HELPER_C = Path(__file__).resolve().parents[2] / "helper_c"
TARGETS = [("fuzz_policy", "policy", 20), ("fuzz_args", "args", 20),
           ("fuzz_passwd", "passwd", 10)]


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (make deps-test installs clang and libclang-rt-14-dev)")
    out = tmp_path_factory.mktemp("fuzz")
    proc = subprocess.run(["make", "-s", "-C", str(HELPER_C), f"OUT={out}", "fuzz"],
                          capture_output=True, text=True)
    if proc.returncode != 0 and "libclang_rt.fuzzer" in proc.stderr:
        pytest.skip("libFuzzer runtime missing (libclang-rt-14-dev)")
    assert proc.returncode == 0, proc.stderr
    return out / "fuzz"


@pytest.mark.parametrize("target, corpus, seconds", TARGETS, ids=[t[0] for t in TARGETS])
def test_fuzz_target_finds_nothing(fuzz_build, tmp_path, target, corpus, seconds):
    seconds = int(os.environ.get("MAILSLOT_FUZZ_SECONDS", seconds))
    kept = HELPER_C / "fuzz" / "corpus" / corpus
    assert any(kept.iterdir()), f"the kept corpus {kept} is empty"
    proc = subprocess.run(
        [str(fuzz_build / target), f"-max_total_time={seconds}", "-max_len=4096",
         "-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/",
         str(tmp_path), str(kept)],
        capture_output=True, text=True, timeout=seconds + 120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Done" in proc.stderr
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("leak-*"))
