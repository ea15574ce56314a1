"""The plain delivery path stays lean: no quota module without quota settings.

A whole pipe delivery (cli.main in python3 -I -S, as the installed engine runs,
as the mail user) writes down the modules it imported: without any quota setting
none of mailslot.storage.quota*; with a quota_rule (-o) they are there, so the
probe does see them when they are imported.
"""

import os

from tests.dovecot_env import PYSIDE
from tests.quota.qenv import message

PROBE = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
out = sys.argv[2]
from mailslot.cli import main
code = main(sys.argv[3:])
with open(out, "w") as f:
    f.write(" ".join(sorted(sys.modules)) + " exit=%d" % code)
"""

QUOTA_MODULES = ("mailslot.storage.quota", "mailslot.storage.quota_rules",
                 "mailslot.storage.quota_maildirsize", "mailslot.storage.quota_tool")


def delivered_modules(q, *options):
    out = os.path.join(q.home, "modules.txt")
    proc = q.env.run(["/usr/bin/python3", "-I", "-S", "-c", PROBE, PYSIDE, out,
                      "-c", q.conf, *options], input=message(300), check=False)
    with open(out) as f:
        text = f.read()
    assert text.endswith("exit=0"), (text[-100:], proc.stderr)
    return set(text.split())


def test_no_quota_module_on_the_plain_path(quota_env):
    modules = delivered_modules(quota_env())
    assert not modules & set(QUOTA_MODULES), sorted(modules & set(QUOTA_MODULES))
    assert "mailslot.filing" in modules           # the probe sees the save path


def test_quota_modules_with_a_rule(quota_env):
    modules = delivered_modules(quota_env(), "-o", "quota_rule=*:storage=1M")
    assert {"mailslot.storage.quota", "mailslot.storage.quota_rules",
            "mailslot.storage.quota_maildirsize"} <= modules
    assert "mailslot.storage.quota_tool" not in modules
