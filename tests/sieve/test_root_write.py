"""Root-run `mailslot sievec` / `sieve-test` never write where another user steers
them (issue 20.7).

The attack: root compiles a script under a directory a user owns; between the
compile and the write the user swaps a symlinked directory on the path to a
directory only root may write, and root's .msbin lands there. The swap is made
deterministic with cache_write's test hook, which runs right after the compile,
before the writer looks at the target path. Each tool runs as root in a fresh
interpreter (the writer changes its effective ids).
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO, free_uid, needs_root, world_tempdir

pytestmark = needs_root

TOOL = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from mailslot.sieve import cache_write
from mailslot.sieve.tool import sieve_test_main, sievec_main
link, target = sys.argv[2], sys.argv[3]
if link:
    def swap(path):
        os.unlink(link)
        os.symlink(target, link)
    cache_write._HOOKS["before_write"] = swap
main = sievec_main if sys.argv[4] == "sievec" else sieve_test_main
sys.exit(main(sys.argv[5:]))
"""


def tool(name, args, swap=("", "")):
    return subprocess.run(
        [sys.executable, "-I", "-c", TOOL, os.path.join(REPO, "pyside"), swap[0],
         swap[1], name] + list(args), capture_output=True, text=True, timeout=60)


@pytest.fixture
def tree():
    """base/user (a user's, with link -> real holding s.sieve), base/rootonly."""
    base = world_tempdir("mslt-sieve-rootw-")
    uid = free_uid(4400)
    user = os.path.join(base, "user")
    real = os.path.join(user, "real")
    rootonly = os.path.join(base, "rootonly")
    os.mkdir(user, 0o755)
    os.mkdir(real, 0o755)
    os.mkdir(rootonly, 0o700)
    script = os.path.join(real, "s.sieve")
    with open(script, "w") as f:
        f.write('require "fileinto";\nfileinto "A";\n')
    for path in (user, real, script):
        os.chown(path, uid, uid)
    os.symlink(real, os.path.join(user, "link"))
    os.lchown(os.path.join(user, "link"), uid, uid)
    msg = os.path.join(base, "msg.eml")
    with open(msg, "w") as f:
        f.write("From: a@example.org\nSubject: x\n\nbody\n")
    yield base, uid, user, rootonly, msg
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("which", ["sievec", "sieve-test"])
def test_swapped_symlink_does_not_steer_roots_write(tree, which):
    base, uid, user, rootonly, msg = tree
    link = os.path.join(user, "link")
    script = os.path.join(link, "s.sieve")
    args = [script] if which == "sievec" else [script, msg]
    proc = tool(which, args, swap=(link, rootonly))
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(link) == rootonly          # the swap happened
    assert os.listdir(rootonly) == [], os.listdir(rootonly)
    if which == "sievec":
        assert "Warning: cannot write compiled script" in proc.stderr
        assert "Permission denied" in proc.stderr


def test_users_directory_is_written_as_the_user(tree):
    base, uid, user, rootonly, msg = tree
    proc = tool("sievec", [os.path.join(user, "link", "s.sieve")])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    st = os.stat(os.path.join(user, "real", "s.msbin"))
    assert st.st_uid == uid


def test_root_only_path_follows_roots_own_symlink(tree):
    base = tree[0]
    adm = os.path.join(base, "adm")
    os.mkdir(adm, 0o755)
    os.mkdir(os.path.join(adm, "v1"), 0o755)
    os.symlink("v1", os.path.join(adm, "cur"))
    script = os.path.join(adm, "cur", "before.sieve")
    with open(script, "w") as f:
        f.write("keep;\n")
    os.chmod(script, 0o644)
    proc = tool("sievec", [script])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    st = os.stat(os.path.join(adm, "v1", "before.msbin"))
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o644


