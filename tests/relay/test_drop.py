"""The relay's promise: the engine runs as exactly the target, in a clean process.

Each test runs the installed setuid-root relay as the MTA's uid (a member of the
caller group) and reads the fixture engine's report of what it was handed.
"""
import grp
import os
import resource
import signal

import pytest

from tests.relay.relaytest import (ALICE, BOB, EXTRA, FARGROUP, PYTHON, SECMAIL,
                                   assert_refused, report_of)

ALLOWED_ENV = {"PATH", "HOME", "USER", "LOGNAME", "MAILSLOT_RELAY_USER", "MAILSLOT_RELAY_HOME",
               "MAILSLOT_RELAY_UID", "MAILSLOT_RELAY_GID", "MAILSLOT_RELAY_GROUPS"}


def test_engine_runs_as_target_with_exact_ids(relay):
    rep = report_of(relay.run(["-d", ALICE, "-f", "sender@example.org"]))
    uid, gid = relay.uid(ALICE), relay.gid(ALICE)
    assert rep["resuid"] == [uid, uid, uid]
    assert rep["resgid"] == [gid, gid, gid]
    # alice is also in EXTRA, which the policy does not name: the engine gets her
    # primary gid only.
    assert rep["groups"] == [gid]


def test_extra_groups_only_those_the_policy_names(relay):
    relay.write_policy(target_extra_groups=f"{EXTRA}, {FARGROUP}")
    rep = report_of(relay.run(["-d", ALICE]))
    # EXTRA is alice's and named; FARGROUP is named but not alice's: not given.
    assert rep["groups"] == sorted({relay.gid(ALICE), grp.getgrnam(EXTRA).gr_gid})
    assert rep["env"]["MAILSLOT_RELAY_GROUPS"] == \
        f"{relay.gid(ALICE)},{grp.getgrnam(EXTRA).gr_gid}"


@pytest.mark.parametrize("group, why", [
    (SECMAIL, "caller group"),
    ("mail", "mail group"),
    ("root", "gid 0"),
    ("mslt-no-such-group", "does not exist"),
])
def test_extra_groups_may_not_name_a_caller_mail_or_root_group(relay, group, why):
    relay.write_policy(target_extra_groups=group)
    proc = relay.run(["-d", ALICE])
    assert_refused(proc, 75, "policy-group")
    assert why in proc.stderr.decode()


def test_target_in_the_mail_group_is_deferred(relay):
    # The mail group as the target's primary gid (target_gids widened to it by
    # mistake): no Python code runs with it, and the mail waits (75).
    mail = grp.getgrnam("mail").gr_gid
    relay.passwd_file.write_text(f"mailer::60001:{mail}::{relay.homes}/mailer::\n")
    os.chmod(relay.passwd_file, 0o644)
    relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file),
                       target_gids=f"{mail},60001-60010")
    assert_refused(relay.run(["-d", "mailer"]), 75, "target-mail-group")


def test_engine_holds_no_secmail_and_no_root(relay):
    rep = report_of(relay.run(["-d", BOB]))
    secmail = grp.getgrnam(SECMAIL).gr_gid
    assert secmail not in rep["groups"]
    assert 0 not in rep["groups"] + rep["resuid"] + rep["resgid"]
    assert rep["groups"] == [relay.gid(BOB)]


def test_engine_holds_no_capabilities(relay):
    rep = report_of(relay.run(["-d", ALICE]))
    assert (rep["cap_eff"], rep["cap_prm"], rep["cap_inh"], rep["cap_amb"]) == (0, 0, 0, 0)


def test_engine_is_started_isolated_with_canonical_argv(relay):
    rep = report_of(relay.run(["-ek", "-dmslt-ralice", "-m", "", "-f", "", "-a", "a@b"]))
    assert rep["isolated"] == 1 and rep["no_site"] == 1
    assert os.path.realpath(rep["executable"]) == os.path.realpath(PYTHON)
    assert rep["argv"] == [str(relay.entry), "-d", ALICE, "-a", "a@b", "-f", "", "-m", "",
                           "-e", "-k"]


def test_message_reaches_engine_on_stdin(relay):
    rep = report_of(relay.run(["-d", ALICE], input=b"x" * 100000))
    assert rep["message_len"] == 100000


