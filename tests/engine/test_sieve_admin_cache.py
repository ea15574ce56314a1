"""An administrator's sieve_before script, compiled by root with `mailslot sievec`,
runs from that cache in a real delivery -- and without it, is compiled per
delivery and never cached where the user could rewrite it (issue 20.6).

Whether the delivery compiled is read from the modules it imported
(python -X importtime): a run from the cache imports no validator.
"""

import os
import subprocess

import pytest

from tests.engine.sieveuser import sieve_user
from tests.support import needs_root, run_as

pytestmark = needs_root

MSG = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nHello.\n"


@pytest.fixture
def site(installed, mail_users):
    """A user with an empty home, a config, and a root-owned admin directory."""
    with sieve_user(mail_users[1], installed, "mslt-sieve-admin-") as s:
        yield s.user, s.confdir, s.conf


def deliver_traced(user, installed, conf, *args):
    """Deliver as user; return (proc, set of modules the engine imported)."""
    proc = run_as(user, ["/usr/bin/python3", "-X", "importtime", "-I", "-S",
                         os.path.join(installed, "mailslot-lda"), "-c", conf]
                  + list(args), input=MSG)
    imported = {line.split("|")[-1].strip() for line in
                proc.stderr.decode().splitlines() if line.startswith("import time:")}
    return proc, imported


def test_root_compiled_admin_script_runs_from_its_cache(site, installed):
    user, admin, conf = site
    script = os.path.join(admin, "before.sieve")
    with open(script, "w") as f:
        f.write('require "fileinto";\nfileinto "Admin";\n')
    os.chmod(script, 0o644)
    before = "sieve_before=" + script
    # Not compiled by root yet: compiled for the delivery, cached nowhere.
    proc, imported = deliver_traced(user, installed, conf, "-o", before)
    assert proc.returncode == 0, proc.stderr
    assert "mailslot.sieve.validator" in imported
    assert sorted(os.listdir(admin)) == ["before.sieve", "mailslot.yaml"]
    assert not os.path.exists(os.path.join(user.pw_dir, ".cache"))
    # The delivery log says so once, with the command that ends it (Pigeonhole
    # logs an error for such a script on every delivery too).
    notice = (f"sieve: administrator's script {script} is compiled for every "
              f"delivery (compiled script not saved: only its owner (uid 0) or root")
    assert admin_log(user).count(notice) == 1
    assert f"mailslot sievec -c <the deliveries' settings file> {script}" in admin_log(user)
    # Root compiles it beside the script; the next delivery uses that.
    sievec = subprocess.run([os.path.join(installed, "mailslot"), "sievec", script],
                            capture_output=True, text=True)
    assert sievec.returncode == 0 and sievec.stderr == "", sievec.stderr
    proc, imported = deliver_traced(user, installed, conf, "-o", before)
    assert proc.returncode == 0, proc.stderr
    assert "mailslot.sieve.validator" not in imported
    admin_box = os.path.join(user.pw_dir, "Maildir", ".Admin", "new")
    assert len(os.listdir(admin_box)) == 2
    assert admin_log(user).count(notice) == 1           # nothing more once compiled


def admin_log(user):
    with open(os.path.join(user.pw_dir, "log")) as f:
        return f.read()


def test_sievec_with_the_deliveries_settings_file_matches_them(site, installed):
    """sievec -c mailslot.yaml compiles with the deliveries' own settings: a
    global-only extension (editheader) and a limit, and the cache is used."""
    user, admin, conf = site
    with open(conf, "a") as f:
        f.write('sieve_global_extensions: "+editheader"\nsieve_max_actions: 10\n')
    script = os.path.join(admin, "before.sieve")
    with open(script, "w") as f:
        f.write('require ["editheader", "fileinto"];\naddheader "X-Seen" "admin";\n'
                'fileinto "Admin";\n')
    os.chmod(script, 0o644)
    sievec = subprocess.run([os.path.join(installed, "mailslot"), "sievec", "-c", conf,
                             script], capture_output=True, text=True)
    assert sievec.returncode == 0 and sievec.stderr == "", sievec.stderr
    proc, imported = deliver_traced(user, installed, conf, "-o", "sieve_before=" + script)
    assert proc.returncode == 0, proc.stderr
    assert "mailslot.sieve.validator" not in imported
    box = os.path.join(user.pw_dir, "Maildir", ".Admin", "new")
    (name,) = os.listdir(box)
    with open(os.path.join(box, name), "rb") as f:
        assert f.read().startswith(b"X-Seen: admin\n")
