"""What a delivery imports to run a script from a fresh compile cache.

The Sieve overhead of a delivery is mostly Python importing modules, so the run
path must stay lean: with the cache fresh, no compiler module (lexer, parser,
validator, syntax, defs, the extensions' definition halves) is imported, only the
run-time halves of the extensions the script requires, and no `re` or `json`.
Each check runs in a fresh `python3 -I -S`, as the installed engine does.
"""

import os
import subprocess
import sys

from tests.support import REPO

SCRIPT = """require ["fileinto", "envelope", "imap4flags", "variables"];
if header :contains "subject" "keyword" { fileinto "Folder"; stop; }
if header :matches "subject" "*" { set :lower "subject" "${1}"; }
if address :is "from" "sender@example.com" { fileinto "Folder"; stop; }
if header :matches "list-id" "*list.example.net*" { fileinto "Lists"; stop; }
if envelope :is "from" "bounce@example.org" { addflag "\\\\Flagged"; }
"""

RUNNER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from mailslot import sieve
from mailslot.sieve.mail import RawMessage
msg = RawMessage(b"From: Alice <alice@example.org>\nSubject: hi\n\nbody\n")
res = sieve.run([sys.argv[2]], msg, {"from": "a@example.org", "to": "b@example.org"})
assert res.status == "success" and res.implicit_keep, res.to_dict()
print(" ".join(sorted(sys.modules)))
"""

COMPILER = ("mailslot.sieve.lexer", "mailslot.sieve.parser", "mailslot.sieve.validator",
            "mailslot.sieve.syntax", "mailslot.sieve.defs",
            "mailslot.sieve.extensions.core", "mailslot.sieve.extensions.fileinto",
            "mailslot.sieve.extensions.envelope",
            "mailslot.sieve.extensions.imap4flags", "mailslot.sieve.extensions.variables",
            "mailslot.sieve.extensions.match_tags", "mailslot.sieve.compiler")


def run_modules(script):
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER, os.path.join(REPO, "pyside"), script],
        check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_cached_run_imports_no_compiler(tmp_path):
    script = tmp_path / "rules.sieve"
    script.write_text(SCRIPT)
    first = run_modules(str(script))           # compiles and writes the cache
    assert "mailslot.sieve.validator" in first
    assert (tmp_path / "rules.msbin").exists()
    modules = run_modules(str(script))         # runs from the cache
    assert not modules & set(COMPILER), sorted(modules & set(COMPILER))
    for needed in ("mailslot.sieve.extensions.core_runtime",   # with fileinto, envelope
                   "mailslot.sieve.extensions.imap4flags_runtime",
                   "mailslot.sieve.extensions.variables_runtime"):
        assert needed in modules
    # Extensions the script does not require are not imported; nor are re, json.
    assert "mailslot.sieve.extensions.regex" not in modules
    assert "mailslot.sieve.extensions.subaddress" not in modules
    assert "re" not in modules and "json" not in modules


ENTRY_RUNNER = r"""
import gc, runpy, sys
sys.path.insert(0, sys.argv[1])
import mailslot.cli
# The entry ends with os._exit; stop just before it to look at the process.
def stop(code):
    raise SystemExit(code)
mailslot.cli.exit_now = stop
sys.argv = [sys.argv[2], "--no-such-option"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    print(exc.code, gc.isenabled())
"""


def test_engine_entry_runs_without_the_cyclic_collector(tmp_path):
    # One message per process: the collector's first pass over what the imports
    # made costs about 5% of a Sieve delivery's instructions and frees nothing
    # the exit would not (docs/benchmarks.md, "Sieve (session 4)").
    entry = tmp_path / "mailslot-lda"
    entry.write_bytes(open(os.path.join(REPO, "pyside", "entry", "mailslot-lda"),
                           "rb").read())
    os.symlink(os.path.join(REPO, "pyside"), tmp_path / "python")
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ENTRY_RUNNER, os.path.join(REPO, "pyside"),
         str(entry)], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["64", "False"], out
