"""Shared pieces of the relay tests: account names, the installed copy, helpers.

The relay is tested as the real setuid-root binary: a copy built with its policy path
pointing into a temp dir (-DMAILSLOT_POLICY_PATH), installed there root:<secmail>
4750, and run as other uids through setpriv. The accounts are real (groupadd/useradd
-r, names mslt-r*), made once per session and removed at its end. Everything needs
root; elsewhere the tests skip and say why.
"""
import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
# MAILSLOT_HELPER_C: build another copy of the sources (e.g. an older commit, to see
# a test fail without its fix).
HELPER_C = Path(os.environ.get("MAILSLOT_HELPER_C", REPO / "helper_c"))
HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3"

SECMAIL = "mslt-rsecmail"          # the caller group
EXTRA = "mslt-rextra"              # a supplementary group of alice
FARGROUP = "mslt-rfargrp"          # a group outside target_gids
MTA = "mslt-rmta"                  # a caller: member of SECMAIL
OUTSIDER = "mslt-rout"             # not a member of SECMAIL
ALICE = "mslt-ralice"              # a target, in range, with a supplementary group
BOB = "mslt-rbob"                  # a target, in range
FAR = "mslt-rfar"                  # uid outside target_uids
FARGID = "mslt-rfargid"            # uid inside, primary gid outside target_gids
INSIDER = "mslt-rinsider"          # uid inside, but a member of SECMAIL
LOOKUP = "mslt-rlookup"            # the lookup child's user
GROUPS = [SECMAIL, EXTRA, FARGROUP]
USERS = [MTA, OUTSIDER, ALICE, BOB, FAR, FARGID, INSIDER, LOOKUP]


def _run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _remove_accounts():
    for user in USERS:
        subprocess.run(["userdel", "-f", user], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    for group in GROUPS + USERS:
        subprocess.run(["groupdel", group], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)




def remove_accounts():
    _remove_accounts()


class RelayInstall:
    """A built and installed test copy of the relay, and its policy file."""

    def __init__(self, base, accounts):
        self.base = base
        self.accounts = accounts
        self.etc = base / "etc"
        self.policy_path = self.etc / "relay.policy"
        self.passwd_file = self.etc / "users.passwd"
        self.build = base / "build"
        self.bin = base / "bin"
        self.relay = self.bin / "mailslot-relay"
        self.entry = base / "lib" / "fixture_engine.py"
        self.lookup_entry = base / "lib" / "fixture_lookup.py"
        self.homes = base / "home"
        # The package tree the relay checks beside the entry (engine_tree's default),
        # laid out as `make install` lays out the engine's: a package, byte-compiled.
        self.tree = base / "lib" / "python"

    def make_engine_tree(self):
        pkg = self.tree / "fixturepkg"
        pkg.mkdir(parents=True, mode=0o755)
        (pkg / "__init__.py").write_text("VALUE = 1\n")
        os.chmod(pkg / "__init__.py", 0o644)
        subprocess.run([PYTHON, "-m", "compileall", "-q", str(pkg)], check=True)
        for path in [self.tree] + list(self.tree.rglob("*")):
            os.chown(path, 0, 0)
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def uid(self, name):
        return self.accounts[name].pw_uid

    def gid(self, name):
        return self.accounts[name].pw_gid

    def default_policy(self, **overrides):
        """The policy text most tests use; overrides replace or add keys."""
        a = self.accounts
        keys = {
            "caller_groups": SECMAIL,
            "target_uids": ",".join(str(a[u].pw_uid) for u in (ALICE, BOB, FARGID, INSIDER))
            + ",60001-60010",
            "target_gids": ",".join(str(a[u].pw_gid) for u in (ALICE, BOB, INSIDER))
            + ",60001-60010",
            "interpreter": PYTHON,
            "entry": str(self.entry),
            "resolver": "nss",
        }
        keys.update(overrides)
        lines = ["# mailslot-relay test policy"]
        lines += [f"{k} = {v}" for k, v in keys.items() if v is not None]
        return "\n".join(lines) + "\n"

    def write_policy(self, text=None, mode=0o644, **overrides):
        if text is None:
            text = self.default_policy(**overrides)
        tmp = self.etc / ".policy.tmp"
        tmp.write_text(text)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, mode)
        os.replace(tmp, self.policy_path)

    def run(self, args, user=MTA, env=None, input=b"Subject: t\n\nbody\n", preexec=None,
            pass_fds=(), relay=None, prefix=(), via_shell=False):
        """Run the relay as user (via setpriv); returns CompletedProcess. via_shell:
        setpriv execs a shell that execs the relay, so the exec is made by a process
        that holds the user's ids and no capability (setpriv's own exec is root's)."""
        cmd = list(prefix)
        if user is not None:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={self.gid(user)}", "--init-groups"]
        if via_shell:
            cmd += ["sh", "-c", 'exec "$@"', "relay"]
        cmd += [str(relay or self.relay)] + list(args)
        return subprocess.run(cmd, input=input, capture_output=True, timeout=120,
                              env=env if env is not None else {"PATH": "/usr/bin:/bin"},
                              preexec_fn=preexec, pass_fds=pass_fds)


def report_of(proc):
    """The fixture engine's JSON report from a finished relay run."""
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode(errors="replace"))
    return json.loads(proc.stdout)


def assert_refused(proc, code, rule, program="mailslot-relay"):
    """The run was refused with code, naming rule on stderr; nothing was exec'd."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, err
    assert proc.stdout == b"", "the engine must not have run"
    assert f"{program}: {rule}:" in err, err
