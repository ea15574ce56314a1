"""Exim's pipe transport into mailslot-lda, with the shipped router and transport.

Debian's exim4-daemon-light conflicts with postfix as a package (both provide
mail-transport-agent), so it is not installed: `make exim` fetches it with
`apt-get download` and unpacks it under build/exim/ (the fixture runs that target
when the binary is missing). The unpacked exim4 runs as root with a private
configuration (-C): a main section of this test's, then the router and the
transport of packaging/examples/exim/exim4.conf-mailslot as shipped, with the
install path substituted. Each message is submitted with -odi, so Exim delivers it
before it exits; its own spool and logs are in a temp dir.

Exim needs its compiled-in user (Debian-exim) to exist; the fixture creates it when
it is missing and removes it again.
"""
import os
import pwd
import re
import shutil
import stat
import subprocess

import pytest

from tests.support import IS_ROOT, REPO, ensure_user, remove_user, run_as, world_tempdir

EXIM_ROOT = os.path.join(REPO, "build", "exim", "root")
EXIM = os.path.join(EXIM_ROOT, "usr", "sbin", "exim4")
EXIM_LIBS = os.path.join(EXIM_ROOT, "usr", "lib", "x86_64-linux-gnu")
EXAMPLE = os.path.join(REPO, "packaging", "examples", "exim", "exim4.conf-mailslot")
EXIM_USER = "Debian-exim"           # compiled into Debian's exim4
USER = "mslt-exim1"
DOMAIN = "exim.mailslot.test"

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root: runs Exim as root and "
                                "creates the user it delivers to (CI runs as root)")


def example_blocks():
    """(routers, transports): the example's driver blocks, comments dropped."""
    blocks, current = [], None
    with open(EXAMPLE) as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                current = [line]
                blocks.append(current)
            elif current is not None:
                current.append(line)
    routers = ["".join(b) for b in blocks if re.search(r"driver = (accept|redirect)", "".join(b))]
    transports = ["".join(b) for b in blocks if "driver = pipe" in "".join(b)]
    return routers, transports


class Exim:
    def __init__(self, base, installed, user):
        self.base, self.user = base, user
        self.spool = os.path.join(base, "spool")
        self.logs = os.path.join(base, "log")
        self.conf = os.path.join(base, "exim.conf")
        self.settings = os.path.join(base, "mailslot.yaml")
        self.lda = os.path.join(installed, "mailslot-lda")
        self.admin = os.path.join(installed, "mailslot")

    def write(self):
        exim_user = pwd.getpwnam(EXIM_USER)
        for d in (self.spool, self.logs):
            # Exim writes its spool and logs as its own user, as in /var/spool/exim4.
            os.mkdir(d, 0o750)
            os.chown(d, exim_user.pw_uid, exim_user.pw_gid)
        with open(self.settings, "w") as f:
            f.write("mail_location: maildir:~/Maildir\nlog_path: ~/mailslot.log\n"
                    "first_valid_uid: 100\nhostname: mx.exim.mailslot.test\n")
        os.chmod(self.settings, 0o644)
        subprocess.run([self.admin, "config", "-c", self.settings], check=True,
                       capture_output=True)
        routers, transports = example_blocks()
        assert routers and transports, "the example has a router and a pipe transport"
        lda = f"{self.lda} -c {self.settings}"
        transports = [t.replace("/usr/lib/mailslot/mailslot-lda", lda) for t in transports]
        assert all(lda in t for t in transports)
        with open(self.conf, "w") as f:
            f.write(f"""\
# Private test configuration: nothing from /etc/exim4, no network.
primary_hostname = mx.{DOMAIN}
qualify_domain = {DOMAIN}
spool_directory = {self.spool}
log_file_path = {self.logs}/%slog
never_users = root
# Exim re-executes itself to deliver: the unpacked binary, not /usr/sbin/exim4, and
# with the library unpacked beside it (Exim clears its environment otherwise).
exim_path = {EXIM}
keep_environment = LD_LIBRARY_PATH
begin routers
{"".join(routers)}
begin transports
{"".join(transports)}
# Exim's default retry rule (without one, a deferral fails at once).
begin retry
*   *   F,2h,15m; G,16h,1h,1.5; F,4d,6h
""")
        os.chmod(self.conf, 0o644)

    def run(self, *args, input=None):
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LD_LIBRARY_PATH": EXIM_LIBS}
        return subprocess.run([EXIM, "-C", self.conf, *args], input=input, env=env,
                              capture_output=True, timeout=120)

    def send(self, recipient, message, sender="sender@example.net"):
        """Queue the message, then deliver the queue in the foreground (-qff): the
        run that delivers is root's own with -C, so Exim keeps the privilege it
        needs to become the local user (a re-executed -odi delivery would not)."""
        proc = self.run("-odq", "-f", sender, recipient, input=message)
        if proc.returncode != 0:
            return proc
        return self.run("-qff")

    def mainlog(self):
        path = os.path.join(self.logs, "mainlog")
        return open(path, errors="replace").read() if os.path.exists(path) else ""

    def queue(self):
        return self.run("-bpc").stdout.decode().strip()


@pytest.fixture(scope="module")
def exim(installed):
    if not os.access(EXIM, os.X_OK):
        proc = subprocess.run(["make", "-s", "exim"], cwd=REPO, capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"make exim could not fetch Exim: {proc.stdout}{proc.stderr}")
    created = subprocess.run(["getent", "passwd", EXIM_USER], capture_output=True).returncode != 0
    if created:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                        "/nonexistent", "--shell", "/usr/sbin/nologin", EXIM_USER], check=True)
    base = world_tempdir("mslt-exim-")
    user = ensure_user(USER, os.path.join(base, "home"))
    instance = Exim(base, installed, user)
    instance.write()
    try:
        yield instance
    finally:
        shutil.rmtree(base, ignore_errors=True)
        remove_user(USER)
        if created:
            subprocess.run(["userdel", EXIM_USER], capture_output=True)
            subprocess.run(["groupdel", EXIM_USER], capture_output=True)


