"""Every refusal of the relay, one row each: its rule, its exit code, why that code.

REFUSALS below is the table the man page (mailslot-relay(8), REFUSALS) and
SECURITY.md ("Every refusal of the relay") print. The principle (issue: a
configuration mistake bounced mail for ever): 77 only for what the caller did wrong,
64 for a command line that is not one, 67 for a user that does not exist, and 75 for
everything else -- the administrator's mistakes (policy, userdb, ranges, install)
and the machine's state -- so that the MTA keeps the mail until it is fixed.

Each row is provoked against the real setuid-root relay (one test case per row), or
says why no test can reach it (a system call that cannot be made to fail from
outside). Two more tests keep the three copies in step: every rule the C sources can
print is a row, and the man page and SECURITY.md list exactly these rows and codes.
"""
import grp
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.relay.relaytest import (ALICE, FAR, FARGID, HELPER_C, LOOKUP, OUTSIDER,
                                   SECMAIL, assert_refused)

REPO = Path(__file__).resolve().parents[2]


def _passwd(relay, line, **policy):
    relay.passwd_file.write_text(line.format(home=relay.homes) + "\n")
    os.chmod(relay.passwd_file, 0o644)
    relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file), **policy)


def _lookup(relay, script, **policy):
    relay.lookup_entry.write_text(script)
    os.chmod(relay.lookup_entry, 0o644)
    relay.write_policy(resolver="lookup", lookup_user=LOOKUP,
                       lookup_entry=str(relay.lookup_entry), **policy)


def _limit(name, value):
    import resource

    def preexec():
        resource.setrlimit(getattr(resource, name), (value, value))
    return preexec


def _close_stdin():
    os.close(0)


# Each provoke(relay, tmp) returns the kwargs of relay.run (args, user, preexec, ...)
# after setting the stage; it may return a cleanup under "undo".
def p_usage(relay, tmp):
    return {"args": ["-d", ALICE, "positional"]}


def p_caller_config(relay, tmp):
    return {"args": ["-d", ALICE, "-o", "mail_location=mbox:~/x"]}


def p_caller_mail_path(relay, tmp):
    return {"args": ["-d", ALICE, "-p", "/etc/shadow"]}


def p_caller_not_allowed(relay, tmp):
    return {"args": ["-d", ALICE], "user": OUTSIDER}


def p_unknown_user(relay, tmp):
    return {"args": ["-d", "mslt-nobody-here"]}


def p_stdio(relay, tmp):
    return {"args": ["-d", ALICE], "preexec": _close_stdin}


def p_rlimit(relay, tmp):
    return {"args": ["-d", ALICE], "preexec": _limit("RLIMIT_STACK", 64 * 1024)}


def p_memory(relay, tmp):
    # A 40 MB passwd-file (under MS_PASSWD_MAX_BYTES) and 40 MB of address space:
    # its buffer cannot be allocated. Before, a static 64 MiB buffer crashed here.
    _passwd(relay, "v1::60001:60001::{home}/v1::")
    with open(relay.passwd_file, "a") as f:
        f.write(("#" + "x" * 1023 + "\n") * 40 * 1024)
    return {"args": ["-d", "v1"], "preexec": _limit("RLIMIT_AS", 40 * 1024 * 1024)}


def p_relay_not_root(relay, tmp):
    copy = relay.bin / "mailslot-relay.plain"
    shutil.copy(relay.relay, copy)
    os.chmod(copy, 0o755)
    return {"args": ["-d", ALICE], "relay": copy, "undo": lambda: os.unlink(copy)}


def p_policy_unsafe(relay, tmp):
    os.chmod(relay.policy_path, 0o666)
    return {"args": ["-d", ALICE]}


def p_policy_syntax(relay, tmp):
    relay.write_policy(relay.default_policy() + "just words\n")
    return {"args": ["-d", ALICE]}


def p_policy_key(relay, tmp):
    relay.write_policy(relay.default_policy() + "colour = blue\n")
    return {"args": ["-d", ALICE]}


def p_policy_value(relay, tmp):
    relay.write_policy(no_new_privs="maybe")
    return {"args": ["-d", ALICE]}


def p_policy_missing(relay, tmp):
    relay.write_policy(entry=None)
    return {"args": ["-d", ALICE]}


def p_policy_group(relay, tmp):
    relay.write_policy(target_extra_groups="mail")
    return {"args": ["-d", ALICE]}


def p_policy_lookup_user(relay, tmp):
    _lookup(relay, "")
    relay.write_policy(resolver="lookup", lookup_user="mslt-no-such-user",
                       lookup_entry=str(relay.lookup_entry))
    return {"args": ["-d", ALICE]}


def p_engine_unsafe(relay, tmp):
    os.chmod(relay.entry, 0o666)
    return {"args": ["-d", ALICE], "undo": lambda: os.chmod(relay.entry, 0o644)}


def p_passwd_file_unsafe(relay, tmp):
    _passwd(relay, "v1::60001:60001::{home}/v1::")
    os.chmod(relay.passwd_file, 0o646)
    return {"args": ["-d", "v1"]}


