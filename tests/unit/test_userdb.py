"""The user database: passwd, passwd-file (Dovecot's format), current_user, parity with Dovecot."""

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from mailslot import errors, userdb
from mailslot.errors import EX_TEMPFAIL, UserdbError, exit_code_for
from tests.support import free_uid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, "data", "userdb", "users")
FILE_DB = [{"driver": "passwd-file", "args": DATA}]
NOGROUP = grp.getgrnam("nogroup").gr_gid
NOBODY = pwd.getpwnam("nobody").pw_uid
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs code as another uid (root needed)")

# name -> (uid, gid, home, fields), or None when the userdb must not know the name.
EXPECTED = {
    "bob": (2001, 2001, "/home/bob",
            {"mail": "maildir:~/Mail", "quota_rule": "*:storage=1G", "flag": ""}),
    "carol": (2002, 2003, "/home/carol", {}),
    "old": (2004, 2004, "/home/old", {"mail": "maildir:/var/mail/old:INBOX=/var/mail/old/in"}),
    "zero": (2005, 2005, "/home/zero", {}),        # the uid-0 line is dropped
    "badgid": None,                                 # unknown group name: line dropped
    "pdb": None,                                    # passdb-only line hides the later one
    "named": (NOBODY, NOGROUP, "/home/named", {}),  # ids given by name
    "nohome": (2008, 2008, "", {}),
    "spaced": (2010, 2010, "/home/spaced", {"mail": "maildir:/m", "a": "b=c"}),
    "crlf": (2009, 2009, "/home/crlf", {}),          # CRLF line ending
    "last": (2013, 2013, "/home/last", {}),          # no newline at the end of file
    "#hidden": None,                                 # comment lines are no users
    "nosuch": None,
    "": None,
}


@pytest.fixture(autouse=True, params=["read", "cached"])
def passwd_file_reading(request, monkeypatch):
    """Every test twice: the passwd-file read at each lookup (the pipe) and kept in
    memory by userdb/passwd_cache.py (mailslot-lmtpd): same answers, same warnings."""
    if request.param == "cached":
        import importlib
        from mailslot.userdb.passwd_cache import PasswdFileCache
        walker = importlib.import_module("mailslot.userdb.lookup")   # the module
        monkeypatch.setattr(walker, "PASSWD_FILE_CACHE", PasswdFileCache())


def as_tuple(user):
    return None if user is None else (user.uid, user.gid, user.home, user.fields)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_passwd_file_entries(name):
    assert as_tuple(userdb.lookup(name, FILE_DB)) == EXPECTED[name]


def test_found_user_keeps_its_name_and_warnings():
    warnings = []
    user = userdb.lookup("bob", FILE_DB, warnings=warnings)
    assert user.name == "bob"
    assert any("bob exists more than once" in w and "line" in w for w in warnings)
    assert user.warnings == warnings


@pytest.mark.parametrize("name,words", [
    ("zero", ["zero has invalid UID '0'"]),
    ("badgid", ["badgid has invalid GID 'no-such-group-mslt'"]),
    ("pdb", ["pdb exists more than once"]),
])
def test_malformed_lines_are_skipped_with_a_warning(name, words):
    warnings = []
    userdb.lookup(name, FILE_DB, warnings=warnings)
    for word in words:
        assert any(word in w for w in warnings), warnings
    assert all(DATA in w for w in warnings)


def test_check_passwd_file_reports_every_bad_line():
    warnings = userdb.check_passwd_file(DATA)
    text = "\n".join(warnings)
    for word in ("zero has invalid UID '0'", "badgid has invalid GID",
                 "pdb exists more than once", "bob exists more than once"):
        assert word in text
    assert len(warnings) == 4


def write_file(directory, name, text, mode=0o644):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_username_format_and_per_domain_files(tmp_path):
    for domain, line in (("example.com", "carol:x:3001:3001::/home/carol"),
                         ("example.org", "carol:x:3002:3002::/srv/carol")):
        os.makedirs(tmp_path / domain)
        write_file(str(tmp_path / domain), "users", line + "\n")
    dbs = [{"driver": "passwd-file", "args": f"username_format=%n {tmp_path}/%d/users"}]
    assert userdb.lookup("carol@example.com", dbs).uid == 3001
    assert userdb.lookup("carol@example.org", dbs).home == "/srv/carol"
    # A domain without a file is a domain without users: the next userdb is asked.
    warnings = []
    assert userdb.lookup("carol@example.net", dbs, warnings=warnings) is None
    assert any("missing passwd file" in w for w in warnings)