def new_messages(maildir, marker):
    new = os.path.join(maildir, "new")
    found = []
    for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
        with open(os.path.join(new, name), "rb") as f:
            data = f.read()
        if marker in data:
            found.append((os.path.join(new, name), data))
    return found


def test_exim_version_is_the_unpacked_package(exim):
    out = exim.run("-bV").stdout.decode()
    assert out.startswith("Exim version 4."), out


def test_pipe_transport_delivers_as_the_local_user(exim):
    marker = b"X-Test-Case: exim-pipe-1"
    msg = b"From: a@example.net\nTo: " + USER.encode() + b"\nSubject: exim\n" + marker + b"\n\nHi.\n"
    proc = exim.send(f"{USER}@{DOMAIN}", msg)
    assert proc.returncode == 0, proc.stderr
    found = new_messages(os.path.join(exim.user.pw_dir, "Maildir"), marker)
    assert len(found) == 1, exim.mainlog()[-3000:]
    path, data = found[0]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (exim.user.pw_uid, exim.user.pw_gid)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0
    # The transport's return_path_add and envelope_to_add, then the message.
    assert data.startswith(b"Return-path: <sender@example.net>\n"), data[:200]
    assert b"\nEnvelope-to: " + f"{USER}@{DOMAIN}".encode() in data
    assert data.endswith(b"\n\nHi.\n")
    assert re.search(rf"=> {USER} <{USER}@{DOMAIN}> R=mailslot_user T=mailslot_pipe",
                     exim.mainlog()), exim.mainlog()[-2000:]
    log = open(os.path.join(exim.user.pw_dir, "mailslot.log")).read()
    assert f"lda({USER})" in log and "saved mail to INBOX" in log


def test_suffix_picks_an_existing_folder(exim):
    # The user made the folder (here: a delivery with -m lists); the example's
    # dsearch lookup finds it, so +lists is filed there.
    made = run_as(exim.user, [exim.lda, "-c", exim.settings, "-m", "lists"],
                  input=b"Subject: make the folder\n\nx\n")
    assert made.returncode == 0, made.stderr
    marker = b"X-Test-Case: exim-suffix"
    proc = exim.send(f"{USER}+lists@{DOMAIN}", b"Subject: folder\n" + marker + b"\n\nx\n")
    assert proc.returncode == 0, proc.stderr
    maildir = os.path.join(exim.user.pw_dir, "Maildir")
    assert len(new_messages(os.path.join(maildir, ".lists"), marker)) == 1, exim.mainlog()[-2000:]
    assert new_messages(maildir, marker) == []


def test_suffix_naming_no_folder_files_into_inbox(exim):
    # Exim refuses sender-chosen (tainted) text in a pipe's arguments; the example
    # passes a suffix only as the name of a folder that exists, so a sender cannot
    # create folders: any other suffix is INBOX.
    marker = b"X-Test-Case: exim-unknown-suffix"
    proc = exim.send(f"{USER}+nosuch@{DOMAIN}", b"Subject: no folder\n" + marker + b"\n\nx\n")
    assert proc.returncode == 0, proc.stderr
    maildir = os.path.join(exim.user.pw_dir, "Maildir")
    assert len(new_messages(maildir, marker)) == 1, exim.mainlog()[-2000:]
    assert not os.path.exists(os.path.join(maildir, ".nosuch"))


def test_null_sender_reaches_the_engine_as_null(exim):
    marker = b"X-Test-Case: exim-null-sender"
    proc = exim.send(f"{USER}@{DOMAIN}", b"Subject: bounce\n" + marker + b"\n\nx\n", sender="")
    assert proc.returncode == 0, proc.stderr
    (_, data), = new_messages(os.path.join(exim.user.pw_dir, "Maildir"), marker)
    assert data.startswith(b"Return-path: <>\n"), data[:100]


def test_exit_75_defers_and_a_retry_delivers(exim):
    # A Maildir the user may not write: the engine exits 75, which the example's
    # temp_errors lists, so Exim keeps the message; once repaired, a queue run
    # delivers it.
    maildir = os.path.join(exim.user.pw_dir, "Maildir")
    exim.send(f"{USER}@{DOMAIN}", b"Subject: first\n\nx\n")        # the Maildir exists
    new = os.path.join(maildir, "new")
    marker = b"X-Test-Case: exim-defer"
    os.chmod(new, 0o500)
    try:
        proc = exim.send(f"{USER}@{DOMAIN}", b"Subject: later\n" + marker + b"\n\nx\n")
        assert proc.returncode == 0, proc.stderr
        assert exim.queue() == "1", exim.mainlog()[-2000:]
        assert re.search(r"== .* T=mailslot_pipe defer \(0\): Child process of mailslot_pipe "
                         r"transport returned 75", exim.mainlog()), \
            exim.mainlog()[-2000:]
        assert "mailslot-lda: " in exim.mainlog()
    finally:
        os.chmod(new, 0o700)
    proc = exim.run("-qff")
    assert proc.returncode == 0, proc.stderr
    assert len(new_messages(maildir, marker)) == 1, exim.mainlog()[-2000:]
    assert exim.queue() == "0"
