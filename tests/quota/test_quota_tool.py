"""`mailslot quota get|recalc`: usage errors, a user without quota, and root.

Run as root, the command becomes the user before it touches the Maildir: the
maildirsize it rebuilds is the user's, and it cannot do anything as root after.
"""

import os
import subprocess

import pytest

from tests.dovecot_env import PYSIDE
from tests.quota.qenv import ADMIN_CODE, message
from tests.support import needs_root


@pytest.mark.parametrize("args", [["quota"], ["quota", "show", "-u", "x"],
                                  ["quota", "get"], ["quota", "get", "-u", "x", "-f", "json"],
                                  ["quota", "recalc", "-u", "x", "-f", "tab"],
                                  ["quota", "get", "-u"]])
def test_usage_errors(quota_env, args):
    q = quota_env()
    assert q.mailslot(*args).returncode == 64


def test_no_quota_settings_is_an_error(quota_env):
    q = quota_env()
    proc = q.mailslot("quota", "get", "-c", q.conf, "-u", q.user)
    assert proc.returncode == 75 and b"no quota for" in proc.stderr


def test_unknown_user(quota_env):
    q = quota_env(rules={"quota_rule": "*:storage=1M"})
    proc = q.mailslot("quota", "get", "-c", q.conf, "-u", "nosuchuser")
    assert proc.returncode == 67


@needs_root
def test_as_root_it_becomes_the_user(quota_env):
    q = quota_env(rules={"quota_rule": "*:storage=1M"})
    assert q.mailslot_lda(message(2000)).returncode == 0
    os.unlink(os.path.join(q.maildir, "maildirsize"))
    proc = subprocess.run(["/usr/bin/python3", "-I", "-c",
                           f"import sys; sys.path.insert(0, {PYSIDE!r}); " + ADMIN_CODE,
                           "quota", "recalc", "-c", q.conf, "-u", q.user],
                          capture_output=True, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert proc.returncode == 0, proc.stderr
    st = os.stat(os.path.join(q.maildir, "maildirsize"))
    assert (st.st_uid, st.st_gid) == (q.env.uid, q.env.gid)
    assert q.maildirsize() == "1048576S\n2000 1\n"
