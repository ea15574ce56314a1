"""`mailslot sieve-testsuite [-F] [--json] FILE.svtest`: run one Pigeonhole test file.

Prints one line per test block, in the layout of Pigeonhole's testsuite tool
(" 3: Test 'name' SUCCEEDED", "... FAILED: reason", and mailslot's "SKIPPED:
reason"), then "PASS: ..." or "FAIL: ...". --json prints the same as data:
{"file", "blocks": [{"index", "name", "line", "status", "reason"}],
"case_failures": [...], "passed": bool}.

-F: the file is expected to fail (Pigeonhole's tests/failures): it passes when
every block (or the file's compile) failed.

Exit status: 0 when the file passes (skipped blocks do not fail it), 1 when it
does not, 64 on a usage error.

As in Pigeonhole's tool, every extension mailslot has is enabled, sieve_dir is
the file's directory + "/included" and sieve_global_dir + "/included-global",
and the test script's own compile errors are printed to stderr.
"""

import os
import sys

from ..errors import EX_USAGE

USAGE = "usage: mailslot sieve-testsuite [-F] [--json] FILE.svtest\n"


def register():
    """Make vnd.dovecot.testsuite known in this process only (see __init__)."""
    from ..sieve import extensions
    from . import commands, runtime
    name = runtime.EXTENSION
    if name not in extensions.EXTENSIONS:
        # The validator loads the first module, the interpreter dispatches to
        # the handlers of the last (as for <ext>, <ext>_runtime).
        extensions._MODULES["testsuite"] = commands
        extensions._MODULES["testsuite_runtime"] = runtime
        extensions.EXTENSIONS[name] = ("testsuite", "testsuite_runtime")
    return name


def _user():
    name = os.environ.get("USER")
    if name:
        return name
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"


def run_file(path, out=None, err=None):
    """Run one .svtest file; return its Suite (blocks, case_failures)."""
    from ..sieve.extensions import EXTENSIONS
    from ..sieve.extensions import subaddress
    from ..sieve.cpu import CpuTimeExceeded
    from ..sieve.runner import OK
    from ..sieve.script import ScriptNotFoundError, compile_file
    from ..sieve.settings import SieveSettings
    from .runtime import DEFAULT_MESSAGE, CapturingDiagnostics, Suite, TestContext
    register()
    directory = os.path.dirname(os.path.abspath(path))
    conf = {"sieve_dir": os.path.join(directory, "included"),
            "sieve_global_dir": os.path.join(directory, "included-global"),
            "postmaster_address": "postmaster@example.com"}
    suite = Suite(path, conf, _user(), out)
    settings = SieveSettings.from_mapping(conf)
    subaddress.set_delimiter(settings.recipient_delimiter)
    def show_errors(line):
        # As Pigeonhole's tool: the test script's own errors go to stderr; its
        # info and warning lines are only collected.
        if line.startswith("error: ") or ": error: " in line:
            err.write(line + "\n")

    main_diag = CapturingDiagnostics(sink=show_errors if err is not None else None)
    ctx = TestContext(None, None, settings, main_diag,
                      mailbox_exists=suite.mailbox_exists, user=suite.user)
    ctx.suite = suite
    suite.ctx = ctx
    ctx.enabled_extensions = set(EXTENSIONS)
    suite.set_message(DEFAULT_MESSAGE)
    try:
        program, _ = compile_file(path, suite.env(), main_diag,
                                  settings.max_script_size)
    except ScriptNotFoundError as exc:
        suite.case_failures.append("cannot open test script: %s" % exc.strerror)
        return suite
    if program is None:
        suite.case_failures.append("failed to compile testcase script")
        suite.compile_errors = list(main_diag.messages)
        return suite
    try:
        status = _run_main(ctx, program)
    except CpuTimeExceeded:
        status = "resource limit"
    if suite.current is not None:
        suite.end("FAILED", "test script execution aborted inside the block")
    if status != OK:
        suite.case_failures.append("test script execution aborted due to error: %s"
                                   % "; ".join(main_diag.messages[-3:]))
    return suite


def _run_main(ctx, program):
    from ..sieve.runner import run_program
    return run_program(ctx, program)


def passed(suite, expect_failure=False):
    failed = [b for b in suite.blocks if b.status == "FAILED"]
    if expect_failure:
        return bool(suite.case_failures) or (
            bool(suite.blocks) and len(failed) == len(suite.blocks))
    return not failed and not suite.case_failures and \
        all(b.status is not None for b in suite.blocks)


def main(argv):
    expect_failure = as_json = False
    files = []
    for arg in argv:
        if arg == "-F":
            expect_failure = True
        elif arg == "--json":
            as_json = True
        elif arg.startswith("-"):
            sys.stderr.write(USAGE)
            return EX_USAGE
        else:
            files.append(arg)
    if len(files) != 1:
        sys.stderr.write(USAGE)
        return EX_USAGE
    path = files[0]
    out = None if as_json else sys.stdout
    if out is not None:
        out.write("Test case: %s:\n\n" % path)
    suite = run_file(path, out=out, err=sys.stderr)
    ok = passed(suite, expect_failure)
    if as_json:
        import json
        data = {"file": path, "passed": ok, "case_failures": suite.case_failures,
                "blocks": [{"index": b.index, "name": b.name, "line": b.line,
                            "status": b.status or "FAILED",
                            "reason": b.reason if b.status else "not finished"}
                           for b in suite.blocks]}
        sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        return 0 if ok else 1
    for reason in suite.case_failures:
        out.write("XX: Test CASE FAILED: %s\n" % reason)
    counts = {}
    for b in suite.blocks:
        counts[b.status] = counts.get(b.status, 0) + 1
    total = len(suite.blocks)
    if expect_failure:
        out.write("\n%s: %d tests failed (expected to fail).\n\n"
                  % ("PASS" if ok else "FAIL", counts.get("FAILED", 0)))
    elif ok:
        out.write("\nPASS: %d tests succeeded%s.\n\n" % (
            counts.get("SUCCEEDED", 0),
            ", %d skipped" % counts["SKIPPED"] if counts.get("SKIPPED") else ""))
    else:
        out.write("\nFAIL: %d of %d tests failed.\n\n"
                  % (counts.get("FAILED", 0) + len(suite.case_failures), total))
    return 0 if ok else 1
