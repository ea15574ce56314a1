"""A private, unprivileged Dovecot for tests and benchmarks: no daemon, no system config.

    env = DovecotEnv.create(mail_location="maildir:~/Maildir")
    try:
        env.lda(b"Subject: hi\\n\\nbody\\n")                # /usr/lib/dovecot/dovecot-lda
        rows = env.fetch("uid mailbox guid")               # doveadm fetch, parsed
        env.run_python("from mailslot.storage import open_storage ...")
    finally:
        env.cleanup()

create() makes a fresh directory under /tmp (traversable by the test user, since
pytest's own tmp dirs are private to root) holding:
    dovecot.conf   base_dir/state_dir/log_path in the directory, ssl = no, the
                   given mail_location, an inbox namespace (prefix, separator), a
                   passwd-file passdb/userdb naming the test user
    passwd         that user: uid/gid of the test user, home below
    home/          the user's home, owned by the test user
    dovecot.log    Dovecot's log (log_problems() returns its errors/warnings)

Every Dovecot program runs as the test user, never as root: as root we switch
with `setpriv --reuid --regid --clear-groups` to TEST_UID (no passwd entry
needed); as anyone else we stay ourselves. The environment is cleared to USER,
HOME and PATH: that is how dovecot-lda (without -d) and doveadm (without -u) find
their user without a userdb lookup, which would need the auth daemon. So
`dovecot-lda -c <conf>` and `doveadm -c <conf> <cmd>` read and write the
configured mail_location as that user with nothing else running.

Skip tests with dovecot_missing(), which names what is not installed.
"""

import os
import shutil
import subprocess
import sys
import tempfile

DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
# The unprivileged identity used when the tests run as root (no passwd entry needed).
TEST_UID = 64123
TEST_GID = 64123
TEST_USER = "mstest"
PYSIDE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyside")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# Dovecot's log lines that mean something went wrong.
PROBLEM_MARKERS = (": Error:", ": Warning:", ": Fatal:", ": Panic:")


def dovecot_missing():
    """None if Dovecot's binaries are installed, else a reason to skip."""
    for path in (DOVECOT_LDA, DOVECOT_IMAP, DOVEADM):
        if not os.access(path, os.X_OK):
            return (f"Dovecot is not installed ({path} missing): "
                    "apt-get install dovecot-core dovecot-imapd")
    if os.getuid() == 0 and not os.access(SETPRIV, os.X_OK):
        return "setpriv (util-linux) is needed to run Dovecot unprivileged"
    return None


def _conf_text(base, *, mail_location, prefix, separator, extra):
    ns_lines = ["  inbox = yes"]
    if separator:
        ns_lines.append(f"  separator = {separator}")
    if prefix:
        ns_lines.append(f"  prefix = {prefix}")
    extra_lines = "".join(f"{k} = {v}\n" for k, v in (extra or {}).items())
    return (
        f"# Private test configuration written by tests/dovecot_env.py\n"
        f"base_dir = {base}/run\n"
        f"state_dir = {base}/run/state\n"
        f"log_path = {base}/dovecot.log\n"
        f"info_log_path = {base}/dovecot.log\n"
        f"debug_log_path = {base}/dovecot.log\n"
        f"ssl = no\n"
        f"protocols = imap\n"
        f"first_valid_uid = 1\n"
        f"first_valid_gid = 1\n"
        f"mail_location = {mail_location}\n"
        f"passdb {{\n  driver = passwd-file\n  args = {base}/passwd\n}}\n"
        f"userdb {{\n  driver = passwd-file\n  args = {base}/passwd\n}}\n"
        f"namespace inbox {{\n" + "\n".join(ns_lines) + "\n}\n"
        + extra_lines
    )


