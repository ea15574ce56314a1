"""A home or mail root that does not exist: made as Dovecot makes it, or named.

The installed engine runs as an ordinary user whose $HOME (the home without -d)
is missing; real dovecot-lda runs the same way beside it, so each row checks that
mailslot decides as Dovecot does (create the home 0700, or defer with 75) and that
mailslot's one stderr line says what is missing and what to do. The last rows are
Postfix's local(8) delivering root's mail as nobody (home /nonexistent), and a
mail root outside the home under a directory the user may not write.
"""

import os
import pwd
import shutil
import stat

import pytest

from tests.support import needs_root, run_as, world_tempdir

pytestmark = needs_root

DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
MSG = b"From: a@example.org\nTo: b@example.org\nSubject: home\n\nHello.\n"


@pytest.fixture
def place(installed, mail_users):
    user = mail_users[0]
    base = world_tempdir("mailslot-nohome-")
    writable = os.path.join(base, "writable")       # the user's own: a home can be made
    closed = os.path.join(base, "closed")           # root's 0755: it cannot
    os.mkdir(writable)
    os.chown(writable, user.pw_uid, user.pw_gid)
    os.mkdir(closed, 0o755)

    class Place:
        pass
    p = Place()
    p.user, p.base, p.writable, p.closed = user, base, writable, closed
    p.engine = os.path.join(installed, "mailslot-lda")

    def conf(location="maildir:~/Maildir"):
        path = os.path.join(base, "mailslot.yaml")
        with open(path, "w") as f:
            f.write(f"mail_location: {location}\nlog_path: /dev/stderr\nfirst_valid_uid: 100\n")
        os.chmod(path, 0o644)
        return path
    p.conf = conf

    def lda(home, location="maildir:~/Maildir", as_user=user, env=None):
        env = dict(env or {"HOME": home, "USER": as_user.pw_name})
        return run_as(as_user, [p.engine, "-c", conf(location), "-f", "s@example.org"],
                      input=MSG, env=env)
    p.lda = lda

    def dovecot(home):
        path = os.path.join(base, "dovecot.conf")
        with open(path, "w") as f:
            f.write(f"mail_location = maildir:~/Maildir\nbase_dir = {base}/run\n"
                    "log_path = /dev/stderr\nssl = no\nfirst_valid_uid = 100\n")
        os.chmod(path, 0o644)
        return run_as(user, [DOVECOT_LDA, "-c", path, "-f", "s@example.org"], input=MSG,
                      env={"HOME": home, "USER": user.pw_name})
    p.dovecot = dovecot
    yield p
    shutil.rmtree(base, ignore_errors=True)


def new_files(home):
    path = os.path.join(home, "Maildir", "new")
    return os.listdir(path) if os.path.isdir(path) else []


@pytest.mark.skipif(not os.path.exists(DOVECOT_LDA), reason="dovecot-lda not installed")
@pytest.mark.parametrize("parent,code", [("writable", 0), ("closed", 75)])
def test_missing_home_is_decided_as_dovecot_does(place, parent, code):
    theirs = os.path.join(getattr(place, parent), "dovecot-user")
    ours = os.path.join(getattr(place, parent), "alice")
    dovecot = place.dovecot(theirs)
    proc = place.lda(ours)
    assert dovecot.returncode == code, dovecot.stderr
    assert proc.returncode == code, proc.stderr
    if code == 0:
        for home in (theirs, ours):
            st = os.stat(home)
            assert stat.S_IMODE(st.st_mode) == 0o700, home
            assert st.st_uid == place.user.pw_uid
        assert len(new_files(ours)) == 1
    else:
        assert not os.path.exists(ours) and not os.path.exists(theirs)
        assert proc.stderr.decode() == (f"mailslot-lda: home {ours} does not exist "
                                        f"(create it owned by uid {place.user.pw_uid})\n")


def test_missing_home_without_its_parent_is_named(place):
    home = os.path.join(place.closed, "example.org", "alice")
    proc = place.lda(home)
    assert proc.returncode == 75
    assert f"home {home} does not exist (create it owned by uid {place.user.pw_uid})" \
        in proc.stderr.decode()
    assert not os.path.exists(os.path.dirname(home))


def test_root_mail_delivered_as_nobody_says_to_alias_root(place):
    # Postfix's local(8): mailbox_command for root runs as default_privs (nobody)
    # with root's USER and HOME in the environment; nobody's home is /nonexistent.
    nobody = pwd.getpwnam("nobody")
    proc = place.lda(None, as_user=nobody, env={"USER": "root", "HOME": "/root"})
    assert proc.returncode == 75
    err = proc.stderr.decode()
    assert err.count("\n") == 1, err
    assert f"home {nobody.pw_dir} of nobody (uid {nobody.pw_uid}) does not exist" in err
    assert "alias root to a real user in /etc/aliases" in err


def test_mail_root_outside_the_home_names_what_to_create(place):
    root = os.path.join(place.closed, "example.org", "alice", "Maildir")
    home = os.path.join(place.writable, "home")
    os.mkdir(home)
    os.chown(home, place.user.pw_uid, place.user.pw_gid)
    proc = place.lda(home, location=f"maildir:{root}")
    assert proc.returncode == 75
    uid = place.user.pw_uid
    assert proc.stderr.decode() == (
        f"mailslot-lda: mail root {root} does not exist and uid {uid} may not create it "
        f"in {place.closed} (create {place.closed}/example.org owned by uid {uid})\n")


def test_existing_home_is_untouched(place):
    home = os.path.join(place.writable, "bob")
    os.mkdir(home, 0o751)
    os.chown(home, place.user.pw_uid, place.user.pw_gid)
    proc = place.lda(home)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o751
    assert len(new_files(home)) == 1