@pytest.mark.parametrize("name", ["bob@..", "bob@.", "bob@../example.com", "bob@\0x"])
def test_per_domain_path_cannot_leave_its_directory(tmp_path, name):
    # /base/%d/users with %d = ".." would be /base/users: a file we plant there
    # must never answer.
    os.makedirs(tmp_path / "d")
    write_file(str(tmp_path), "users", "bob:x:3001:3001::/home/evil\n")
    dbs = [{"driver": "passwd-file", "args": f"username_format=%n {tmp_path}/d/%d/users"}]
    assert userdb.lookup(name, dbs) is None


def test_slash_in_domain_is_cut_like_dovecot(tmp_path):
    os.makedirs(tmp_path / "a")
    write_file(str(tmp_path / "a"), "users", "bob:x:3001:3001::/home/bob\n")
    dbs = [{"driver": "passwd-file", "args": f"username_format=%n {tmp_path}/%d/users"}]
    # "a/b" is cut at its '/' (Dovecot's path_fix), so the file of "a" answers.
    assert userdb.lookup("bob@a/b", dbs).uid == 3001


def test_extra_fields_are_expanded(tmp_path):
    path = write_file(str(tmp_path), "users",
                      "exp:x:3001:3001::/home/exp::userdb_mail=maildir:/var/mail/%d/%n "
                      "userdb_sieve=%{user}.sieve userdb_pct=100%% userdb_home_dir=%h/x\n")
    dbs = [{"driver": "passwd-file", "args": f"username_format=%n {path}"}]
    user = userdb.lookup("exp@example.org", dbs)
    assert user.fields == {"mail": "maildir:/var/mail/example.org/exp",
                           "sieve": "exp@example.org.sieve", "pct": "100%",
                           "home_dir": "/home/exp/x"}


def test_extra_field_that_does_not_expand_is_a_userdb_error(tmp_path):
    path = write_file(str(tmp_path), "users", "bad:x:3001:3001::/h::userdb_mail=%q\n")
    with pytest.raises(UserdbError) as info:
        userdb.lookup("bad", [{"driver": "passwd-file", "args": path}])
    assert "mail" in str(info.value) and "%q" in str(info.value)


def test_userdb_fields_override_the_line(tmp_path):
    path = write_file(str(tmp_path), "users",
                      "u:x:3001:3001::/home/u::userdb_uid=3005 userdb_home=/srv/u\n")
    user = userdb.lookup("u", [{"driver": "passwd-file", "args": path}])
    assert (user.uid, user.gid, user.home, user.fields) == (3005, 3001, "/srv/u", {})


def test_default_and_override_fields(tmp_path):
    path = write_file(str(tmp_path), "users",
                      "noids:x:::::\nfull:x:3001:3001::/home/full::userdb_mail=maildir:/own\n")
    dbs = [{"driver": "passwd-file", "args": path,
            "default_fields": "uid=3100 gid=3100 home=/srv/%u mail=maildir:/def",
            "override_fields": "quota_rule=*:storage=%n"}]
    noids = userdb.lookup("noids", dbs)
    assert (noids.uid, noids.gid, noids.home) == (3100, 3100, "/srv/noids")
    assert noids.fields == {"mail": "maildir:/def", "quota_rule": "*:storage=noids"}
    full = userdb.lookup("full", dbs)
    assert (full.uid, full.home, full.fields["mail"]) == (3001, "/home/full", "maildir:/own")
    assert full.fields["quota_rule"] == "*:storage=full"


def test_no_uid_anywhere_is_a_userdb_error(tmp_path):
    path = write_file(str(tmp_path), "users", "noids:x:::::\n")
    with pytest.raises(UserdbError) as info:
        userdb.lookup("noids", [{"driver": "passwd-file", "args": path}])
    assert "no valid uid" in str(info.value)


def test_relative_home_is_refused(tmp_path):
    path = write_file(str(tmp_path), "users", "rel:x:3001:3001::home/rel\n")
    with pytest.raises(UserdbError) as info:
        userdb.lookup("rel", [{"driver": "passwd-file", "args": path}])
    assert "relative home" in str(info.value)


def test_first_userdb_that_knows_the_user_wins():
    dbs = FILE_DB + [{"driver": "passwd"}]
    assert userdb.lookup("carol", dbs).uid == 2002          # from the file
    assert userdb.lookup("nobody", dbs).uid == NOBODY       # from NSS
    assert userdb.lookup("no-such-user-mslt", dbs) is None


