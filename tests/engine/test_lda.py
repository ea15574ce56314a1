"""mailslot-lda end to end: the installed engine, run as ordinary users.

Each test pipes a message into <DESTDIR>/usr/lib/mailslot/mailslot-lda (Debian's
python3 -I -S) as a test user via setpriv, then looks at the exit code, stderr, the
files in the Maildir and the log.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from tests.support import needs_root, run_as, world_tempdir

pytestmark = needs_root

MSG = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
       b"Subject: hello\nMessage-ID: <m1@example.org>\n\nHello Bob.\n")
# The log prefix's pid part; tests/fastpath runs this suite through the fast path,
# whose lines carry the path that delivered: r"<\d+><handoff>".
LOG_PID = r"<\d+>"
# Dovecot's new/ name: <sec>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>
NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)\.([^,/:]+),S=(\d+),W=(\d+)$")


@pytest.fixture
def env(installed, mail_users, tmp_path_factory):
    """A fresh home and config for the first test user; returns a helper namespace."""
    user = mail_users[0]
    for entry in os.listdir(user.pw_dir):      # a fresh home: no mail, no log
        path = os.path.join(user.pw_dir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    confdir = world_tempdir("mailslot-conf-")
    conf = os.path.join(confdir, "mailslot.yaml")
    log = os.path.join(user.pw_dir, "mailslot.log")
    with open(conf, "w") as f:
        f.write(f"mail_location: maildir:~/Maildir\nlog_path: {log}\n"
                "hostname: test.example.org\nfirst_valid_uid: 100\n")
    os.chmod(conf, 0o644)

    class Env:
        pass
    e = Env()
    e.user, e.conf, e.log, e.confdir = user, conf, log, confdir
    e.engine = os.path.join(installed, "mailslot-lda")
    e.maildir = os.path.join(user.pw_dir, "Maildir")

    def lda(*args, input=MSG, as_user=user, shell_prefix=None):
        argv = [e.engine, "-c", conf] + list(args)
        if shell_prefix:
            argv = ["sh", "-c", shell_prefix + ' exec "$@"', "sh"] + argv
        return run_as(as_user, argv, input=input)
    e.lda = lda
    yield e
    shutil.rmtree(confdir, ignore_errors=True)


def files_in(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_delivery_as_ordinary_user_writes_dovecot_file(env):
    proc = env.lda("-f", "s@example.org")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    new = files_in(os.path.join(env.maildir, "new"))
    assert len(new) == 1 and files_in(os.path.join(env.maildir, "tmp")) == []
    m = NAME_RE.match(new[0])
    assert m, new[0]
    assert m.group(4) == os.uname().nodename.replace("/", r"\057").replace(":", r"\072")
    assert int(m.group(5)) == len(MSG) and int(m.group(6)) == len(MSG) + MSG.count(b"\n")
    path = os.path.join(env.maildir, "new", new[0])
    st = os.stat(path)
    assert st.st_uid == env.user.pw_uid and stat.S_IMODE(st.st_mode) == 0o600
    with open(path, "rb") as f:
        assert f.read() == MSG
    with open(env.log) as f:
        log = f.read()
    assert re.search(r"lda\(" + re.escape(env.user.pw_name) + r"\)" + LOG_PID + r": Info: msgid=<m1@example.org>: "
                     r"saved mail to INBOX", log), log
    uidlist = open(os.path.join(env.maildir, "dovecot-uidlist")).read().splitlines()
    # Dovecot appends records and leaves the header's N alone until a rewrite.
    assert re.match(r"^3 V\d+ N\d+ G[0-9a-f]{32}$", uidlist[0]), uidlist[0]
    assert uidlist[1:] == ["1 :" + new[0]]


def test_bad_config_exits_75_naming_file_and_line(env):
    with open(env.conf, "a") as f:
        f.write("mail_fsync: sometimes\n")
    proc = env.lda()
    assert proc.returncode == 75
    err = proc.stderr.decode()
    assert f"{env.conf} line 5" in err and "mail_fsync" in err
    assert err.count("\n") == 1
    assert files_in(os.path.join(env.maildir, "new")) == []


def test_every_config_mistake_is_on_the_one_line(env):
    with open(env.conf, "a") as f:
        f.write("mail_fsync: sometimes\nlda_mailbox_autocreat: yes\nlast_valid_uid: many\n")
    proc = env.lda()
    assert proc.returncode == 75
    err = proc.stderr.decode()
    assert err.count("\n") == 1, err
    assert f"{env.conf}: 3 errors: line 5: mail_fsync: " in err, err
    assert "line 6: lda_mailbox_autocreat: unknown setting" in err
    assert "line 7: last_valid_uid: invalid number 'many'" in err
    assert files_in(os.path.join(env.maildir, "new")) == []


def test_unknown_user_exits_67(env):
    proc = env.lda("-d", "nosuchuser-mslt")
    assert proc.returncode == 67
    assert b"User doesn't exist: nosuchuser-mslt" in proc.stderr


def test_root_is_refused(env):
    proc = subprocess.run([env.engine, "-c", env.conf], input=MSG, capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root"})
    assert proc.returncode == 75
    assert b"refusing to deliver as root" in proc.stderr
    assert b"mailslot-relay" in proc.stderr


def test_other_users_uid_is_refused(env, mail_users):
    # Other tests deliver to this user too: start from a home without a Maildir.
    shutil.rmtree(os.path.join(mail_users[1].pw_dir, "Maildir"), ignore_errors=True)
    proc = env.lda("-d", mail_users[1].pw_name)
    assert proc.returncode == 75
    assert b"through mailslot-relay" in proc.stderr
    assert not os.path.exists(os.path.join(mail_users[1].pw_dir, "Maildir"))


def test_uid_below_first_valid_uid_is_refused(env):
    proc = env.lda("-o", f"first_valid_uid={env.user.pw_uid + 1}")
    assert proc.returncode == 75 and b"first_valid_uid" in proc.stderr


def test_usage_error_exits_64(env):
    proc = env.lda("-X")
    assert proc.returncode == 64 and b"unknown option -X" in proc.stderr


@pytest.mark.parametrize("option", ["-a", "-r"])
@pytest.mark.parametrize("value", ["jörg@example.org".encode(), b"j\xe9rg@example.org"],
                         ids=["utf-8", "latin-1"])
def test_recipient_not_ascii_exits_64_and_saves_nothing(env, option, value):
    # As dovecot-lda ("Invalid -a parameter", 64): SMTPUTF8 addresses are not
    # supported, nor bytes that are not UTF-8; the MTA gets the reason on stderr.
    shutil.rmtree(env.maildir, ignore_errors=True)
    proc = env.lda(option.encode(), value)
    assert proc.returncode == 64
    assert f"option {option}: invalid address".encode() in proc.stderr
    assert b"not ASCII" in proc.stderr
    assert files_in(os.path.join(env.maildir, "new")) == []


def test_sender_not_ascii_is_null_and_logged(env):
    # As dovecot-lda: a broken -f is <> (the log says so), the message is saved.
    shutil.rmtree(env.maildir, ignore_errors=True)
    proc = env.lda(b"-f", b"j\xc3\xb6rg@example.org", b"-o",
                   b"deliver_log_format=from=<%e> %$")
    assert proc.returncode == 0, proc.stderr
    assert len(files_in(os.path.join(env.maildir, "new"))) == 1
    log = open(env.log).read()
    assert "Invalid envelope sender address 'jörg@example.org' (not ASCII), " \
           "using <> instead" in log
    assert "from=<> saved mail to INBOX" in log


def test_d_with_detail_and_folder(env):
    proc = env.lda("-d", f"{env.user.pw_name}+lists", "-m", "lists", "-s")
    assert proc.returncode == 0, proc.stderr
    assert len(files_in(os.path.join(env.maildir, ".lists", "new"))) == 1
    assert os.path.exists(os.path.join(env.maildir, ".lists", "maildirfolder"))
    subs = open(os.path.join(env.maildir, "subscriptions")).read()
    assert "lists" in subs.splitlines()


def test_no_create_falls_back_to_inbox(env):
    proc = env.lda("-n", "-m", "Archive")
    assert proc.returncode == 0, proc.stderr
    assert not os.path.exists(os.path.join(env.maildir, ".Archive"))
    assert len(files_in(os.path.join(env.maildir, "new"))) == 1


@pytest.mark.parametrize("name", ["../escape", "a/../../x", "..", "a\x01b", "\udcff",
                                  "INBOX/../../etc", ".hidden/..", "a\nb", "x" * 2000])
def test_hostile_mailbox_names_land_in_inbox(env, name):
    proc = env.lda("-m", name)
    assert proc.returncode == 0, proc.stderr
    assert len(files_in(os.path.join(env.maildir, "new"))) == 1
    home_entries = set(os.listdir(env.user.pw_dir))
    assert home_entries <= {"Maildir", "mailslot.log"}, home_entries
    for entry in os.listdir(env.maildir):
        assert entry in ("new", "cur", "tmp", "dovecot-uidlist", "subscriptions",
                         "dovecot-uidvalidity") or entry.startswith((".", "dovecot")), entry


def test_from_line_removed_and_used_as_sender(env):
    proc = env.lda("-o", "deliver_log_format=from=%e %$",
                   input=b"From bounce@example.net Sat Nov 21 10:00:00 2026\n" + MSG)
    assert proc.returncode == 0, proc.stderr
    new = files_in(os.path.join(env.maildir, "new"))
    assert open(os.path.join(env.maildir, "new", new[0]), "rb").read() == MSG
    assert "from=bounce@example.net saved mail to INBOX" in open(env.log).read()


def test_original_recipient_header_is_not_written(env):
    # dovecot-lda reads the field (without -a) and writes none: the copy is the
    # message (tests/engine/test_original_recipient_header.py has the reading).
    proc = env.lda("-a", "bob+x@example.org", "-o",
                   "lda_original_recipient_header=X-Original-To")
    assert proc.returncode == 0, proc.stderr
    new = files_in(os.path.join(env.maildir, "new"))
    data = open(os.path.join(env.maildir, "new", new[0]), "rb").read()
    assert data == MSG


def test_p_path_is_hard_linked(env):
    src = os.path.join(env.user.pw_dir, "incoming.eml")
    with open(src, "wb") as f:
        f.write(MSG)
    os.chown(src, env.user.pw_uid, env.user.pw_gid)
    proc = env.lda("-p", src)
    assert proc.returncode == 0, proc.stderr
    new = files_in(os.path.join(env.maildir, "new"))
    assert os.stat(os.path.join(env.maildir, "new", new[0])).st_ino == os.stat(src).st_ino


def test_file_size_limit_is_named(env):
    big = MSG + b"x" * 200_000 + b"\n"
    proc = env.lda(input=big, shell_prefix="ulimit -f 100;")   # dash: 512-byte blocks
    assert proc.returncode == 75
    err = proc.stderr.decode()
    assert "51200" in err and "limit" in err.lower(), err
    assert files_in(os.path.join(env.maildir, "new")) == []
    assert files_in(os.path.join(env.maildir, "tmp")) == []


def test_read_only_maildir_is_temporary_and_leaves_nothing(env):
    assert env.lda().returncode == 0
    os.chmod(os.path.join(env.maildir, "new"), 0o500)
    os.chmod(os.path.join(env.maildir, "tmp"), 0o500)
    try:
        proc = env.lda()
    finally:
        os.chmod(os.path.join(env.maildir, "new"), 0o700)
        os.chmod(os.path.join(env.maildir, "tmp"), 0o700)
    assert proc.returncode == 75, proc.stderr
    assert len(files_in(os.path.join(env.maildir, "new"))) == 1
    assert files_in(os.path.join(env.maildir, "tmp")) == []


def test_unwritable_log_is_temporary(env):
    proc = env.lda("-o", "log_path=/proc/mailslot-cannot-write-here.log")
    assert proc.returncode == 75
    assert b"log" in proc.stderr.lower()


@pytest.mark.parametrize("data", [
    b"Subject: nul\x00\n\nbody\x00\n",
    b"Subject: bare\rcr\n\nbody\r\n",
    b"Subject: no body\n",
    b"X-Long: " + b"y" * 500_000 + b"\n\nb\n",
    b"",
])
def test_malformed_messages_are_delivered_whole(env, data):
    proc = env.lda(input=data)
    assert proc.returncode == 0, proc.stderr
    new = files_in(os.path.join(env.maildir, "new"))
    stored = open(os.path.join(env.maildir, "new", new[0]), "rb").read()
    assert stored == data.replace(b"\r\n", b"\n")


def test_mailslot_config_prints_effective_settings(env, installed):
    proc = subprocess.run([os.path.join(installed, "mailslot"), "config", "-c",
                           env.conf, "-n"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "hostname: test.example.org" in proc.stdout
    assert "mail_fsync" not in proc.stdout           # default: not shown with -n
    full = subprocess.run([os.path.join(installed, "mailslot"), "config", "-c", env.conf],
                          capture_output=True, text=True).stdout
    assert "mail_fsync: optimized" in full


def test_environment_cleared_unless_k(env):
    fmt = "deliver_log_format=env=%{env:MAILSLOT_TEST_VAR} %$"
    proc = run_as(env.user, [env.engine, "-c", env.conf, "-o", fmt], input=MSG,
                  env={"MAILSLOT_TEST_VAR": "kept"})
    assert proc.returncode == 0, proc.stderr
    proc = run_as(env.user, [env.engine, "-c", env.conf, "-k", "-o", fmt], input=MSG,
                  env={"MAILSLOT_TEST_VAR": "kept"})
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in open(env.log).read().splitlines() if "saved mail" in l]
    assert lines[0].endswith("env= saved mail to INBOX"), lines
    assert lines[1].endswith("env=kept saved mail to INBOX"), lines


# Modules the plain pipe path must never import (docs/architecture.md, "Start-up is
# the speed").
HEAVY_MODULES = ("yaml", "re", "email", "json", "logging", "argparse", "socket",
                 "subprocess", "tempfile", "shutil", "datetime", "mailslot.sieve.runner",
                 "prctl", "sqlite3", "psycopg2")


def test_plain_path_imports_nothing_heavy(env):
    # A settings cache exists (as `mailslot config` leaves it), so no YAML either.
    subprocess.run([os.path.join(os.path.dirname(env.engine), "mailslot"), "config",
                    "-c", env.conf], check=True, capture_output=True)
    proc = run_as(env.user, ["/usr/bin/python3", "-X", "importtime", "-I", "-S",
                             env.engine, "-c", env.conf], input=MSG)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in
                proc.stderr.decode().splitlines() if line.startswith("import time:")}
    assert "mailslot.storage.maildir" in imported            # the probe works
    assert not imported & set(HEAVY_MODULES), imported & set(HEAVY_MODULES)


# The import budget of the plain path (issue 19): every module a plain Maildir
# delivery (no -d, no Sieve script, settings from the cache) loads, listed. Start-up
# is the pipe path's speed (docs/benchmarks.md: about 0.15-0.3 ms a module), so a
# module joins this list only on purpose; one that leaves it is a gain to record.
PLAIN_PATH_MODULES = {
    "mailslot", "mailslot.cli", "mailslot.config", "mailslot.deliver", "mailslot.errors",
    "mailslot.filing", "mailslot.homedir", "mailslot.log", "mailslot.message",
    "mailslot.recipient", "mailslot.script_location",
    "mailslot.storage", "mailslot.storage.base", "mailslot.storage.dirs",
    "mailslot.storage.index", "mailslot.storage.location", "mailslot.storage.locking",
    "mailslot.storage.maildir", "mailslot.user",
}
# Never on the plain path: the Sieve package (a stat says there is no script:
# script_location.has_scripts), the YAML side of the settings (config_file: the
# cache is fresh), the UIDVALIDITY counter (the uidlist exists), the %-expander
# (variables: no setting has a '%' but the default postmaster_address, and the log
# line has the default format: both filled in directly), the mbox modules.
OFF_PLAIN_PATH = ("mailslot.sieve", "mailslot.config_file", "mailslot.storage.uidvalidity",
                  "mailslot.variables", "mailslot.storage.mbox")
# A delivery into an existing mbox INBOX (the default locks, fcntl and a dotlock
# in a directory the user may write, an idle journal) loads the same minus the
# Maildir modules, plus the mbox save's own. Never: the set-group-id helper's
# client (mbox_helper: only when a dotlock or the INBOX could not be created), the
# journal's replay after a crash (mbox_recover, mbox_heal).
MBOX_PLAIN_PATH_MODULES = (PLAIN_PATH_MODULES - {"mailslot.storage.maildir",
                                                 "mailslot.storage.index"}) | {
    "mailslot.storage.mbox", "mailslot.storage.mbox_append", "mailslot.storage.mbox_format",
    "mailslot.storage.mbox_journal", "mailslot.storage.mbox_lock",
}
OFF_MBOX_PLAIN_PATH = ("mailslot.storage.mbox_helper", "mailslot.storage.mbox_recover",
                       "mailslot.storage.mbox_heal", "mailslot.storage.keywords",
                       "mailslot.storage.subscriptions") + OFF_PLAIN_PATH[:-1]
# What the interpreter itself loads under -I -S, plus pwd and errno.
PLAIN_PATH_STDLIB = {
    "_abc", "_codecs", "_collections_abc", "_frozen_importlib_external", "_io", "_signal",
    "_stat", "abc", "codecs", "encodings", "encodings.aliases", "encodings.utf_8",
    "errno", "genericpath", "io", "marshal", "os", "posix", "posixpath", "pwd", "stat",
    "time", "zipimport", "gc",      # gc: built in, the entry turns the collector off
}


def _imports_of_a_delivery(env, conf):
    """The modules a second delivery with conf imports (-X importtime): (ours, stdlib)."""
    subprocess.run([os.path.join(os.path.dirname(env.engine), "mailslot"), "config",
                    "-c", conf], check=True, capture_output=True)
    # The common case: the mailbox (and a Maildir's uidlist) exist already (the
    # first Maildir delivery also imports storage/uidvalidity.py to number the list).
    assert run_as(env.user, [env.engine, "-c", conf], input=MSG).returncode == 0
    proc = run_as(env.user, ["/usr/bin/python3", "-X", "importtime", "-I", "-S",
                             env.engine, "-c", conf], input=MSG)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines()
                if line.startswith("import time:") and "imported package" not in line}
    ours = {name for name in imported if name.startswith("mailslot")}
    return ours, imported - ours


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_plain_path_import_budget(env, fmt):
    conf, expected, never = env.conf, PLAIN_PATH_MODULES, OFF_PLAIN_PATH
    stdlib_allowed = PLAIN_PATH_STDLIB
    if fmt == "mbox":
        conf = os.path.join(env.confdir, "mbox.yaml")
        with open(conf, "w") as f:
            f.write(f"mail_location: mbox:~/mail:INBOX=~/mail/inbox\nlog_path: {env.log}\n"
                    "hostname: test.example.org\nfirst_valid_uid: 100\n")
        os.chmod(conf, 0o644)
        expected, never = MBOX_PLAIN_PATH_MODULES, OFF_MBOX_PLAIN_PATH
        stdlib_allowed = PLAIN_PATH_STDLIB | {"fcntl"}     # the mbox's fcntl lock
    ours, stdlib = _imports_of_a_delivery(env, conf)
    assert not {name for name in ours if name.startswith(never)}, sorted(ours)
    assert ours == expected, (f"joined: {sorted(ours - expected)}, "
                              f"left: {sorted(expected - ours)}")
    assert stdlib <= stdlib_allowed, sorted(stdlib - stdlib_allowed)


def test_log_failing_after_the_save_does_not_fail_the_delivery(env):
    # /dev/full opens fine and fails every write: the failure comes after the save.
    proc = env.lda("-o", "log_path=/dev/full")
    assert proc.returncode == 0, proc.stderr
    assert b"message delivered, but logging it failed" in proc.stderr
    assert len(files_in(os.path.join(env.maildir, "new"))) == 1


def test_mbox_folder_uses_the_formats_separator(env):
    # No namespace separator set: mbox's own ("/"), as Dovecot, so a/b is a folder.
    proc = env.lda("-o", "mail_location=mbox:~/mail:INBOX=~/mail/inbox", "-m", "a/b",
                   "-f", "s@example.org")
    assert proc.returncode == 0, proc.stderr
    folder = os.path.join(env.user.pw_dir, "mail", "a", "b")
    data = open(folder, "rb").read()
    assert data.startswith(b"From s@example.org ") and MSG in data
    assert "saved mail to a/b" in open(env.log).read()


@pytest.mark.parametrize("rel", ["mailslot/cli.py", "mailslot/storage/dirs.py"])
def test_installed_bytecode_names_the_installed_source(installed, rel):
    # make install byte-compiled with the package's parent as the name base, so a
    # traceback said .../python/cli.py for .../python/mailslot/cli.py.
    import importlib.util
    import marshal
    libdir = installed[installed.rindex("/usr/lib/mailslot"):]    # without DESTDIR
    source = os.path.join(installed, "python", rel)
    with open(importlib.util.cache_from_source(source), "rb") as f:
        code = marshal.loads(f.read()[16:])
    assert code.co_filename == os.path.join(libdir, "python", rel)