def test_engine_starts_in_home_with_umask_077(relay):
    rep = report_of(relay.run(["-d", ALICE]))
    assert rep["cwd"] == str(relay.homes / ALICE)
    assert rep["umask"] == 0o077


def test_missing_home_falls_back_to_root_dir(relay):
    # relay.passwd-style users without a home yet (a new virtual user): cwd is "/".
    relay.write_policy(resolver="passwd-file", passwd_file=str(relay.passwd_file))
    relay.passwd_file.write_text(f"newbie::60001:60001::{relay.homes}/newbie::\n")
    os.chmod(relay.passwd_file, 0o644)
    rep = report_of(relay.run(["-d", "newbie"]))
    assert rep["cwd"] == "/"
    assert rep["env"]["HOME"] == f"{relay.homes}/newbie"


def test_environment_is_exactly_the_allow_list(relay):
    rep = report_of(relay.run(["-d", ALICE]))
    assert set(rep["env"]) == ALLOWED_ENV
    env = rep["env"]
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["USER"] == env["LOGNAME"] == env["MAILSLOT_RELAY_USER"] == ALICE
    assert env["MAILSLOT_RELAY_UID"] == str(relay.uid(ALICE))
    assert env["MAILSLOT_RELAY_GID"] == str(relay.gid(ALICE))
    assert sorted(map(int, env["MAILSLOT_RELAY_GROUPS"].split(","))) == rep["groups"]


def test_inherited_fds_are_closed(relay):
    r, w = os.pipe()
    leak = os.open("/etc/hostname", os.O_RDONLY)
    try:
        rep = report_of(relay.run(["-d", ALICE], pass_fds=(r, w, leak)))
    finally:
        for fd in (r, w, leak):
            os.close(fd)
    # fd 3 may be the listdir handle of the fixture itself; nothing of ours survives.
    fds = {int(k): v for k, v in rep["fds"].items()}
    assert set(fds) - {0, 1, 2} <= {3}
    assert "/etc/hostname" not in fds.values()
    assert not any(v.startswith("pipe:") for k, v in fds.items() if k > 2)


def test_closed_stdio_is_reopened_on_dev_null(relay):
    def close_stderr():
        os.close(2)

    proc = relay.run(["-d", ALICE], preexec=close_stderr)
    rep = report_of(proc)
    assert rep["fds"]["2"] == "/dev/null"


def test_signal_state_and_core_limit_are_reset(relay):
    def hostile_state():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGUSR1})
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    rep = report_of(relay.run(["-d", ALICE], preexec=hostile_state))
    assert rep["sig_blocked"] == 0
    # Python itself ignores SIGPIPE and SIGXFSZ at start-up; the caller's SIG_IGN
    # for SIGTERM and SIGHUP must not have survived.
    caller_ignored = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGHUP - 1))
    assert rep["sig_ignored"] & caller_ignored == 0
    assert rep["core_limit"] == [0, 0]


def test_no_new_privs_only_when_the_policy_says_so(relay):
    assert report_of(relay.run(["-d", ALICE]))["no_new_privs"] == 0
    relay.write_policy(no_new_privs="yes")
    assert report_of(relay.run(["-d", ALICE]))["no_new_privs"] == 1


def test_rlimit_nproc_trick_never_leaves_a_half_drop(relay):
    # The classic attack: RLIMIT_NPROC makes setuid() fail and a relay that does not
    # check runs on as root. Here the drop is verified, so whatever the kernel does
    # (refuse the drop, refuse the exec, or allow both) the engine is never run with
    # anything but the target's ids.
    def no_processes():
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))

    proc = relay.run(["-d", ALICE], preexec=no_processes)
    if proc.returncode == 0:
        uid = relay.uid(ALICE)
        assert report_of(proc)["resuid"] == [uid, uid, uid]
    else:
        assert proc.returncode == 75, proc.stderr
        assert proc.stdout == b""


def test_rlimit_nofile_trick_fails_closed(relay):
    # Too few fds to walk to the policy file: the relay must refuse, not skip a check.
    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (4, 4))

    proc = relay.run(["-d", ALICE], preexec=few_fds)
    assert proc.returncode == 75, proc.stderr
    assert proc.stdout == b""
    assert b"mailslot-relay: policy-unsafe:" in proc.stderr
