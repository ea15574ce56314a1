"""Hostile input corpus (issue 21, build 3): each input delivered or deferred within
time and memory limits, never lost.

    python3 -m tests.reliability.hostile [NAME ...]          # run, a JSON line each
    python3 -m tests.reliability.hostile --write DIR [--small]  # write the corpus

Every case is a message (and, for the Sieve cases, the user's script) made by a
generator below; the small ones are committed in tests/reliability/corpus/ (the
test checks that they are what the generators make), the big ones are made at run
time. Each is piped into the engine (Debian's python3 -I -S, as a system user via
setpriv, Maildir) from a file; the engine's exit status, wall time and peak RSS
(GNU time's ru_maxrss of the engine) are recorded. It passes when
the exit is 0 and the message is in the mailbox exactly once with its bytes intact
(CRLF as LF), or the exit is 75 and the mailbox is untouched; within TIME_LIMIT
seconds and RSS_LIMIT_MB. Peak RSS is GNU time's %M (wait4's ru_maxrss of the
engine it forked).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from tests.support import REPO, ensure_user, remove_user, world_tempdir

PYSIDE = os.path.join(REPO, "pyside")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
ENGINE = ("import sys; sys.path.insert(0, %r)\n"
          "from mailslot.cli import main\nsys.exit(main())\n" % PYSIDE)
TIME = "/usr/bin/time"      # GNU time (Debian's "time"), for the engine's peak RSS
TIME_LIMIT = 60.0           # seconds per case, wall clock, on a loaded 2-core machine
RSS_LIMIT_MB = 400          # peak RSS per case
SMALL_MAX = 64 * 1024       # cases up to this size are committed
HEAD = b"From: hostile@example.org\nTo: user@example.org\nMessage-ID: <%s@hostile>\n"


def _head(name, subject=b"hostile"):
    return HEAD % name.encode() + b"Subject: " + subject + b"\n"


def nul_bytes(name):
    return _head(name) + b"X-Nul: a\0b\0\0c\n\nbody \0 with \0\0 NULs\n\0\n"


def bare_cr(name):
    return _head(name) + b"X-CR: a\rb\r\n\r\nline one\rline two\r\rFrom x\r\n.\r\n"


def header_line_1mb(name):
    return _head(name) + b"X-Long: " + b"a" * (1024 * 1024) + b"\n\nbody\n"


def headers_100k(name):
    return _head(name) + b"".join(b"X-H%d: v\n" % i for i in range(100_000)) + b"\nbody\n"


def garbage_8bit_headers(name):
    junk = bytes(range(128, 256)) * 4
    return (_head(name) + b"X-\xff\xfe\x80: " + junk + b"\n\xe9t\xe9: v\n"
            + junk[:60] + b": " + junk + b"\nSubject: =?utf-8?b?" + junk[:30] + b"?=\n\n"
            + junk + b"\n")


def no_separator(name):
    return _head(name) + b"".join(b"X-Only-Header-%d: v\n" % i for i in range(2000))


def mime_2000_deep(name):
    depth = 2000
    out = [_head(name), b"MIME-Version: 1.0\n"]
    for i in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i))
    out.append(b"Content-Type: text/plain\n\ninnermost hello\n")
    for i in reversed(range(depth)):
        out.append(b"--b%d--\n" % i)
    return b"".join(out)


def rfc2231_bomb(name):
    params = b"".join(b";\n title*%d*=us-ascii'en'%%41%%42%%43" % i for i in range(20_000))
    fname = b"".join(b";\n filename*%d=\"x%d\"" % (i, i) for i in range(5000))
    return (_head(name) + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b"
            + params + b"\n\n--b\nContent-Type: application/octet-stream; name*0*=utf-8''"
            + b"%FF%FE" * 5000 + b"\nContent-Disposition: attachment" + fname
            + b"\n\nAAAA\n--b--\n")


def base64_giant_line(name):
    import base64
    blob = base64.b64encode(b"\x89PNG" * 786432)           # one 4 MB line
    return (_head(name) + b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
            b"--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n" + blob
            + b"\n--b--\n")


def regex_bomb(name):
    return _head(name, b"a" * 40 + b"!") + b"X-Many: " + b"ab" * 5000 + b"\n\nbody\n"


REGEX_BOMB_SCRIPT = b"""require ["regex", "fileinto", "variables"];
if header :regex "subject" "^(a+)+$" { fileinto "Never"; }
if header :regex "x-many" "^(a|ab|b)*c$" { fileinto "Never"; }
if header :matches "x-many" "*a*b*a*b*a*b*a*b*a*b*c" { fileinto "Never"; }
"""


def include_loop(name):
    return _head(name) + b"\nbody\n"


INCLUDE_LOOP_SCRIPT = b"""require ["include"];
include :personal "loop";
"""
INCLUDE_LOOP_EXTRA = {"sieve/loop.sieve": b'require ["include"]; include :personal "loop2";\n',
                      "sieve/loop2.sieve": b'require ["include"]; include :personal "loop";\n'}


def foreverypart_work(name):
    return mime_2000_deep(name)


FOREVERYPART_SCRIPT = b"""require ["foreverypart", "mime", "body", "variables", "fileinto"];
foreverypart {
  if header :mime :contenttype :contains "content-type" "text" { set "t" "${t}x"; }
  foreverypart {
    if body :raw :contains "nothing here" { fileinto "Never"; }
  }
}
"""

# name: (generator, Sieve script or None, extra files in the home)
CASES = {
    "nul-bytes": (nul_bytes, None, {}),
    "bare-cr": (bare_cr, None, {}),
    "header-line-1mb": (header_line_1mb, None, {}),
    "headers-100k": (headers_100k, None, {}),
    "8bit-garbage-headers": (garbage_8bit_headers, None, {}),
    "no-separator": (no_separator, None, {}),
    "mime-2000-deep": (mime_2000_deep, None, {}),
    "rfc2231-bomb": (rfc2231_bomb, None, {}),
    "base64-giant-line": (base64_giant_line, None, {}),
    "sieve-regex-bomb": (regex_bomb, REGEX_BOMB_SCRIPT, {}),
    "sieve-include-loop": (include_loop, INCLUDE_LOOP_SCRIPT, INCLUDE_LOOP_EXTRA),
    "sieve-foreverypart-work": (foreverypart_work, FOREVERYPART_SCRIPT, {}),
    # The same inputs through Sieve: the header, MIME and body code of the tests.
    "sieve-headers-100k": (headers_100k, b'require "fileinto";\nif header :contains '
                           b'"x-h99999" "zzz" { fileinto "Never"; }\n', {}),
    "sieve-mime-2000-deep": (mime_2000_deep, b'require ["body", "fileinto"];\nif body '
                             b':text :contains "nothing" { fileinto "Never"; }\n', {}),
    "sieve-rfc2231-bomb": (rfc2231_bomb, b'require ["mime", "fileinto"];\nif header :mime '
                           b':param "filename" :contains "content-disposition" "zz" '
                           b'{ fileinto "Never"; }\n', {}),
}


# What the log must show, so that a case is known to have hit what it aims at.
LOG_MUST = {"sieve-regex-bomb": ["exceeded"], "sieve-include-loop": ["include"]}


def write_corpus(directory, small_only):
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, (make, script, extra) in CASES.items():
        data = make(name)
        if small_only and len(data) > SMALL_MAX:
            continue
        with open(os.path.join(directory, name + ".eml"), "wb") as f:
            f.write(data)
        if script:
            with open(os.path.join(directory, name + ".sieve"), "wb") as f:
                f.write(script)
        written.append(name)
    return written


class Home:
    def __init__(self):
        self.token = os.urandom(3).hex()
        self.user = f"mslt-h{self.token}"
        self.base = world_tempdir("mailslot-hostile-")
        self.home = os.path.join(self.base, "home")
        self.entry = ensure_user(self.user, self.home)
        self.conf = os.path.join(self.base, "mailslot.yaml")
        with open(self.conf, "w") as f:
            f.write(f"mail_location: maildir:~/Maildir\nlog_path: {self.base}/engine.log\n"
                    "hostname: hostile.example.org\nfirst_valid_uid: 100\n"
                    "sieve_max_cpu_time: 5s\n")
        os.chmod(self.conf, 0o644)
        open(f"{self.base}/engine.log", "a").close()
        os.chown(f"{self.base}/engine.log", self.entry.pw_uid, self.entry.pw_gid)

    def log_text(self):
        with open(f"{self.base}/engine.log", encoding="utf-8", errors="replace") as f:
            return f.read()

    def reset(self, script, extra):
        open(f"{self.base}/engine.log", "w").close()
        for entry in os.listdir(self.home):
            path = os.path.join(self.home, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        files = dict(extra)
        if script:
            files[".dovecot.sieve"] = script
        for rel, data in files.items():
            path = os.path.join(self.home, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        subprocess.run(["chown", "-R", f"{self.entry.pw_uid}:{self.entry.pw_gid}", self.home],
                       check=True)

    def deliver(self, data):
        spool = os.path.join(self.base, "in.eml")
        with open(spool, "wb") as f:
            f.write(data)
        rss_file = os.path.join(self.base, "rss")
        # GNU time forks the engine itself: a child forked from this (large) test
        # process would carry this process's memory high-water mark in its
        # ru_maxrss (Linux keeps it across fork and exec), so wait4 here would
        # measure us, not the engine.
        argv = [TIME, "-f", "%M", "-o", rss_file,
                "setpriv", f"--reuid={self.entry.pw_uid}", f"--regid={self.entry.pw_gid}",
                "--init-groups", "--", "/usr/bin/python3", "-I", "-S", "-c", ENGINE,
                "-c", self.conf]
        with open(spool, "rb") as stdin:
            start = time.monotonic()
            proc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, cwd="/", timeout=TIME_LIMIT * 3,
                                  env={"PATH": "/usr/bin:/bin", "HOME": self.home,
                                       "USER": self.user})
            took = time.monotonic() - start
        with open(rss_file) as f:
            rss_kb = int(f.read().split()[-1])
        return proc.returncode, proc.stderr.decode("utf-8", "replace"), took, rss_kb / 1024

    def stored(self):
        out = []
        for root, _dirs, files in os.walk(os.path.join(self.home, "Maildir")):
            if os.path.basename(root) in ("new", "cur"):
                for name in files:
                    with open(os.path.join(root, name), "rb") as f:
                        out.append((os.path.relpath(root, self.home), f.read()))
        return out

    def close(self):
        remove_user(self.user)
        shutil.rmtree(self.base, ignore_errors=True)


def run_case(home, name):
    make, script, extra = CASES[name]
    data = make(name)
    home.reset(script, extra)
    code, err, took, rss = home.deliver(data)
    stored = home.stored()
    want = data.replace(b"\r\n", b"\n")
    problems = []
    if code == 0:
        copies = [box for box, raw in stored if raw == want]
        if len(copies) != 1:
            problems.append(f"exit 0 but {len(copies)} intact copies "
                            f"({len(stored)} files stored)")
    elif code == 75:
        if stored:
            problems.append("exit 75 but something was stored")
    else:
        problems.append(f"exit {code}: {err[-300:]}")
    if took > TIME_LIMIT:
        problems.append(f"took {took:.1f} s (limit {TIME_LIMIT})")
    if rss > RSS_LIMIT_MB:
        problems.append(f"peak RSS {rss:.0f} MB (limit {RSS_LIMIT_MB})")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    log = home.log_text()
    for word in LOG_MUST.get(name, ()):
        if word not in log:
            problems.append(f"the log does not say {word!r}: {log[-300:]!r}")
    return {"case": name, "size": len(data), "code": code, "seconds": round(took, 2),
            "peak_rss_mb": round(rss, 1), "mailbox": sorted({b for b, _ in stored}),
            "log": log.strip().splitlines()[-1:], "problems": problems}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--write")
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args(argv)
    if args.write:
        print("\n".join(write_corpus(args.write, args.small)))
        return 0
    home = Home()
    bad = 0
    try:
        for name in args.names or list(CASES):
            result = run_case(home, name)
            bad += bool(result["problems"])
            print(json.dumps(result), flush=True)
    finally:
        home.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
