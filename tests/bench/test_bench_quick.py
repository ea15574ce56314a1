"""`make bench-quick` produces the whole matrix: every case timed on both sides, plots.

No speed target is asserted here (speed is measured in bench/, not in timed tests);
this checks that the benchmark runs on a clean machine and that its table is
complete: a row per case of bench/cases.py with numbers for both LDAs, the reference
processes, the physical limit, and three PNG plots.
"""

import importlib.util
import json
import os
import re
import subprocess

import pytest

from tests.support import REPO, needs_root

_spec = importlib.util.spec_from_file_location("bench_cases",
                                               os.path.join(REPO, "bench", "cases.py"))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUMBER = r"\d+\.\d\d"


@needs_root
@pytest.mark.skipif(not os.path.exists("/usr/lib/dovecot/dovecot-lda"),
                    reason="dovecot-lda is the other side")
def test_bench_quick_writes_a_complete_table(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run(["make", "-s", "bench-quick", f"BENCH_OUT={out}"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (out / "results.md").read_text()
    main_table = text.split("Reference processes")[0]
    rows = {line.split("|")[1].strip(): line for line in main_table.splitlines()
            if line.startswith("| ") and not line.startswith("| case")}
    for case in cases.CASES:
        assert case.name in rows, f"no row for {case.name}:\n{text}"
        row = rows[case.name]
        # runs, two timings with their spread, the ratio, both peak RSS figures
        assert re.search(rf"\| {case.quick_runs} \| {NUMBER} \({NUMBER}–{NUMBER}\) \| "
                         rf"{NUMBER} \({NUMBER}–{NUMBER}\) \| \*\*{NUMBER}\*\*", row), row
        assert re.search(r"\| \d+\.\d / \d+\.\d \|$", row), row
    assert "| maildir-2k | python floor |" in text and "| maildir-2k | python start |" in text
    # The fast path (issue 18) beside them on the 2 KB cases, and its fallback.
    for name in ("maildir-2k", "mbox-2k", "sieve-200"):
        assert f"| {name} | mailslot fast path |" in text, text
    assert "| maildir-2k | mailslot front, no server |" in text
    assert re.search(r"Physical limit: \*\*\d+ durable 2 KB creates per second\*\*", text)
    for name in ("ratios.png", "times.png", "memory.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    results = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in results["cases"]] == [c.name for c in cases.CASES]
    for case in results["cases"]:
        for side in ("mailslot", "dovecot"):
            assert case["sides"][side]["median_ms"] > 0
            assert case["sides"][side]["peak_rss_kib"] > 0
