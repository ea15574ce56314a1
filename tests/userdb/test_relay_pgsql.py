"""Full delivery through mailslot-relay for a user found only in PostgreSQL.

The real chain: an MTA uid runs a test copy of mailslot-relay (setuid root, its
policy in a temp dir) with resolver = lookup; the relay forks the lookup child as
an unprivileged lookup user, which runs the installed engine's --lookup against
the private PostgreSQL; the relay checks the answer, drops to that uid (which has
no passwd entry anywhere) and execs the installed engine, which looks the user up
again and writes the Maildir. The message must land owned by the uid from the
database.

The relay's lookup child reads the default settings file, /etc/mailslot/
mailslot.yaml (the relay passes it no -c). The test gives it one in a private
mount namespace (unshare -m, bind mount over /etc/mailslot), so nothing outside
the test sees it; /etc/mailslot is created empty if missing and removed again.
"""

import grp
import os
import pwd
import shutil
import subprocess

import pytest

from tests.support import REPO, needs_root, world_tempdir

pytestmark = needs_root

CALLER_GROUP = "mslt-udbmail"
MTA = "mslt-udbmta"
LOOKUP_USER = "mslt-udblookup"
VIRTUAL_UID = 5150            # in PostgreSQL only: no passwd entry
ETC = "/etc/mailslot"
MSG = (b"From: s@example.org\nTo: pgvirt@example.org\nSubject: from postgres\n"
       b"Message-ID: <pg-relay@example.org>\n\nHello from the relay.\n")


def _quiet(*argv):
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def chain(pg_server, installed):
    for tool in ("unshare", "setpriv", "useradd", "make", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    try:
        pwd.getpwuid(VIRTUAL_UID)
        pytest.skip(f"uid {VIRTUAL_UID} has a passwd entry here; the test needs it free")
    except KeyError:
        pass
    base = world_tempdir("mailslot-udbrelay-")
    made_etc = not os.path.exists(ETC)
    try:
        _quiet("userdel", MTA)
        _quiet("userdel", LOOKUP_USER)
        _quiet("groupdel", CALLER_GROUP)
        subprocess.run(["groupadd", "-r", CALLER_GROUP], check=True)
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U", "-G",
                        CALLER_GROUP, MTA], check=True)
        subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "-U",
                        LOOKUP_USER], check=True)
        build = os.path.join(base, "build")
        policy = os.path.join(base, "relay.policy")
        subprocess.run(["make", "-s", "-C", os.path.join(REPO, "helper_c"), f"OUT={build}",
                        f"POLICY_PATH={policy}", f"SPOOL_DIR={base}/spool", "all"],
                       check=True, stdout=subprocess.DEVNULL)
        relay = os.path.join(base, "mailslot-relay")
        shutil.copy(os.path.join(build, "mailslot-relay"), relay)
        os.chown(relay, 0, grp.getgrnam(CALLER_GROUP).gr_gid)
        os.chmod(relay, 0o4750)
        engine = os.path.join(installed, "mailslot-lda")
        with open(policy, "w") as f:
            f.write(f"caller_groups = {CALLER_GROUP}\ntarget_uids = {VIRTUAL_UID}\n"
                    f"target_gids = {VIRTUAL_UID}\ninterpreter = /usr/bin/python3\n"
                    f"entry = {engine}\nresolver = lookup\nlookup_user = {LOOKUP_USER}\n"
                    f"lookup_entry = {engine}\n")
        os.chmod(policy, 0o644)
        home = os.path.join(base, "vhome", "pgvirt")
        os.makedirs(home)
        os.chmod(os.path.dirname(home), 0o755)
        os.chown(home, VIRTUAL_UID, VIRTUAL_UID)
        os.chmod(home, 0o700)
        pg_server.psql("INSERT INTO users VALUES ('pgvirt', 'example.org', "
                       f"'{home}', {VIRTUAL_UID}, {VIRTUAL_UID}, 'maildir:~/Maildir', NULL);",
                       database="mail")
        if made_etc:
            os.mkdir(ETC, 0o755)
        yield {"base": base, "relay": relay, "home": home, "pg": pg_server}
    finally:
        pg_server.psql("DELETE FROM users WHERE username = 'pgvirt';", database="mail")
        _quiet("userdel", MTA)
        _quiet("userdel", LOOKUP_USER)
        _quiet("groupdel", CALLER_GROUP)
        if made_etc:
            try:
                os.rmdir(ETC)
            except OSError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def settings_dir(chain, connect):
    """A directory to bind over /etc/mailslot: settings and the sql file."""
    path = world_tempdir("mailslot-udbetc-")
    with open(os.path.join(path, "mailslot.yaml"), "w") as f:
        f.write("mail_location: maildir:~/Maildir\nlog_path: ~/mailslot.log\n"
                "first_valid_uid: 1000\nhostname: relay.example.org\n"
                "userdb:\n  - driver: sql\n    args: /etc/mailslot/sql.conf\n")
    with open(os.path.join(path, "sql.conf"), "w") as f:
        f.write(f"driver = pgsql\nconnect = {connect}\nuser_query = SELECT home, uid, "
                "gid, mail FROM users WHERE username = '%n' AND domain = '%d'\n")
    for name in ("mailslot.yaml", "sql.conf"):
        os.chmod(os.path.join(path, name), 0o644)
    return path


def deliver(chain, etc_source, recipient):
    mta = pwd.getpwnam(MTA)
    script = ('mount --bind "$1" /etc/mailslot && exec setpriv --reuid="$2" --regid="$3" '
              '--init-groups "$4" -d "$5" -f s@example.org')
    return subprocess.run(["unshare", "--mount", "--", "sh", "-c", script, "sh", etc_source,
                           str(mta.pw_uid), str(mta.pw_gid), chain["relay"], recipient],
                          input=MSG, capture_output=True, timeout=120,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def new_mail(chain):
    new = os.path.join(chain["home"], "Maildir", "new")
    return sorted(os.listdir(new)) if os.path.isdir(new) else []


def test_user_only_in_postgresql_gets_the_mail_with_its_uid(chain):
    etc = settings_dir(chain, chain["pg"].connect())
    try:
        proc = deliver(chain, etc, "PgVirt+news@example.org")
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        files = new_mail(chain)
        assert len(files) == 1
        path = os.path.join(chain["home"], "Maildir", "new", files[0])
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (VIRTUAL_UID, VIRTUAL_UID)
        with open(path, "rb") as f:
            assert f.read() == MSG
        # The settings file was only ever visible inside the test's mount namespace.
        assert not os.path.exists(os.path.join(ETC, "mailslot.yaml"))
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def test_unknown_user_is_67_and_database_down_is_75(chain):
    etc = settings_dir(chain, chain["pg"].connect())
    down = settings_dir(chain, chain["pg"].connect(host="/nonexistent-mailslot-socket-dir"))
    try:
        before = new_mail(chain)
        unknown = deliver(chain, etc, "nobody-here@example.org")
        assert unknown.returncode == 67, unknown.stderr.decode(errors="replace")
        assert b"unknown-user" in unknown.stderr
        refused = deliver(chain, etc, "o'hara@example.org")   # auth_username_chars
        assert refused.returncode == 67, refused.stderr.decode(errors="replace")
        failed = deliver(chain, down, "pgvirt@example.org")
        assert failed.returncode == 75, failed.stderr.decode(errors="replace")
        assert new_mail(chain) == before
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(down, ignore_errors=True)
