"""The installed commands over the new userdbs: mailslot-lda --lookup and mailslot user.

`--lookup USER` is what the relay's lookup child runs: one line
"OK<tab>uid=N<tab>gid=N<tab>home=PATH" (exit 0), "NOTFOUND" (exit 67), or a
temporary failure (75). Run as nobody in Debian's python3, as installed.
"""

import os
import shutil
import sqlite3

import pytest

from tests.support import needs_root, world_tempdir
from tests.userdb.servers import as_account

pytestmark = needs_root


@pytest.fixture
def site():
    base = world_tempdir("mailslot-udbcmd-")
    db = os.path.join(base, "users.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (username TEXT, domain TEXT, home TEXT, uid, gid, "
                 "mail TEXT)")
    conn.execute("INSERT INTO users VALUES ('ann', 'example.org', '/v/ann', 5000, 5000, "
                 "'maildir:~/M')")
    conn.execute("INSERT INTO users VALUES ('tab', 'example.org', '/v/t\tx', 5001, 5001, "
                 "NULL)")
    conn.commit()
    conn.close()
    with open(os.path.join(base, "sql.conf"), "w") as f:
        f.write(f"driver = sqlite\nconnect = {db}\nuser_query = SELECT home, uid, gid, mail "
                "FROM users WHERE username = '%n' AND domain = '%d'\n")
    with open(os.path.join(base, "broken.conf"), "w") as f:
        f.write(f"driver = sqlite\nconnect = {base}/absent.sqlite\n")

    def conf(*blocks, name="mailslot.yaml"):
        path = os.path.join(base, name)
        with open(path, "w") as f:
            f.write("userdb:\n" + "".join(f"  - driver: {d}\n    args: {a}\n" for d, a in blocks))
        return path

    for path in os.listdir(base):
        os.chmod(os.path.join(base, path), 0o644)
    yield base, conf
    shutil.rmtree(base, ignore_errors=True)


def run(installed, program, *args):
    import pwd
    import subprocess
    argv = as_account(pwd.getpwnam("nobody")) + [os.path.join(installed, program), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"}, cwd="/")


@pytest.mark.parametrize("user,code,out", [
    ("ann@example.org", 0, "OK\tuid=5000\tgid=5000\thome=/v/ann\n"),
    ("Ann+lists@Example.ORG", 0, "OK\tuid=5000\tgid=5000\thome=/v/ann\n"),
    ("bob@example.org", 67, "NOTFOUND\n"),
    ("ann'--@example.org", 67, "NOTFOUND\n"),
    ("tab@example.org", 75, ""),               # a home the relay could not parse
])
def test_lookup_line(installed, site, user, code, out):
    base, conf = site
    path = conf(("sql", f"{base}/sql.conf"))
    proc = run(installed, "mailslot-lda", "-c", path, "--lookup", user)
    assert (proc.returncode, proc.stdout) == (code, out), proc.stderr


def test_lookup_failing_backend_is_75_and_says_why(installed, site):
    base, conf = site
    path = conf(("sql", f"{base}/broken.conf"), ("passwd", ""))
    proc = run(installed, "mailslot-lda", "-c", path, "--lookup", "nobody")
    assert proc.returncode == 75 and proc.stdout == ""
    assert "unable to open database" in proc.stderr


def test_lookup_chain_falls_through_to_static(installed, site):
    base, conf = site
    path = conf(("sql", f"{base}/sql.conf"),
                ("static", "uid=6000 gid=6000 home=/s/%d/%n allow_all_users=yes"))
    proc = run(installed, "mailslot-lda", "-c", path, "--lookup", "zed@example.net")
    assert proc.stdout == "OK\tuid=6000\tgid=6000\thome=/s/example.net/zed\n"


def test_mailslot_user_prints_fields_and_source(installed, site):
    base, conf = site
    path = conf(("sql", f"{base}/sql.conf"))
    proc = run(installed, "mailslot", "user", "-c", path, "ANN+x@example.org")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "field\tvalue", "user\tann@example.org", "uid\t5000", "gid\t5000", "home\t/v/ann",
        "source\tuserdb sql", "mail\tmaildir:~/M"]
    missing = run(installed, "mailslot", "user", "-c", path, "bob@example.org")
    assert missing.returncode == 67 and "User doesn't exist" in missing.stderr