def p_passwd_file(relay, tmp):
    _passwd(relay, "v1::60001:60001::{home}/a::\nv1::60002:60002::{home}/b::")
    return {"args": ["-d", "v1"]}


def p_lookup(relay, tmp):
    _lookup(relay, "import sys\nsys.exit(3)\n")
    return {"args": ["-d", "anyone"]}


def p_lookup_answer(relay, tmp):
    _lookup(relay, 'print("OK uid=60001 gid=60001 home=/x")\n')
    return {"args": ["-d", "anyone"]}


def p_target_root(relay, tmp):
    return {"args": ["-d", "root"]}


def p_target_uid_range(relay, tmp):
    return {"args": ["-d", FAR]}


def p_target_gid_range(relay, tmp):
    return {"args": ["-d", FARGID]}


def p_target_caller_group(relay, tmp):
    secmail = grp.getgrnam(SECMAIL).gr_gid
    _passwd(relay, f"v1::60001:{secmail}::{{home}}/v1::", target_gids=f"{secmail},60001")
    return {"args": ["-d", "v1"]}


def p_target_mail_group(relay, tmp):
    mail = grp.getgrnam("mail").gr_gid
    _passwd(relay, f"v1::60001:{mail}::{{home}}/v1::", target_gids=f"{mail},60001")
    return {"args": ["-d", "v1"]}


def p_target_home(relay, tmp):
    # A home the target cannot enter (root's, 0700): the relay, already the target,
    # cannot chdir there.
    home = relay.homes / "locked"
    home.mkdir(mode=0o700, exist_ok=True)
    _passwd(relay, "v1::60001:60001::{home}/locked::")
    return {"args": ["-d", "v1"], "undo": lambda: home.rmdir()}


def p_environment(relay, tmp):
    # 32 passed variables of 1000 bytes: more than the engine's environment holds.
    names = [f"MSLT_VAR{i}" for i in range(32)]
    relay.write_policy(pass_env=", ".join(names))
    env = {"PATH": "/usr/bin:/bin", **{n: "v" * 1000 for n in names}}
    return {"args": ["-d", ALICE], "env": env}


def p_exec(relay, tmp):
    # An interpreter that is root's and safe, but not executable by the target: the
    # relay, already the target, gets EACCES from execve and says so.
    interp = relay.bin / "not-for-others"
    shutil.copy("/usr/bin/true", interp)
    os.chmod(interp, 0o744)
    relay.write_policy(interpreter=str(interp))
    return {"args": ["-d", ALICE], "undo": lambda: os.unlink(interp)}


def p_target_groups(relay, tmp):
    # A user in 65 groups (MS_MAX_TARGET_GROUPS is 64): NSS's list does not fit.
    import subprocess
    user, groups = "mslt-rmany", [f"mslt-rg{i}" for i in range(65)]

    def undo():
        subprocess.run(["userdel", "-f", user], capture_output=True)
        for g in groups + [user]:
            subprocess.run(["groupdel", g], capture_output=True)
    undo()
    try:
        for g in groups:
            subprocess.run(["groupadd", "-r", g], check=True, capture_output=True)
        subprocess.run(["useradd", "-r", "-M", "-U", "-s", "/usr/sbin/nologin", "-d",
                        str(relay.homes / user), "-G", ",".join(groups), user],
                       check=True, capture_output=True)
    except BaseException:
        undo()
        raise
    import pwd
    entry = pwd.getpwnam(user)
    relay.write_policy(target_uids=str(entry.pw_uid), target_gids=str(entry.pw_gid))
    return {"args": ["-d", user], "undo": undo}


