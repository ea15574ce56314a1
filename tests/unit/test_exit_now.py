"""cli.exit_now: the installed mailslot-lda ends with os._exit after flushing stdout
and stderr (no interpreter teardown), unless something could need the teardown: an
atexit handler, a live thread, a flush that fails. Each case runs in a fresh
python3 -I -S, as the installed engine does."""

import os
import subprocess
import sys

import pytest

from tests.support import REPO

PRELUDE = """
import os, sys
sys.path.insert(0, sys.argv[1])
from mailslot.cli import exit_now

class Witness:
    # Runs only if the interpreter tears its modules down (normal exit).
    def __del__(self):
        os.write(2, b"teardown ran\\n")

witness = Witness()
"""

CASES = [
    # (name, body, exit code, stdout, stderr contains, teardown ran)
    ("plain: buffered output flushed, no teardown",
     "sys.stdout.write('OK\\tuid=1'); sys.stderr.write('note'); exit_now(3)",
     3, "OK\tuid=1", "note", False),
    ("an atexit handler: normal exit, the handler runs",
     "import atexit; atexit.register(lambda: os.write(1, b'handler')); exit_now(5)",
     5, "handler", "", True),
    ("a live thread: normal exit waits for it",
     "import threading, time\n"
     "t = threading.Thread(target=lambda: (time.sleep(0.2), os.write(1, b'thread done')))\n"
     "t.start(); exit_now(0)",
     0, "thread done", "", True),
]


@pytest.mark.parametrize("name,body,code,out,err,teardown", CASES, ids=[c[0] for c in CASES])
def test_exit_now(name, body, code, out, err, teardown):
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", PRELUDE + body,
                           os.path.join(REPO, "pyside")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == out
    assert err in proc.stderr
    assert ("teardown ran" in proc.stderr) == teardown, proc.stderr


def test_a_failing_flush_keeps_pythons_exit():
    # stdout a closed pipe: the flush fails; Python's own exit then reports it
    # (status 120), as mailslot-lda did before exit_now.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c",
                               PRELUDE + "sys.stdout.write('x' * 10); exit_now(0)",
                               os.path.join(REPO, "pyside")], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert proc.returncode == 120, proc.stderr
    assert "teardown ran" in proc.stderr