@pytest.mark.parametrize("block,words", [
    ({"driver": "passwd-file", "args": "/nonexistent-mslt/users"}, ["does not exist"]),
    ({"driver": "passwd-file", "args": "/"}, ["Is a directory"]),
    ({"driver": "passwd-file", "args": ""}, ["missing path"]),
    ({"driver": "passwd-file", "args": "username_format=%n"}, ["missing path"]),
    ({"driver": "passwd-file", "args": "relative/users"}, ["absolute"]),
    ({"driver": "passwd-file", "args": "/etc/%q/users"}, ["%q"]),
    ({"driver": "ldap", "args": "/etc/dovecot-ldap.conf"}, ["unknown driver", "'ldap'"]),
    ({"args": "/x"}, ["unknown driver"]),
    ({"driver": "passwd", "skip": "never"}, ["skip"]),
    ({"driver": "passwd", "default_fields": "home=%q"}, ["default_fields", "%q"]),
])
def test_broken_userdb_is_a_temporary_error(block, words):
    with pytest.raises(UserdbError) as info:
        userdb.lookup("nobody", [block, {"driver": "passwd"}])
    for word in words:
        assert word in str(info.value)
    # Never a bounce: the MTA keeps the message and retries.
    assert exit_code_for(info.value) == EX_TEMPFAIL
    assert isinstance(info.value, errors.TemporaryError)


@needs_root
def test_unreadable_file_is_a_userdb_error(tmp_path):
    os.chmod(tmp_path, 0o755)
    path = write_file(str(tmp_path), "users", "bob:x:3001:3001::/home/bob\n", mode=0o600)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot import userdb, errors\n"
            "try:\n"
            "    userdb.lookup('bob', [{'driver': 'passwd-file', 'args': %r}])\n"
            "except errors.UserdbError as exc:\n"
            "    print('UserdbError', exc)\n" % (os.path.join(REPO, "pyside"), path))
    run = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}",
                          "--clear-groups", sys.executable, "-I", "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("UserdbError")
    assert "Permission denied" in run.stdout and f"uid {NOBODY}" in run.stdout


def test_passwd_driver():
    user = userdb.lookup("nobody", [{"driver": "passwd"}])
    entry = pwd.getpwnam("nobody")
    assert (user.name, user.uid, user.gid, user.home) == (
        "nobody", entry.pw_uid, entry.pw_gid, entry.pw_dir)
    assert user.fields == {}
    for name in ("no-such-user-mslt", "", "nob\0dy", "nobody@example.org"):
        assert userdb.lookup(name, [{"driver": "passwd"}]) is None


def test_passwd_driver_old_style_templates_warn():
    warnings = []
    user = userdb.lookup("nobody", [{"driver": "passwd",
                                     "args": "blocking=no home=/var/mail/%u"}],
                         warnings=warnings)
    assert user.home == "/var/mail/nobody"
    assert any("override_fields" in w for w in warnings)


def test_values_reach_the_templates(tmp_path):
    path = write_file(str(tmp_path), "users", "h:x:3001:3001::/home/h::userdb_x=%{hostname}\n")
    user = userdb.lookup("h", [{"driver": "passwd-file", "args": path}],
                         values={"hostname": "mx.example"})
    assert user.fields == {"x": "mx.example"}


def test_driver_registry():
    def static(name, args, values, warnings):
        return {"uid": "4000", "gid": "4000", "home": "/srv/" + values["username"]} \
            if name.endswith("@static.example") else None

    userdb.register_driver("test-static", static)
    try:
        user = userdb.lookup("ann@static.example", [{"driver": "test-static"}])
        assert (user.uid, user.home) == (4000, "/srv/ann")
        assert userdb.lookup("ann@other.example", [{"driver": "test-static"}]) is None
    finally:
        del userdb.DRIVERS["test-static"]


def test_big_file_lookup_is_fast(tmp_path):
    # The pipe path reads the file on every delivery: only matching lines are parsed.
    lines = [f"user{i}:x:{5000 + i}:{5000 + i}::/home/user{i}::userdb_mail=maildir:~/M"
             for i in range(50000)]
    path = write_file(str(tmp_path), "users", "\n".join(lines) + "\n")
    start = time.perf_counter()
    user = userdb.lookup("user49999", [{"driver": "passwd-file", "args": path}])
    elapsed = time.perf_counter() - start
    assert user.uid == 54999
    assert elapsed < 1.0


# --- current_user -------------------------------------------------------------------

def test_current_user_env_agrees(monkeypatch):
    me = pwd.getpwuid(os.getuid())
    monkeypatch.setenv("USER", me.pw_name)
    monkeypatch.setenv("HOME", "/tmp/elsewhere")
    user = userdb.current_user()
    assert (user.name, user.uid, user.gid, user.home) == (
        me.pw_name, os.getuid(), os.getgid(), "/tmp/elsewhere")


