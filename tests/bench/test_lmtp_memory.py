"""The LMTP benchmark's memory figures (bench/lmtp_bench.py): the summed PSS of a
process tree counts a page its forked processes share once, where the summed VmHWM
counts it per process.

Why this exists: docs/benchmarks.md holds mailslot-lmtpd (a parent and forked
workers) to issue 17's 64 MiB with these figures; a sampler that missed the children,
or summed RSS under the name PSS, would misreport it. A real tree stands in for the
server: a process that has written 48 MiB and forked two children that only sleep.
"""

import importlib.util
import os
import subprocess
import sys
import time

from tests.support import REPO

_spec = importlib.util.spec_from_file_location("lmtp_bench",
                                               os.path.join(REPO, "bench", "lmtp_bench.py"))
lmtp_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lmtp_bench)

MIB = 1024
SHARED_MIB = 48
TREE = f"""
import os, sys, time
data = b"x" * ({SHARED_MIB} << 20)      # written: resident, then shared by the forks
for _ in range(2):
    if os.fork() == 0:
        time.sleep(60); os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""


def test_pss_counts_what_the_forks_share_once():
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        children = lmtp_bench._descendants(proc.pid)
        assert len(children) == 2
        sampler = lmtp_bench.PssSampler(proc.pid)
        sampler.start()
        time.sleep(0.3)
        sampler.finish()
        hwm_sum = sum(lmtp_bench._hwm_kib(p) for p in [proc.pid] + children)
        assert sampler.samples >= 3
        # Three processes each map the 48 MiB: VmHWM counts it three times...
        assert hwm_sum > 3 * SHARED_MIB * MIB
        # ...PSS once (plus the three interpreters' own pages).
        assert SHARED_MIB * MIB < sampler.peak < (SHARED_MIB + 24) * MIB, sampler.peak
    finally:
        for pid in lmtp_bench._descendants(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait()