class DovecotEnv:
    """One private Dovecot configuration and the user it runs as."""

    def __init__(self, base, *, mail_location, user, uid, gid, prefix, separator):
        self.base = base
        self.home = os.path.join(base, "home")
        self.conf = os.path.join(base, "dovecot.conf")
        self.log_path = os.path.join(base, "dovecot.log")
        self.mail_location = mail_location
        self.user, self.uid, self.gid = user, uid, gid
        self.prefix, self.separator = prefix, separator

    @classmethod
    def create(cls, *, mail_location="maildir:~/Maildir", prefix="", separator=None,
               uid=None, gid=None, user=TEST_USER, extra_settings=None, parent=None):
        """Make the directory, config, passwd-file and home; return the env."""
        if uid is None:
            uid = TEST_UID if os.getuid() == 0 else os.getuid()
        if gid is None:
            gid = TEST_GID if os.getuid() == 0 else os.getgid()
        base = tempfile.mkdtemp(prefix="mailslot-dovecot-", dir=parent or "/tmp")
        os.chmod(base, 0o755)
        env = cls(base, mail_location=mail_location, user=user, uid=uid, gid=gid,
                  prefix=prefix, separator=separator)
        with open(env.conf, "w") as f:
            f.write(_conf_text(base, mail_location=mail_location, prefix=prefix,
                               separator=separator, extra=extra_settings))
        with open(os.path.join(base, "passwd"), "w") as f:
            f.write(f"{user}:{{PLAIN}}test:{uid}:{gid}::{env.home}::\n")
        for path in (env.home, os.path.join(base, "run")):
            os.mkdir(path, 0o755)
        open(env.log_path, "a").close()
        for path in (env.home, os.path.join(base, "run"), env.log_path):
            env.give(path)
        for path in (env.conf, os.path.join(base, "passwd")):
            os.chmod(path, 0o644)
        return env

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # --- running things as the test user --------------------------------------------

    def give(self, path):
        """Hand a path (recursively) to the test user; a no-op when not root."""
        if os.getuid() != 0:
            return
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), self.uid, self.gid,
                             follow_symlinks=False)

    def user_argv(self, argv, env=None):
        """argv wrapped to run as the test user with a clean environment."""
        variables = {"USER": self.user, "HOME": self.home, "PATH": SAFE_PATH}
        variables.update(env or {})
        prefix = []
        if os.getuid() == 0:
            prefix = [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        return prefix + ["env", "-i"] + [f"{k}={v}" for k, v in variables.items()] + list(argv)

    def run(self, argv, *, input=None, check=True, env=None, timeout=120):
        """Run argv as the test user; return the CompletedProcess (bytes)."""
        proc = subprocess.run(self.user_argv(argv, env), input=input, capture_output=True,
                              timeout=timeout, cwd=self.base)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{argv[0]} exited {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')}"
                f"\nstderr: {proc.stderr.decode(errors='replace')}\nlog:\n{self.read_log()}")
        return proc

    def run_python(self, code, *args, input=None, check=True):
        """Run Python code as the test user with mailslot's package importable."""
        prelude = f"import sys; sys.path.insert(0, {PYSIDE!r})\n"
        return self.run(["/usr/bin/python3", "-I", "-c", prelude + code, *args],
                        input=input, check=check)

    def run_python_file(self, path, *args, input=None, check=True):
        """Run a Python file as __main__ as the test user, with mailslot importable."""
        code = (f"sys.argv = [{path!r}] + sys.argv[1:]\n"
                f"import runpy; runpy.run_path({path!r}, run_name='__main__')\n")
        return self.run_python(code, *args, input=input, check=check)

    # --- Dovecot's programs ---------------------------------------------------------

    def doveadm(self, *args, input=None, check=True):
        return self.run([DOVEADM, "-c", self.conf, *args], input=input, check=check)

    def doveadm_rows(self, *args):
        """doveadm -f tab output as a list of dicts (first line is the header)."""
        out = self.doveadm("-f", "tab", *args).stdout.decode("utf-8")
        lines = [line for line in out.split("\n") if line != ""]
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def fetch(self, fields="uid mailbox guid", query="ALL"):
        """doveadm fetch: one dict per message, in all mailboxes by default."""
        return self.doveadm_rows("fetch", fields, *query.split())

    def lda(self, message, *args, check=True):
        """Deliver message (bytes) with dovecot-lda as the test user."""
        return self.run([DOVECOT_LDA, "-c", self.conf, *args], input=message, check=check)

    def imap(self, commands):
        """A pre-authenticated IMAP session (Dovecot's imap binary on stdin/stdout).

        commands: a list of lines without tags; returns the server's output.
        """
        script = "".join(f"t{i} {c}\r\n" for i, c in enumerate(commands)) + "tz LOGOUT\r\n"
        return self.run([DOVECOT_IMAP, "-c", self.conf],
                        input=script.encode("utf-8")).stdout.decode("utf-8", "replace")

    # --- the log ------------------------------------------------------------------

    def read_log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_problems(self):
        """Lines of Dovecot's log that are errors, warnings, fatals or panics."""
        return [line for line in self.read_log().splitlines()
                if any(marker in line for marker in PROBLEM_MARKERS)]


if __name__ == "__main__":
    # Manual use: python3 tests/dovecot_env.py [mail_location] -- prints the config.
    reason = dovecot_missing()
    if reason:
        sys.exit(reason)
    e = DovecotEnv.create(mail_location=sys.argv[1] if len(sys.argv) > 1 else "maildir:~/Maildir")
    print(e.base)
    print(open(e.conf).read())