@pytest.mark.parametrize("mode", [0o775, 0o757])
@pytest.mark.parametrize("where", ["ancestor", "directory"])
def test_group_or_world_writable_directory_is_refused(tree, mode, where):
    base = tree[0]
    shared = os.path.join(base, "shared")
    os.mkdir(shared)
    os.chmod(shared, mode)
    target = shared
    if where == "ancestor":        # shared/sub is root's, but shared is not
        target = os.path.join(shared, "sub")
        os.mkdir(target, 0o755)
    script = os.path.join(target, "s.sieve")
    with open(script, "w") as f:
        f.write("keep;\n")
    proc = tool("sievec", [script])
    assert proc.returncode == 0
    if where == "ancestor":        # the walk from / refuses it
        assert "writable by its group or by others" in proc.stderr
    else:                          # no cache where deliveries would not trust it
        assert "others than the script's owner and root can change" in proc.stderr
    assert os.listdir(target) == ["s.sieve"]


def test_planted_symlink_at_the_target_name_is_replaced(tree):
    base, uid, user, rootonly, msg = tree
    adm = os.path.join(base, "adm2")
    os.mkdir(adm, 0o755)
    victim = os.path.join(rootonly, "victim")
    with open(victim, "w") as f:
        f.write("untouched")
    os.symlink(victim, os.path.join(adm, "s.msbin"))
    script = os.path.join(adm, "s.sieve")
    with open(script, "w") as f:
        f.write("keep;\n")
    assert tool("sievec", [script]).returncode == 0
    assert open(victim).read() == "untouched"
    assert not os.path.islink(os.path.join(adm, "s.msbin"))


def test_root_is_whole_again_after_writing_as_a_user(tree):
    """The drop is of the effective ids, for the write only: afterwards the tool
    runs as root with its own gid and groups, and a refused write restores them too."""
    base, uid, user, rootonly, msg = tree
    os.symlink(rootonly, os.path.join(user, "evil"))     # the user's link to root's dir
    os.lchown(os.path.join(user, "evil"), uid, uid)
    code = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from mailslot.sieve.cache_write import write_file
before = (os.geteuid(), os.getegid(), sorted(os.getgroups()))
write_file(os.path.join(sys.argv[2], "x.msbin"), b"data", 0o644)
try:
    write_file(os.path.join(sys.argv[2], "evil", "y"), b"d", 0o644)
except OSError as exc:
    print("refused", exc.errno)
print(before == (os.geteuid(), os.getegid(), sorted(os.getgroups())))
"""
    proc = subprocess.run([sys.executable, "-I", "-c", code, os.path.join(REPO, "pyside"),
                           user], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "refused 13\nTrue\n", proc.stdout
    assert os.stat(os.path.join(user, "x.msbin")).st_uid == uid
    assert os.listdir(rootonly) == []


@pytest.mark.parametrize("how", ["symlinked-dir", "symlinked-file"])
def test_trace_file_is_not_steered_into_roots_directory(tree, how):
    """sieve-test -t as root: a user's symlink (to a directory, or at the file
    name) does not get root to write its trace where the user cannot."""
    base, uid, user, rootonly, msg = tree
    script = os.path.join(user, "real", "s.sieve")
    victim = os.path.join(rootonly, "trace")
    if how == "symlinked-dir":
        os.symlink(rootonly, os.path.join(user, "evil"))
        os.lchown(os.path.join(user, "evil"), uid, uid)
        trace = os.path.join(user, "evil", "trace")
    else:
        trace = os.path.join(user, "trace")
        os.symlink(victim, trace)
        os.lchown(trace, uid, uid)
    proc = tool("sieve-test", ["-C", "-t", trace, script, msg])
    assert proc.returncode == 1
    assert "failed to open trace file" in proc.stderr
    assert not os.path.exists(victim)


def test_trace_file_in_roots_own_directory_is_written(tree):
    base, uid, user, rootonly, msg = tree
    script = os.path.join(user, "real", "s.sieve")
    trace = os.path.join(rootonly, "trace")
    proc = tool("sieve-test", ["-C", "-t", trace, script, msg])
    assert proc.returncode == 0, proc.stderr
    with open(trace) as f:
        assert "s: line 2: fileinto" in f.read()
    assert os.stat(trace).st_uid == 0 and os.stat(trace).st_mode & 0o777 == 0o600
