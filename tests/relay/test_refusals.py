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
    # Mode 4750 root:secmail: the kernel refuses the exec itself. Through a shell:
    # setpriv keeps root's capabilities until its own exec (it would exec anything),
    # so the relay must be exec'd by a process that already is the outsider.
    assert stat.S_IMODE(os.stat(relay.relay).st_mode) == 0o4750
    proc = relay.run(["-d", ALICE], user=OUTSIDER, via_shell=True)
    assert proc.returncode == 126, proc.stderr
    assert b"Permission denied" in proc.stderr
    assert b"caller-not-allowed" not in proc.stderr   # the relay never ran
    # The same shell as a caller in the group does run it (the test can fail).
    assert report_of(relay.run(["-d", ALICE], via_shell=True))["resuid"][0] == \
        relay.uid(ALICE)


@pytest.mark.parametrize("target, rule", [
    ("root", "target-root"),
    (FAR, "target-uid-range"),
    (FARGID, "target-gid-range"),
])
def test_targets_outside_the_policy_are_deferred(relay, target, rule):
    # The policy (or the userdb) is wrong, not the caller: 75, the mail waits for
    # the administrator instead of bouncing (dovecot-lda's first_valid_uid does so).
    assert_refused(relay.run(["-d", target]), 75, rule)


def test_target_keeps_no_caller_group_in_the_engine(relay):
    # INSIDER is in the caller group as a supplementary group: the engine gets its
    # primary gid only, so it could not run the relay itself.
    rep = report_of(relay.run(["-d", INSIDER]))
    assert rep["groups"] == [relay.gid(INSIDER)]


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


# --- symlinks on the engine's paths (walked as written, no realpath) -------------------

def test_roots_symlink_in_a_root_only_directory_is_followed(relay):
    # Debian's /usr/bin/python3 -> python3.11 is such a link; here the entry too.
    link = relay.entry.parent / "engine-link.py"
    os.symlink(relay.entry.name, link)
    try:
        relay.write_policy(entry=str(link))
        rep = report_of(relay.run(["-d", ALICE]))
        assert rep["argv"][0] == str(link)       # exec'd as written, not resolved
    finally:
        os.unlink(link)


def test_symlink_in_a_directory_a_user_owns_is_refused(relay):
    # The link is root's, but the directory holding it is the MTA user's: they could
    # point it anywhere. realpath() first used to accept it.
    userdir = relay.base / "userlinks"
    userdir.mkdir(mode=0o755)
    os.symlink(relay.entry, userdir / "engine.py")
    os.chown(userdir, relay.uid(MTA), 0)
    try:
        relay.write_policy(entry=str(userdir / "engine.py"))
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        shutil.rmtree(userdir)


def test_users_symlink_in_a_root_directory_is_refused(relay):
    link = relay.entry.parent / "engine-link.py"
    os.symlink(relay.entry.name, link)
    os.lchown(link, relay.uid(MTA), -1)
    try:
        relay.write_policy(entry=str(link))
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        os.unlink(link)


def test_symlink_in_a_sticky_directory_is_refused(relay):
    # /tmp is root's and sticky: anyone may add a name there, so no link in it is
    # followed, even root's.
    link = relay.base.parent / f"mslt-relay-link-{os.getpid()}"
    os.symlink(relay.entry, link)
    try:
        relay.write_policy(interpreter=str(link))
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        os.unlink(link)


def test_symlinked_interpreter_directory_of_a_user_is_refused(relay):
    # A directory on the interpreter's path that is a symlink a user controls.
    userdir = relay.base / "userbin"
    userdir.mkdir(mode=0o755)
    os.chown(userdir, relay.uid(MTA), 0)
    link = relay.bin / "py"
    os.symlink(userdir, link)
    try:
        relay.write_policy(interpreter=f"{link}/../../../usr/bin/python3")
        assert_refused(relay.run(["-d", ALICE]), 75, "policy-value")   # no ".." at all
        relay.write_policy(interpreter=str(link / "python3"))
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
    finally:
        os.unlink(link)
        shutil.rmtree(userdir)