# rule, exit code, when, provoke (a function, or the reason no test reaches it).
REFUSALS = [
    ("usage", 64, "the arguments are not a dovecot-lda command line the relay accepts",
     p_usage),
    ("unknown-user", 67, "-d names no user (NSS, passwd-file, the lookup child's exit "
     "67), or username_format makes no valid name of it", p_unknown_user),
    ("caller-not-allowed", 77, "the caller holds no caller group", p_caller_not_allowed),
    ("caller-config", 77, "-c or -o without caller_config = yes", p_caller_config),
    ("caller-mail-path", 77, "-p without caller_mail_path = yes", p_caller_mail_path),
    ("stdio", 75, "fd 0 is closed or not readable: there is no message", p_stdio),
    ("rlimit", 75, "the caller's RLIMIT_STACK, RLIMIT_AS or RLIMIT_DATA is below the "
     "relay's floor", p_rlimit),
    ("memory", 75, "a buffer cannot be allocated (the caller's memory limits)", p_memory),
    ("signals", 75, "signals cannot be blocked or reset",
     "sigprocmask/sigaction cannot be made to fail from outside"),
    ("dumpable", 75, "the process cannot be made non-dumpable",
     "prctl(PR_SET_DUMPABLE) cannot be made to fail from outside"),
    ("caller-ids", 75, "the caller's groups cannot be read",
     "getgroups cannot be made to fail from outside"),
    ("relay-not-root", 75, "the relay is not installed setuid root", p_relay_not_root),
    ("policy-unsafe", 75, "the policy is missing, a symlink, not root's, writable by "
     "others, in a directory others can write, or too large", p_policy_unsafe),
    ("policy-syntax", 75, "a policy line is not key = value, too long, or not ASCII",
     p_policy_syntax),
    ("policy-key", 75, "an unknown or repeated policy key", p_policy_key),
    ("policy-value", 75, "a bad policy value", p_policy_value),
    ("policy-missing", 75, "a required policy key is missing", p_policy_missing),
    ("policy-group", 75, "a caller or extra group does not exist, is gid 0, or an extra "
     "group is the mail group or a caller group", p_policy_group),
    ("policy-lookup-user", 75, "lookup_user does not exist or is root",
     p_policy_lookup_user),
    ("engine-unsafe", 75, "the interpreter, an entry or the engine's package tree could "
     "be changed by someone other than root", p_engine_unsafe),
    ("userdb", 75, "NSS failed (not: the user does not exist)",
     "needs a failing NSS service in nsswitch.conf"),
    ("passwd-file-unsafe", 75, "the passwd-file could be changed by someone other than "
     "root, or is too large", p_passwd_file_unsafe),
    ("passwd-file", 75, "the user's passwd-file line is malformed or listed twice",
     p_passwd_file),
    ("lookup", 75, "the lookup child failed or did not answer in 30 s", p_lookup),
    ("lookup-answer", 75, "the lookup child's answer is not one valid line",
     p_lookup_answer),
    ("target-root", 75, "the target's uid, gid or a group is 0", p_target_root),
    ("target-uid-range", 75, "the target's uid is outside target_uids", p_target_uid_range),
    ("target-gid-range", 75, "the target's gid is outside target_gids", p_target_gid_range),
    ("target-caller-group", 75, "the target's gid is a caller group",
     p_target_caller_group),
    ("target-mail-group", 75, "the target's gid is the mail group", p_target_mail_group),
    ("target-groups", 75, "the target is in more groups than the relay handles (64)",
     p_target_groups),
    ("target-home", 75, "the target's home is not an absolute path, too long, or "
     "exists and cannot be entered", p_target_home),
    ("environment", 75, "the engine's environment does not fit the relay's bounds",
     p_environment),
    ("engine-argv", 75, "the engine's command line does not fit",
     "unreachable: its array is sized for the longest command line ms_args_parse "
     "accepts"),
    ("drop", 75, "setgroups, setresgid, setresuid or no_new_privs failed",
     "these calls cannot be made to fail from outside for root"),
    ("drop-verify", 75, "after the drop an id, a group or a capability is not as set, or "
     "root could be regained", "needs a kernel that lies about the drop"),
    ("exec", 75, "the engine cannot be executed", p_exec),
]

ROWS = {rule: (code, why, provoke) for rule, code, why, provoke in REFUSALS}


@pytest.mark.parametrize("rule", [r[0] for r in REFUSALS])
def test_each_refusal(relay, tmp_path, rule):
    code, _, provoke = ROWS[rule]
    if isinstance(provoke, str):
        pytest.skip(f"not provoked: {provoke}")
    kwargs = provoke(relay, tmp_path)
    undo = kwargs.pop("undo", None)
    try:
        proc = relay.run(**kwargs)
    finally:
        if undo:
            undo()
    assert_refused(proc, code, rule)


def _rules_in_the_sources():
    """Every rule a refusal of the relay can name, from the C sources: the first word
    of ms_refuse and ms_set_err formats (the rule files' errors reach ms_refuse)."""
    rules = set()
    files = ["mailslot-relay.c", "hygiene.c", "trusted.c"] + \
        [p.name for p in HELPER_C.glob("relay_*.c")]
    for name in files:
        text = (HELPER_C / name).read_text()
        rules |= set(re.findall(r'(?:ms_refuse\([^,]+,|ms_set_err\(err, errlen,)\s*"([a-z-]+):',
                                text))
    return rules


def test_every_rule_of_the_sources_is_a_row():
    assert _rules_in_the_sources() == set(ROWS)


def test_man_page_and_security_md_print_this_table():
    man = (REPO / "docs" / "man" / "mailslot-relay.8").read_text()
    section = man.split(".SH REFUSALS", 1)[1].split("\n.SH ", 1)[0]
    in_man = {m[0].replace("\\-", "-"): int(m[1])
              for m in re.findall(r'^\.BR "?([a-z\\-]+)"? " \((\d+)\)"$', section, re.M)}
    assert in_man == {rule: code for rule, (code, _, _) in ROWS.items()}
    sec = (REPO / "SECURITY.md").read_text()
    table = sec.split("## Every refusal of the relay", 1)[1].split("\n## ", 1)[0]
    in_sec = {m[0]: int(m[1]) for m in re.findall(r"^\| `([a-z-]+)` \| (\d+) \|", table, re.M)}
    assert in_sec == {rule: code for rule, (code, _, _) in ROWS.items()}
