"""Pigeonhole 0.5.19's own test suite, run against mailslot's Sieve: shared parts.

The suite is not in the repository: fetch-suite.sh unpacks it from Debian's
source package under build/pigeonhole (`make test` runs it first). Each
tests/**/*.svtest file runs in its own `mailslot sieve-testsuite --json`
process (the files change settings and global state).

Files in this directory:
  expected-pass.txt   the blocks that passed when last recorded, one per line:
                      <file>\t<block index>\t<block name>; a block listed there
                      that does not pass is a test failure
  skips.txt           deliberate skips: <file>[\t#<index>]\t<reason>; a whole
                      file or one block, each with why (an extension out of
                      scope, a Pigeonhole bug)

classify() turns one file's JSON into per-block outcomes: pass, fail (with the
reason) or skip (with the reason), counting the blocks of a file that does
not compile from its source (`test "..." {` lines).
"""

import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SUITE = os.path.join(ROOT, "build", "pigeonhole", "dovecot-2.3-pigeonhole-0.5.19")
TESTS = os.path.join(SUITE, "tests")
EXPECTED = os.path.join(HERE, "expected-pass.txt")
SKIPS = os.path.join(HERE, "skips.txt")

# Pigeonhole runs these expecting every test to fail (its Makefile: -F).
EXPECT_FAILURE_DIR = "failures/"

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_BLOCK = re.compile(r'^\s*test\s+"((?:[^"\\]|\\.)*)"\s*\{?\s*$', re.M)


def suite_files():
    out = []
    for dirpath, _, names in os.walk(TESTS):
        for name in names:
            if name.endswith(".svtest"):
                out.append(os.path.relpath(os.path.join(dirpath, name), TESTS))
    return sorted(out)


def static_blocks(rel):
    """The test blocks of a file from its source: [(index, name)] (those in
    bracketed comments do not count)."""
    with open(os.path.join(TESTS, rel), encoding="utf-8", errors="replace") as fh:
        text = _COMMENT.sub("", fh.read())
    return [(i, m.group(1)) for i, m in enumerate(_BLOCK.finditer(text), 1)]


def run_file(rel, timeout=120):
    """Run one file; return its JSON report (or a synthetic one on a crash)."""
    cmd = [sys.executable, "-c",
           "import sys; from mailslot.admin import main; sys.exit(main())",
           "sieve-testsuite", "--json"]
    if rel.startswith(EXPECT_FAILURE_DIR):
        cmd.append("-F")
    cmd.append(os.path.join(TESTS, rel))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "pyside"))
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env,
                          cwd=os.path.dirname(os.path.join(TESTS, rel)))
    try:
        return json.loads(proc.stdout.decode("utf-8", "replace"))
    except ValueError:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        return {"file": rel, "passed": False, "blocks": [],
                "case_failures": ["crashed: %s" % (tail[0] if tail else proc.returncode)]}


def load_skips():
    """{file: reason} for whole files and {(file, index): reason} for blocks."""
    files, blocks = {}, {}
    with open(SKIPS, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) == 3 and parts[1].startswith("#"):
                blocks[(parts[0], int(parts[1][1:]))] = parts[2]
            elif len(parts) == 2:
                files[parts[0]] = parts[1]
            else:
                raise ValueError("skips.txt: bad line %r" % line)
    return files, blocks


def load_expected():
    out = set()
    if not os.path.exists(EXPECTED):
        return out
    with open(EXPECTED, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                rel, index, _name = line.split("\t", 2)
                out.add((rel, int(index)))
    return out


def classify(rel, report, skips=None):
    """[(index, name, outcome, reason)] with outcome pass / fail / skip.

    A file in tests/failures passes as one block when it failed as expected.
    """
    file_skips, block_skips = skips if skips is not None else load_skips()
    if rel.startswith(EXPECT_FAILURE_DIR):
        outcome = "pass" if report["passed"] else "fail"
        return [(1, "(expected failure)", outcome,
                 "" if report["passed"] else "did not fail as expected")]
    ran = {b["index"]: b for b in report["blocks"]}
    declared = static_blocks(rel)
    if not declared and not ran:
        declared = [(1, "(file)")]
    names = dict(declared)
    names.update({i: b["name"] for i, b in ran.items()})
    out = []
    case = "; ".join(report.get("case_failures", []))
    for index in sorted(names):
        name = names[index]
        if rel in file_skips:
            out.append((index, name, "skip", file_skips[rel]))
            continue
        if (rel, index) in block_skips:
            out.append((index, name, "skip", block_skips[(rel, index)]))
            continue
        b = ran.get(index)
        if b is None:
            out.append((index, name, "fail", case or "block did not run"))
        elif b["status"] == "SUCCEEDED":
            out.append((index, name, "pass", ""))
        elif b["status"] == "SKIPPED":
            out.append((index, name, "skip", b["reason"]))
        else:
            out.append((index, name, "fail", b["reason"]))
    if case and all(o[2] == "pass" for o in out) and rel not in file_skips:
        out.append((len(out) + 1, "(test file)", "fail", case))
    return out
