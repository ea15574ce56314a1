"""The reused worker's state check (pyside/mailslot/handoff/state.py), data-driven.

Each case runs in a fresh interpreter as the worker would: take the snapshot,
make one change a delivery could leave behind, then restore() and differences().
What a hand-off sets on purpose (cwd, umask, environment, time zone, soft limits,
fds 0-2) must come back as it was ([] afterwards); anything else must be named,
so that the worker exits instead of serving again.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.support import REPO

CHILD = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
import signal, time, resource, threading, warnings, socket, atexit, gc, io, ctypes
from mailslot.handoff import state
pre = {}
exec(sys.argv[2], globals(), pre)
snap = state.Snapshot.take()
exec(sys.argv[3], globals(), pre)
problems = snap.restore() + snap.differences()
os.write(1, (json.dumps(problems) + '\n').encode())
'''

# name, before the snapshot, the change, what the problem says (None: no problem)
CASES = [
    ("nothing", "", "", None),
    ("fd leaked", "", "os.open('/dev/null', os.O_RDONLY)", "descriptors changed: new"),
    ("fd closed", "fd = os.open('/dev/null', os.O_RDONLY)", "os.close(fd)",
     "descriptors changed: new [], closed"),
    ("fd replaced", "fd = os.open('/dev/null', os.O_RDONLY)",
     "os.dup2(os.open('/', os.O_RDONLY), fd)", "descriptors changed"),
    ("fd made inheritable", "fd = os.open('/dev/null', os.O_RDONLY)",
     "os.set_inheritable(fd, True)", "descriptors changed"),
    ("fd 1 left on another file", "",
     "fd = os.open('/dev/null', os.O_WRONLY); os.dup2(fd, 1); os.close(fd)", None),
    ("environment", "", "os.environ['FOO'] = 'bar'; del os.environ['PATH']", None),
    ("C environment behind os.environ's back", "", "os.putenv('SNEAKY', '1')",
     "environ (C) changed: SNEAKY"),
    ("working directory", "", "os.chdir('/tmp')", None),
    ("umask", "", "os.umask(0o027)", None),
    ("time zone", "", "os.environ['TZ'] = 'Asia/Tokyo'; time.tzset()", None),
    ("soft limit lowered", "",
     "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit("
     "resource.RLIMIT_FSIZE)[1]))", None),
    ("hard limit lowered", "",
     "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 8192))",
     "the hard limit was lowered"),
    ("signal handler", "", "signal.signal(signal.SIGUSR1, lambda *a: None)",
     "handlers changed"),
    ("signal ignored", "", "signal.signal(signal.SIGUSR2, signal.SIG_IGN)",
     "status SigIgn changed"),
    ("signal blocked", "", "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])",
     "signal mask changed"),
    ("signal pending", "",
     "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2]);"
     "os.kill(os.getpid(), signal.SIGUSR2)", "status ShdPnd changed"),
    ("alarm", "", "signal.alarm(100)", "itimers changed"),
    ("profiling timer", "", "signal.setitimer(signal.ITIMER_PROF, 50)", "itimers changed"),
    ("POSIX timer", "",
     "ctypes.CDLL(None).timer_create(1, None, ctypes.byref(ctypes.c_void_p()))",
     "posix timers changed"),
    ("wakeup fd", "", "r, w = os.pipe(); os.set_blocking(w, False); "
     "signal.set_wakeup_fd(w)", "descriptors changed"),
    ("sys.stdout replaced", "", "sys.stdout = io.StringIO()", "sys.stdout changed"),
    ("sys.stderr reconfigured", "", "sys.stderr.reconfigure(errors='replace')",
     "sys.stderr changed"),
    ("sys.path", "", "sys.path.append('/tmp')", "sys.path changed"),
    ("recursion limit", "", "sys.setrecursionlimit(12345)", "recursion limit changed"),
    ("trace function", "", "sys.settrace(lambda *a: None)", "trace changed"),
    ("collector off", "", "gc.disable()", "gc changed"),
    ("warnings filter", "", "warnings.simplefilter('ignore')", "warnings changed"),
    ("socket timeout", "", "socket.setdefaulttimeout(3)", "socket timeout changed"),
    ("atexit callback", "", "atexit.register(len, '')", "atexit changed"),
    ("thread left running", "",
     "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()",
     "status Threads changed"),
    ("child left running", "",
     "import subprocess; subprocess.Popen(['sleep', '5'])", "a child is still running"),
    ("zombie child", "", "pid = os.fork()\nif pid == 0: os._exit(0)\ntime.sleep(0.2)",
     "was left behind"),
    ("nice value", "", "os.nice(1)", "nice changed"),
    ("process group", "", "os.setpgid(0, 0)",
     "pgrp/session changed"),
    ("not dumpable", "", "ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)", "prctl changed"),
    ("process name", "", "open('/proc/self/comm', 'w').write('other')", "name changed"),
    ("memory kept", "", "kept = bytearray(100 << 20); kept[::4096] = b'x' * len(kept[::4096])",
     "resident memory grew"),
]


@pytest.mark.parametrize("name, before, change, expected", CASES,
                         ids=[c[0] for c in CASES])
def test_state_check(name, before, change, expected):
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, os.path.join(REPO, "pyside"),
                           before, change], capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode()
    problems = json.loads(proc.stdout.decode().splitlines()[-1])
    if expected is None:
        assert problems == [], problems
    else:
        assert any(expected in p for p in problems), problems