def test_current_user_stale_env_is_ignored(monkeypatch):
    me = pwd.getpwuid(os.getuid())
    monkeypatch.setenv("USER", "nobody" if me.pw_name != "nobody" else "root")
    monkeypatch.setenv("HOME", "/tmp/someone-else")
    user = userdb.current_user()
    assert (user.name, user.home) == (me.pw_name, me.pw_dir)


def test_current_user_without_user_keeps_home(monkeypatch):
    me = pwd.getpwuid(os.getuid())
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setenv("HOME", "/tmp/h")
    assert (userdb.current_user().name, userdb.current_user().home) == (me.pw_name, "/tmp/h")
    monkeypatch.delenv("HOME")
    assert userdb.current_user().home == me.pw_dir


@needs_root
@pytest.mark.parametrize("env,expected", [
    ({"USER": "ghost", "HOME": "/srv/ghost"}, "ghost /srv/ghost"),
    ({"USER": "ghost"}, "ghost "),
    ({"HOME": "/srv/ghost"}, "UserdbError"),
])
def test_current_user_without_passwd_entry(env, expected):
    uid = free_uid()
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot import userdb, errors\n"
            "try:\n"
            "    u = userdb.current_user(); print(u.name, u.home, u.uid, u.gid)\n"
            "except errors.UserdbError as exc:\n"
            "    print('UserdbError', exc)\n" % os.path.join(REPO, "pyside"))
    run = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                          sys.executable, "-I", "-c", code],
                         env=dict(env, PATH="/usr/bin:/bin"), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(expected)
    if expected != "UserdbError":
        assert run.stdout.split()[-2:] == [str(uid), str(uid)]
    else:
        assert f"uid {uid}" in run.stdout


def test_import_is_light():
    code = ("import sys; sys.path.insert(0, %r); import mailslot.userdb; "
            "heavy = {'re', 'json', 'logging', 'email', 'argparse', 'socket', 'tempfile', "
            "'shutil', 'datetime', 'subprocess', 'grp'}; "
            "print(sorted(heavy & set(sys.modules)))" % os.path.join(REPO, "pyside"))
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


# --- parity with Dovecot's auth process ---------------------------------------------

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
# doveadm user shows the mail_location setting as "mail" when the userdb gives none.
SETTING_MAIL = "maildir:/mailslot-test/from-the-setting"


@pytest.fixture(scope="module")
def dovecot_auth():
    """A private Dovecot instance (no protocols) whose userdb is the data file."""
    if os.geteuid() != 0 or not os.path.exists(DOVECOT) or not os.path.exists(DOVEADM):
        pytest.skip("needs root and Dovecot from Debian's packages")
    base = tempfile.mkdtemp(prefix="mailslot-dvauth-")
    os.chmod(base, 0o755)
    users = os.path.join(base, "users")
    shutil.copyfile(DATA, users)
    os.chmod(users, 0o644)
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"base_dir = {base}/run\nstate_dir = {base}/state\n"
                f"instance_name = mailslot-test-{os.getpid()}\nprotocols =\nssl = no\n"
                f"log_path = {base}/dovecot.log\nmail_location = {SETTING_MAIL}\n"
                f"passdb {{\n  driver = passwd-file\n  args = {users}\n}}\n"
                f"userdb {{\n  driver = passwd-file\n  args = {users}\n}}\n")
    os.makedirs(os.path.join(base, "state"))
    master = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        socket_path = os.path.join(base, "run", "auth-userdb")
        for _ in range(100):
            if os.path.exists(socket_path):
                break
            time.sleep(0.1)
        else:
            pytest.fail("Dovecot's auth-userdb socket did not appear")
        yield conf
    finally:
        master.terminate()
        try:
            master.wait(timeout=20)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        shutil.rmtree(base, ignore_errors=True)


def doveadm_user(conf, name):
    run = subprocess.run([DOVEADM, "-c", conf, "user", name], capture_output=True,
                         text=True, timeout=60)
    if run.returncode == 67:
        return None
    assert run.returncode == 0, (name, run.returncode, run.stderr)
    fields = {}
    for line in run.stdout.splitlines()[1:]:
        key, _, value = line.partition("\t")
        fields[key] = value
    if fields.get("mail") == SETTING_MAIL:
        del fields["mail"]
    uid, gid = int(fields.pop("uid")), int(fields.pop("gid"))
    return (uid, gid, fields.pop("home", ""), fields)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n))
def test_same_answer_as_dovecot(dovecot_auth, name):
    assert as_tuple(userdb.lookup(name, FILE_DB)) == doveadm_user(dovecot_auth, name)
