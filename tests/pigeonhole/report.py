"""Run Pigeonhole's whole suite and summarise it per directory.

    python tests/pigeonhole/report.py [--update] [--markdown] [--failures]

--update rewrites expected-pass.txt from this run; --markdown prints the table
for docs/sieve.md; --failures lists every failed and skipped block with why.
Runs two files at a time.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suite import EXPECTED, classify, load_skips, run_file, suite_files  # noqa: E402


def main(argv):
    files = suite_files()
    skips = load_skips()
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(run_file, files))
    rows = {}
    passing = []
    detail = []
    for rel, report in zip(files, reports):
        directory = os.path.dirname(rel) or "."
        row = rows.setdefault(directory, [0, 0, 0, 0, 0])
        row[0] += 1
        for index, name, outcome, why in classify(rel, report, skips):
            row[1] += 1
            row[{"pass": 2, "fail": 3, "skip": 4}[outcome]] += 1
            if outcome == "pass":
                passing.append("%s\t%d\t%s" % (rel, index, name))
            else:
                detail.append("%s %s #%d '%s': %s" % (outcome.upper(), rel, index,
                                                      name, why))
    total = [sum(r[i] for r in rows.values()) for i in range(5)]
    if "--update" in argv:
        with open(EXPECTED, "w", encoding="utf-8") as fh:
            fh.write("# Pigeonhole 0.5.19 test blocks that pass (tests/pigeonhole/"
                     "report.py --update)\n")
            fh.write("".join(line + "\n" for line in passing))
    if "--markdown" in argv:
        print("| directory | files | blocks | passed | failed | skipped | pass rate* |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for directory in sorted(rows):
            print(_row(directory, rows[directory]))
        print(_row("**total**", total))
    else:
        print("files %d, blocks %d, passed %d, failed %d, skipped %d" % tuple(total))
    if "--failures" in argv:
        print("\n".join(sorted(detail)))
    return 0


def _row(name, r):
    ran = r[2] + r[3]
    rate = "%.1f%%" % (100.0 * r[2] / ran) if ran else "-"
    return "| %s | %d | %d | %d | %d | %d | %s |" % (name, r[0], r[1], r[2], r[3],
                                                   r[4], rate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
