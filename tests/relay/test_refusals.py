"""Every refusal of the relay: the exit code, and the stderr line naming the rule.

Each case runs the installed setuid-root relay and asserts that the engine never ran
(no report on stdout), the sysexits code, and "mailslot-relay: <rule>:" on stderr.
"""
import os
import shutil
import stat

import pytest

from tests.relay.relaytest import (ALICE, BOB, FAR, FARGID, INSIDER, MTA, OUTSIDER,
                                   assert_refused, report_of)


# --- who calls, and for whom -------------------------------------------------------

def test_caller_outside_the_group_is_refused(relay):
    assert_refused(relay.run(["-d", ALICE], user=OUTSIDER), 77, "caller-not-allowed")


def test_caller_outside_the_group_cannot_even_execute_it(relay):
    # Mode 4750 root:secmail: others cannot exec it at all; the policy is the second wall.
    mode = stat.S_IMODE(os.stat(relay.relay).st_mode)
    assert mode == 0o4750


@pytest.mark.parametrize("target, rule", [
    ("root", "target-root"),
    (FAR, "target-uid-range"),
    (FARGID, "target-gid-range"),
    (INSIDER, "target-caller-group"),
])
def test_targets_outside_the_policy_are_refused(relay, target, rule):
    assert_refused(relay.run(["-d", target]), 77, rule)


def test_unknown_user_is_67(relay):
    assert_refused(relay.run(["-d", "mslt-nobody-here"]), 67, "unknown-user")


def test_policy_range_may_not_name_uid_0(relay):
    relay.write_policy(target_uids="0-65000")
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-value")


# --- the policy file ---------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_writable_policy_is_refused(relay, mode):
    relay.write_policy(mode=mode)
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-unsafe")


def test_policy_not_owned_by_root_is_refused(relay):
    os.chown(relay.policy_path, relay.uid(MTA), 0)
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-unsafe")


def test_policy_swapped_for_a_symlink_is_refused(relay):
    target = relay.etc / "elsewhere.policy"
    shutil.copy(relay.policy_path, target)
    os.unlink(relay.policy_path)
    os.symlink(target, relay.policy_path)
    try:
        assert_refused(relay.run(["-d", ALICE]), 75, "policy-unsafe")
    finally:
        os.unlink(relay.policy_path)
        os.unlink(target)


def test_policy_in_a_writable_directory_is_refused(relay):
    os.chmod(relay.etc, 0o777)
    try:
        assert_refused(relay.run(["-d", ALICE]), 75, "policy-unsafe")
    finally:
        os.chmod(relay.etc, 0o755)


def test_missing_policy_is_refused(relay):
    os.unlink(relay.policy_path)
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-unsafe")


@pytest.mark.parametrize("extra, rule", [
    ("colour = blue\n", "policy-key"),
    ("resolver = ldap\n", "policy-key"),       # resolver given twice
    ("just words\n", "policy-syntax"),
])
def test_bad_policy_lines_are_refused(relay, extra, rule):
    relay.write_policy(relay.default_policy() + extra)
    assert_refused(relay.run(["-d", ALICE]), 75, rule)


def test_bad_policy_value_is_refused(relay):
    relay.write_policy(no_new_privs="maybe")
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-value")


def test_unknown_caller_group_is_refused(relay):
    relay.write_policy(caller_groups="mslt-no-such-group")
    assert_refused(relay.run(["-d", ALICE]), 75, "policy-group")


# --- the engine's programs ---------------------------------------------------------

def test_writable_entry_is_refused(relay):
    os.chmod(relay.entry, 0o666)
    try:
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        os.chmod(relay.entry, 0o644)


def test_entry_owned_by_a_user_is_refused(relay):
    os.chown(relay.entry, relay.uid(MTA), 0)
    try:
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        os.chown(relay.entry, 0, 0)


# --- argv ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, rule", [
    ([], 64, "usage"),                                   # no -d
    (["-d"], 64, "usage"),                               # -d without a value
    (["-d", ALICE, "extra"], 64, "usage"),               # a positional argument
    (["-d", ALICE, "-x"], 64, "usage"),                  # an unknown option
    (["-d", ALICE, "-d", BOB], 64, "usage"),             # two targets
    (["-d", "-c/etc/evil"], 64, "usage"),                # option injection via the user
    (["-d", "../root"], 64, "usage"),
    (["-d", ALICE, "-f", "-oX=1"], 64, "usage"),         # option injection via an address
    (["-d", ALICE, "-a", "x" * 300], 64, "usage"),       # RFC 5321 path limit
    (["-d", ALICE, "-f", "a\nb@c"], 64, "usage"),        # control characters
    (["-d", ALICE, "-c", "/etc/mailslot/other.yaml"], 77, "caller-config"),
    (["-d", ALICE, "-o", "mail_location=maildir:/tmp/x"], 77, "caller-config"),
    (["-d", ALICE, "-p", "/etc/shadow"], 77, "caller-mail-path"),
])
def test_bad_command_lines_are_refused(relay, args, code, rule):
    assert_refused(relay.run(args), code, rule)


def test_caller_config_allowed_by_policy_passes_through(relay):
    relay.write_policy(caller_config="yes")
    rep = report_of(relay.run(["-d", ALICE, "-c", "/etc/mailslot/x.yaml", "-o", "a=b"]))
    assert rep["argv"][1:] == ["-d", ALICE, "-c", "/etc/mailslot/x.yaml", "-o", "a=b"]


def test_relay_without_setuid_refuses(relay):
    copy = relay.bin / "mailslot-relay.nosuid"
    shutil.copy(relay.relay, copy)
    os.chmod(copy, 0o755)
    try:
        assert_refused(relay.run(["-d", ALICE], relay=copy), 75, "relay-not-root")
    finally:
        os.unlink(copy)
