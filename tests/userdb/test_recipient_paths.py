"""Issue 20.4: a recipient's %-values never leave their path component, end to end.

The engine (pyside, Debian's python3 -I) runs as an unprivileged uid with a vmail
tree it owns and one of the issue's setups; each hostile recipient must give 67
(the name is nobody here), and nothing may appear anywhere in the tree or beside
it. A plain recipient still gets its mail, so the refusal is about the name.
"""

import os
import shutil
import subprocess

import pytest

from tests.support import REPO, free_uid, needs_root, world_tempdir

pytestmark = needs_root

PYSIDE = os.path.join(REPO, "pyside")
ENGINE = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
          "from mailslot.cli import main; sys.exit(main(sys.argv[1:]))")
MSG = b"From: a@example.org\nSubject: t\n\nbody\n"


@pytest.fixture
def site():
    base = world_tempdir("mailslot-rcpt-")
    uid = free_uid(47100)
    vmail = os.path.join(base, "srv", "vmail")
    os.makedirs(os.path.join(vmail, "ex.org"))
    os.makedirs(os.path.join(base, "elsewhere"))
    for root, dirs, _files in os.walk(base):
        for d in dirs:
            os.chown(os.path.join(root, d), uid, uid)
    os.chown(base, uid, uid)

    class Site:
        pass
    s = Site()
    s.base, s.uid, s.vmail = base, uid, vmail

    confdir = world_tempdir("mailslot-rcptconf-")

    def run(recipient, conf_text):
        conf = os.path.join(confdir, "mailslot.yaml")
        with open(conf, "w") as f:
            f.write(conf_text.replace("@UID@", str(uid)).replace("@BASE@", base))
        os.chmod(conf, 0o644)
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                "/usr/bin/python3", "-I", "-c", ENGINE, PYSIDE, "-c", conf,
                "-d", recipient]
        return subprocess.run(argv, input=MSG, capture_output=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": base}, cwd="/")
    s.run = run

    def tree():
        found = set()
        for root, dirs, files in os.walk(base):
            for name in dirs + files:
                found.add(os.path.relpath(os.path.join(root, name), base))
        return found
    s.tree = tree
    yield s
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(confdir, ignore_errors=True)


STATIC = ("first_valid_uid: 100\nlog_path: /dev/null\n"
          "userdb:\n  - driver: static\n    args: uid=@UID@ gid=@UID@ home=@BASE@/home "
          "allow_all_users=yes\n")
STATIC_LOCATION = STATIC + "mail_location: maildir:@BASE@/srv/vmail/%d/%n\n"
STATIC_ANY_CHARS = STATIC_LOCATION + 'auth_username_chars: ""\n'
PASSWD_FILE = ("first_valid_uid: 100\nlog_path: /dev/null\nauth_username_chars: \"\"\n"
               "userdb:\n  - driver: passwd-file\n    args: @BASE@/users\n"
               "mail_location: maildir:~/Maildir\n")


@pytest.mark.parametrize("conf, recipient", [
    (STATIC_LOCATION, "..@ex.org"),                 # the domain directory itself
    (STATIC_LOCATION, "ex.org@."),                  # the vmail root as a Maildir
    (STATIC_LOCATION, "bob"),                       # %d empty: /srv/vmail//bob
    (STATIC_LOCATION, "user@.."),
    (STATIC_ANY_CHARS, "x@ex.org:INBOX=@BASE@/elsewhere"),
    (STATIC_ANY_CHARS, "x%h@ex.org"),               # %h must not be expanded again
    (STATIC_ANY_CHARS, "a/../../elsewhere@ex.org"),
])
def test_hostile_recipient_in_mail_location_is_unknown(site, conf, recipient):
    recipient = recipient.replace("@BASE@", site.base)
    before = site.tree()
    proc = site.run(recipient, conf)
    assert proc.returncode == 67, proc.stderr
    assert b"cannot name a place on disk" in proc.stderr, proc.stderr
    assert site.tree() == before


def test_plain_recipient_still_delivers(site):
    proc = site.run("ann@ex.org", STATIC_LOCATION)
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(os.path.join(site.vmail, "ex.org", "ann", "new"))) == 1


def test_colon_in_a_name_stays_in_the_path(site):
    """With any characters allowed, "x@ex.org::INBOX=..." is a directory name."""
    proc = site.run("x@ex.org:INBOX=elsewhere", STATIC_LOCATION.replace(
        "%d/%n", "%d/%n/box") + 'auth_username_chars: ""\n')
    # ':' is only literal; '=' and letters are fine: the name is a path component
    # (lower-cased by auth_username_format's default %Lu).
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(os.path.join(site.vmail, "ex.org:inbox=elsewhere", "x", "box",
                                   "new"))
    assert not os.listdir(os.path.join(site.base, "elsewhere"))


@pytest.mark.parametrize("recipient", ["user@..", "..@ex.org", "user@.", "x%h@ex.org"])
def test_passwd_file_userdb_mail_refuses_them(site, recipient):
    """userdb_mail=maildir:.../%d/%n in a passwd-file line that matches the name."""
    name = recipient
    with open(os.path.join(site.base, "users"), "w") as f:
        f.write(f"{name}::{site.uid}:{site.uid}::{site.base}/home::"
                f"userdb_mail=maildir:{site.base}/srv/vmail/%d/%n\n")
    os.chmod(os.path.join(site.base, "users"), 0o644)
    before = site.tree()
    proc = site.run(recipient, PASSWD_FILE)
    assert proc.returncode == 67, proc.stderr
    assert site.tree() == before


def test_percent_h_in_a_name_reaches_other_settings_literally(site):
    """A userdb field that is expanded again later (postmaster_address) gets the
    name's '%' as a literal: the home directory never shows in it."""
    from mailslot import userdb
    user = userdb.lookup("x%h@ex.org", [{"driver": "static", "args":
                         f"uid={site.uid} gid={site.uid} home=/secret "
                         "postmaster_address=pm-%u allow_all_users=yes"}])
    from mailslot.config import default_settings, apply_overrides, expand_user_settings
    from mailslot.variables import user_values
    settings = default_settings()
    apply_overrides(settings, [("postmaster_address", user.fields["postmaster_address"])],
                    source="userdb")
    expand_user_settings(settings, user_values(user.name, user.home))
    assert settings["postmaster_address"] == "pm-x%h@ex.org"
