"""The Sieve case-file format, and both sieve-test runners.

A case is one file under tests/sieve/cases/ (*.case), made of sections that start
with a line "== <name>":

    == script          the script (required)
    == message         the message (default: a small plain-text message)
    == args            sieve-test options, one per line ("-f a@b.c")
    == config          Dovecot-style settings lines for both tools (key = value),
                       in the plugin { } block
    == settings        Dovecot-style settings outside the plugin block
                       (postmaster_address, hostname ...)
    == file <path>     an extra file, e.g. "== file sieve/lib.sieve" for include
    == expect          sieve-test's stdout, exactly
    == errors          the error/warning lines on stderr, in order
    == status          success | failed | compile-error | resource-limit | fatal
                       (the tool refuses to run: "Fatal: ..." and a failure exit)
    == differs         why mailslot deliberately differs from Pigeonhole; the
                       differential test then checks only that Pigeonhole's
                       answer is still the one described (or skips)

Lines before the first section are a comment. run_mailslot() runs mailslot's
sieve-test in-process (the function the `mailslot sieve-test` command calls);
run_pigeonhole() runs Debian's /usr/bin/sieve-test as nobody in a temp dir.
"""

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

CASES = HERE / "cases"
PIGEONHOLE = "/usr/bin/sieve-test"

DEFAULT_MESSAGE = """\
From: Alice <alice@example.org>
To: Bob <bob@example.com>
Subject: Hello there
Message-ID: <case-1@example.org>
Date: Tue, 1 Jul 2025 10:00:00 +0200

Hi Bob,
this is a test.
"""


class Case:
    def __init__(self, path):
        self.path = path
        self.name = path.stem
        self.sections = {}
        self.files = {}
        self.comment = ""
        current = None
        lines = []
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines(keepends=True):
            if line.startswith("== "):
                self._store(current, lines)
                current = line[3:].strip()
                lines = []
            else:
                lines.append(line)
        self._store(current, lines)

    def _store(self, name, lines):
        body = "".join(lines)
        if name is None:
            self.comment = body
        elif name.startswith("file "):
            self.files[name[5:].strip()] = body
        else:
            self.sections[name] = body

    @property
    def script(self):
        return self.sections["script"]

    @property
    def message(self):
        return self.sections.get("message", DEFAULT_MESSAGE)

    @property
    def args(self):
        return [a.strip() for a in self.sections.get("args", "").splitlines()
                if a.strip()]

    def argv(self):
        out = []
        for line in self.args:
            opt, _, value = line.partition(" ")
            out.append(opt)
            if value:
                out.append(value.strip())
        return out

    @property
    def config(self):
        return self.sections.get("config", "")

    @property
    def expect(self):
        return self.sections.get("expect")

    @property
    def errors(self):
        text = self.sections.get("errors")
        if text is None:
            return None
        return [line for line in text.splitlines() if line.strip()]

    @property
    def status(self):
        return self.sections.get("status", "success").strip()

    @property
    def differs(self):
        text = self.sections.get("differs")
        return text.strip() if text is not None else None

    def materialize(self, directory):
        """Write script, message, config and extra files into directory."""
        d = Path(directory)
        (d / "script.sieve").write_text(self.script, encoding="utf-8")
        (d / "msg.eml").write_bytes(self.message.encode("utf-8"))
        conf = ("ssl = no\nlog_path = /dev/stderr\n"
                f"mail_location = maildir:{d}/mail\n"
                + self.sections.get("settings", "") + "plugin {\n"
                f"  sieve_dir = {d}/sieve\n  sieve_global_dir = {d}/global\n"
                + self.config + "}\n")
        (d / "conf").write_text(conf, encoding="utf-8")
        for rel, body in self.files.items():
            target = d / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
        return d


def all_cases():
    return sorted(CASES.glob("*.case"))


def error_lines(stderr):
    """The script diagnostics of a sieve-test's stderr (not its Info/Fatal lines)."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("sieve-test"):
            continue
        if ": error: " in line or ": warning: " in line or \
                line.startswith("error: ") or line.startswith("warning: "):
            out.append(line)
    return out


def run_mailslot(case, tmp_path):
    """Run mailslot's sieve-test for case in tmp_path; return (rc, stdout, stderr)."""
    from mailslot.sieve.tool import sieve_test_main
    d = case.materialize(tmp_path)
    old = os.getcwd(), sys.stdout, sys.stderr, os.environ.get("HOME")
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(d)
        os.environ["HOME"] = str(d)
        sys.stdout, sys.stderr = out, err
        rc = sieve_test_main(["-c", "conf", "-C"] + case.argv()
                             + ["script.sieve", "msg.eml"])
    finally:
        os.chdir(old[0])
        sys.stdout, sys.stderr = old[1], old[2]
        if old[3] is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old[3]
    # Bytes that are not UTF-8 print raw (surrogate escapes); read them back the way
    # run_pigeonhole reads Pigeonhole's output.
    def text(buf):
        return buf.getvalue().encode("utf-8", "surrogateescape").decode("utf-8",
                                                                         "replace")
    return rc, text(out), text(err)


def run_pigeonhole(case, timeout=60):
    """Run Pigeonhole's sieve-test for case as nobody; return (rc, stdout, stderr)."""
    d = Path(tempfile.mkdtemp(prefix="ph-case-"))
    try:
        case.materialize(d)
        for root, dirs, files in os.walk(d):
            for name in dirs + files:
                os.chown(os.path.join(root, name), 65534, 65534)
        os.chown(d, 65534, 65534)
        os.chmod(d, 0o755)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "env", f"HOME={d}", "USER=nobody", PIGEONHOLE, "-c", str(d / "conf"),
               "-C"] + case.argv() + ["script.sieve", "msg.eml"]
        p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, errors="replace",
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pigeonhole_available():
    return os.path.exists(PIGEONHOLE) and os.geteuid() == 0 and \
        shutil.which("setpriv") is not None
