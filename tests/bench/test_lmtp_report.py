"""The LMTP benchmark's "mailslot / physical limit" figure (bench/lmtp_bench.py
report()): the median of each mailslot run divided by the physical-limit loop
measured beside it, not the median rate over one loop measured at the end.

Why this exists: issue 17's 70% target is read from this column, and on this
machine the loop's own rate moves by 2x with what the disk freed just before
(docs/benchmarks.md); a report that divided by the wrong loop would misstate it.
"""

import importlib.util
import os

from tests.support import REPO

_spec = importlib.util.spec_from_file_location("lmtp_bench",
                                               os.path.join(REPO, "bench", "lmtp_bench.py"))
lmtp_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lmtp_bench)


def _results(rates, phys):
    ratios = [r / p for r, p in zip(rates, phys)]
    row = {"median": {"mailslot": sorted(rates)[1], "dovecot": 100.0}, "ratio": 1.0,
           "cpu_median": {}, "generator_cpu_median": {},
           "physical_per_s": phys, "physical_median": sorted(phys)[1],
           "physical_ratio": ratios, "physical_ratio_median": sorted(ratios)[1]}
    return {"physical_per_s": 5000.0, "connections": {4: row}, "generator": "c"}


def test_each_run_is_set_against_the_loop_beside_it():
    # Runs of 2400, 1000 and 900/s beside loops of 3000, 2000 and 1000/s: 80%, 50%
    # and 90% of the loop beside each, so 80% -- where the median rate over the
    # median loop says 50%, and over the loop at the end (5000/s) 20%.
    table = lmtp_bench.report(_results([2400, 1000, 900], [3000, 2000, 1000]))
    row = next(line for line in table.splitlines() if line.startswith("| 4 |"))
    assert "| 80% (of 2000/s) |" in row
    assert "measured just before it" in table


def test_older_results_without_pairs_still_report():
    results = _results([2100, 1400, 700], [3000, 2000, 1000])
    row = results["connections"][4]
    for key in ("physical_per_s", "physical_median", "physical_ratio",
                "physical_ratio_median"):
        del row[key]
    table = lmtp_bench.report(results)
    assert "| 28% |" in next(line for line in table.splitlines()
                              if line.startswith("| 4 |"))