# --- the engine's package tree ------------------------------------------------------

def _tree_change(relay, change):
    """Apply one hostile change to the tree; return a function that undoes it."""
    pkg = relay.tree / "fixturepkg"
    cache = pkg / "__pycache__"
    pyc = next(cache.iterdir())
    if change == "module-of-a-user":
        os.chown(pkg / "__init__.py", relay.uid(MTA), 0)
        return lambda: os.chown(pkg / "__init__.py", 0, 0)
    if change == "module-group-writable":
        os.chmod(pkg / "__init__.py", 0o664)
        return lambda: os.chmod(pkg / "__init__.py", 0o644)
    if change == "pycache-of-a-user":
        os.chown(cache, relay.uid(MTA), 0)
        return lambda: os.chown(cache, 0, 0)
    if change == "pyc-world-writable":
        os.chmod(pyc, 0o646)
        return lambda: os.chmod(pyc, 0o644)
    if change == "package-dir-sticky-world-writable":
        os.chmod(pkg, 0o1777)
        return lambda: os.chmod(pkg, 0o755)
    if change == "tree-root-of-a-user":
        os.chown(relay.tree, relay.uid(MTA), 0)
        return lambda: os.chown(relay.tree, 0, 0)
    if change == "symlink-in-the-tree":
        os.symlink("/etc/hostname", pkg / "linked.py")
        return lambda: os.unlink(pkg / "linked.py")
    if change == "fifo-in-the-tree":
        os.mkfifo(pkg / "pipe.py", 0o644)
        return lambda: os.unlink(pkg / "pipe.py")
    if change == "tree-missing":
        os.rename(relay.tree, relay.tree.with_name("python.away"))
        return lambda: os.rename(relay.tree.with_name("python.away"), relay.tree)
    raise AssertionError(change)


@pytest.mark.parametrize("change", [
    "module-of-a-user", "module-group-writable", "pycache-of-a-user",
    "pyc-world-writable", "package-dir-sticky-world-writable", "tree-root-of-a-user",
    "symlink-in-the-tree", "fifo-in-the-tree", "tree-missing",
])
def test_engine_tree_anyone_but_root_could_change_is_refused(relay, change):
    assert report_of(relay.run(["-d", ALICE]))          # the tree as installed passes
    undo = _tree_change(relay, change)
    try:
        proc = relay.run(["-d", ALICE])
        assert_refused(proc, 75, "engine-unsafe")
        assert f"engine tree {relay.tree}".encode() in proc.stderr
    finally:
        undo()


def test_engine_tree_named_by_the_policy_is_the_one_checked(relay):
    other = relay.base / "othertree"
    other.mkdir(mode=0o755)
    (other / "m.py").write_text("")
    os.chown(other / "m.py", relay.uid(MTA), 0)
    try:
        relay.write_policy(engine_tree=str(other))
        assert_refused(relay.run(["-d", ALICE]), 75, "engine-unsafe")
        os.chown(other / "m.py", 0, 0)
        assert report_of(relay.run(["-d", ALICE]))
    finally:
        shutil.rmtree(other)


def test_symlinks_with_dotdot_and_merged_usr_are_walked(relay):
    # /bin -> usr/bin (merged /usr) then /usr/bin/python3 -> python3.X: both root's in
    # root-only directories; and an entry link whose text climbs with "..".
    if not os.path.islink("/bin"):
        pytest.skip("/bin is not a symlink here")
    link = relay.entry.parent / "up-link.py"
    os.symlink(f"../{relay.entry.parent.name}/{relay.entry.name}", link)
    try:
        relay.write_policy(interpreter="/bin/python3", entry=str(link))
        rep = report_of(relay.run(["-d", ALICE]))
        assert rep["argv"][0] == str(link)
    finally:
        os.unlink(link)
