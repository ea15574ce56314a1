"""make demo's runner: the whole pipeline, relay included, from the repository."""

import os
import subprocess
import sys

from tests.support import REPO, needs_root


@needs_root
def test_demo_delivers_through_the_relay_to_each_users_uid():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "demo", "run_demo.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "-rwsr-x--- root:nogroup" in out
    assert out.count("-> ok") == 4
    vmail = os.path.join(REPO, "demo", "out", "vmail")
    owners = {}
    for user in ("bob", "alice"):
        for dirpath, _, files in os.walk(os.path.join(vmail, user, "Maildir")):
            if os.path.basename(dirpath) == "new":
                for name in files:
                    owners.setdefault(user, set()).add(
                        os.stat(os.path.join(dirpath, name)).st_uid)
    assert owners == {"bob": {5001}, "alice": {5002}}
    assert os.path.isdir(os.path.join(vmail, "bob", "Maildir", ".lists", "new"))
    assert "saved mail to lists" in out
