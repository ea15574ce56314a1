"""A private Postfix instance for end-to-end tests, and the mailslot install it uses.

Postfix comes from Debian's packages (`postfix`, installed by `make deps-test`
preseeded to "No configuration"); the system's /etc/postfix is never read or
written. Each session gets, under one temp dir:

  pf-etc/      config_directory: main.cf and master.cf written here
  pf-spool/    queue_directory;  pf-data/ data_directory;  pf-data/maillog
  root/        `make install DESTDIR=root PREFIX=/usr` of this tree, with the relay
               built to read ms-etc/relay.policy and installed 4750 root:<caller group>
  ms-etc/      mailslot.yaml, relay.policy, users (a Dovecot passwd-file)
  homes/       the test users' homes

Postfix listens on 127.0.0.1 only, on a free port, and is stopped by the fixture.
The MTA lines are the shipped examples (packaging/examples/postfix/: master.cf-virtual,
master.cf-vmail, main.cf-virtual, vmailbox compiled with postmap,
main.cf-system-users), the files docs/deployment.md shows, with the install paths,
domains and accounts substituted; master.cf-vmail's service is renamed (vmailslot)
so that it can run beside the relay's, for its own domain (transport_maps).

System users' mail goes to mbox files in a spool directory with the lock group
(mailspool/, root:mail 2775 like /var/mail; mailslot-dotlock is built for it). Virtual users
carry userdb_mail=maildir:~/Maildir in the passwd-file.

Accounts: a caller group and pipe user for the relay (mslt-pfsec, mslt-pfmta), a
system user delivered by local(8)'s mailbox_command (mslt-pfsys), and two virtual
users (v1, v2 @ virt.mailslot.test) with uids that have no passwd entry, resolved
by the relay and the engine from the passwd-file; recipe 3's vmail uid
(mslt-pfvmail) and its one mailbox vm1@vmail.mailslot.test, in the same passwd-file
with the vmail uid.
"""
import grp
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import time

from tests.support import REPO

DAEMON_DIR = "/usr/lib/postfix/sbin"
EXAMPLES = os.path.join(REPO, "packaging", "examples", "postfix")
CALLER_GROUP = "mslt-pfsec"
PIPE_USER = "mslt-pfmta"
SYSTEM_USER = "mslt-pfsys"
SYSTEM_DOMAIN = "sys.mailslot.test"
VIRTUAL_DOMAIN = "virt.mailslot.test"
# Recipe 3 (master.cf-vmail): one uid for every mailbox of its domain, no relay.
VMAIL_USER = "mslt-pfvmail"
VMAIL_DOMAIN = "vmail.mailslot.test"
VMAIL_NAME = "vm1"
VMAIL_SERVICE = "vmailslot"             # master.cf-vmail's service, renamed beside the relay's
# What the example main.cf-virtual's domain stands for here: both virtual domains.
VIRTUAL_DOMAINS = f"{VIRTUAL_DOMAIN} {VMAIL_DOMAIN}"
VIRTUAL_USERS = ("v1", "v2")
# What the shipped examples name, replaced by the test's own.
EXAMPLE_DOMAIN = "example.org"
EXAMPLE_ADDRESSES = ("alice@example.org", "bob@example.org")
EXAMPLE_VMAILBOX = "/etc/postfix/vmailbox"
# The mbox storage (pyside/mailslot/storage/mbox.py) arrives with its own issue.
FREE_ID_RANGE = range(61000, 62000)     # numeric ids with no passwd/group entry
START_TIMEOUT = 30                      # seconds for master to accept SMTP
DELIVERY_TIMEOUT = 30                   # seconds for one message to be delivered
STOP_TIMEOUT = 20


# The master.cf services every private test instance runs (queue manager, cleanup,
# bounces, address verification, logging to maillog_file through postlogd): the
# suites add their own listener and delivery transports (base_master_cf).
BASE_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def base_master_cf(extra=()):
    """A private instance's master.cf: BASE_MASTER_SERVICES and then extra, the
    suite's own lines (an smtpd listener, lmtp, smtp/relay, local, pipe services),
    each one master.cf entry (an entry may span lines with indented continuations)."""
    return BASE_MASTER_SERVICES + "".join(line.rstrip("\n") + "\n" for line in extra)


class PostfixError(Exception):
    """The private Postfix instance could not be set up or did not behave."""


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if proc.returncode != 0:
        raise PostfixError(f"{' '.join(cmd)}: exit {proc.returncode}: "
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ids(count):
    """count numbers in FREE_ID_RANGE that are neither a uid nor a gid here."""
    found = []
    for n in FREE_ID_RANGE:
        try:
            pwd.getpwuid(n)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(n)
            continue
        except KeyError:
            pass
        found.append(n)
        if len(found) == count:
            return found
    raise PostfixError("no free uids in the test range")


def _exists(kind, name):
    try:
        (grp.getgrnam if kind == "group" else pwd.getpwnam)(name)
        return True
    except KeyError:
        return False


def remove_accounts():
    for user in (PIPE_USER, SYSTEM_USER, VMAIL_USER):
        subprocess.run(["userdel", "-f", user], capture_output=True)
    for group in (CALLER_GROUP, SYSTEM_USER, VMAIL_USER):
        subprocess.run(["groupdel", group], capture_output=True)


class VirtualUser:
    def __init__(self, name, uid, home):
        self.name, self.uid, self.gid, self.home = name, uid, uid, home
        self.address = f"{name}@{VIRTUAL_DOMAIN}"


class PostfixInstance:
    """Set up, start, use and stop the private Postfix (see the module docstring)."""

    def __init__(self, base):
        self.base = base
        self.pf_etc = os.path.join(base, "pf-etc")
        self.spool = os.path.join(base, "pf-spool")
        self.data = os.path.join(base, "pf-data")
        self.maillog = os.path.join(self.data, "maillog")
        self.root = os.path.join(base, "root")
        self.build = os.path.join(base, "build")
        self.ms_etc = os.path.join(base, "ms-etc")
        self.settings = os.path.join(self.ms_etc, "mailslot.yaml")
        self.policy = os.path.join(self.ms_etc, "relay.policy")
        self.passwd_file = os.path.join(self.ms_etc, "users")
        self.homes = os.path.join(base, "homes")
        self.mail_spool = os.path.join(base, "mailspool")
        self.libdir = os.path.join(self.root, "usr/lib/mailslot")
        self.port = _free_port()
        self.virtual = []
        self.system_user = None

    # -- set-up ---------------------------------------------------------------------

    def setup(self):
        for d in (self.pf_etc, self.spool, self.data, self.ms_etc, self.homes):
            os.makedirs(d, mode=0o755)
        # master takes its lock and postlogd writes the maillog here, as postfix.
        postfix = pwd.getpwnam("postfix")
        os.chown(self.data, postfix.pw_uid, postfix.pw_gid)
        # Like Debian's /var/mail: only root and the mail group create files here.
        os.mkdir(self.mail_spool)
        os.chown(self.mail_spool, 0, grp.getgrnam("mail").gr_gid)
        os.chmod(self.mail_spool, 0o2775)
        self._accounts()
        self._install_mailslot()
        self._write_mailslot_settings()
        self._write_postfix_config()

    def _accounts(self):
        remove_accounts()
        _run(["groupadd", "-r", CALLER_GROUP])
        _run(["useradd", "-r", "-M", "-g", CALLER_GROUP, "-d", "/nonexistent",
              "-s", "/usr/sbin/nologin", PIPE_USER])
        # An ordinary login (uid >= 1000) with a home, as local(8) delivers to.
        home = os.path.join(self.homes, SYSTEM_USER)
        _run(["useradd", "-U", "-m", "-d", home, "-s", "/usr/sbin/nologin", SYSTEM_USER])
        os.chmod(home, 0o700)
        self.system_user = pwd.getpwnam(SYSTEM_USER)
        # The vmail uid and its mailboxes' homes below one directory it owns.
        vmail_base = os.path.join(self.homes, "vmail")
        _run(["useradd", "-r", "-U", "-M", "-d", vmail_base, "-s", "/usr/sbin/nologin",
              VMAIL_USER])
        self.vmail_user = pwd.getpwnam(VMAIL_USER)
        os.mkdir(vmail_base, 0o700)
        os.chown(vmail_base, self.vmail_user.pw_uid, self.vmail_user.pw_gid)
        self.vmail = VirtualUser(VMAIL_NAME, self.vmail_user.pw_uid,
                                 os.path.join(vmail_base, VMAIL_NAME))
        self.vmail.gid = self.vmail_user.pw_gid
        self.vmail.address = f"{VMAIL_NAME}@{VMAIL_DOMAIN}"
        for name, uid in zip(VIRTUAL_USERS, _free_ids(len(VIRTUAL_USERS))):
            home = os.path.join(self.homes, name)
            os.mkdir(home, 0o700)
            os.chown(home, uid, uid)
            self.virtual.append(VirtualUser(name, uid, home))

    def _install_mailslot(self):
        # The real install recipe; the relay is built into our own OUT so that its
        # compiled-in policy path points here, and chowned to our caller group.
        _run(["make", "-s", "install", f"DESTDIR={self.root}", "PREFIX=/usr",
              f"OUT={self.build}", f"POLICY_PATH={self.policy}",
              f"SPOOL_DIR={self.mail_spool}", f"RELAY_GROUP={CALLER_GROUP}"], cwd=REPO)
        relay = os.stat(os.path.join(self.libdir, "mailslot-relay"))
        if relay.st_mode & 0o7777 != 0o4750 or relay.st_gid != grp.getgrnam(CALLER_GROUP).gr_gid:
            raise PostfixError("make install did not install the relay 4750 root:caller group")

    def _write_mailslot_settings(self):
        lines = [f"{v.address}::{v.uid}:{v.gid}::{v.home}::userdb_mail=maildir:~/Maildir"
                 for v in self.virtual + [self.vmail]]
        self._write_root_file(self.passwd_file, "\n".join(lines) + "\n")
        location = f"mbox:~/mail:INBOX={self.mail_spool}/%u"
        self._write_root_file(self.settings, (
            f"mail_location: {location}\n"
            "mail_privileged_group: mail\n"
            "log_path: ~/mailslot.log\n"
            "hostname: mx.mailslot.test\n"
            "postmaster_address: postmaster@mailslot.test\n"
            "userdb:\n"
            "  - driver: passwd-file\n"
            f"    args: {self.passwd_file}\n"
            "  - driver: passwd\n"))
        ids = ",".join(str(v.uid) for v in self.virtual)
        self._write_root_file(self.policy, (
            "# mailslot-relay policy of the Postfix end-to-end tests\n"
            f"caller_groups = {CALLER_GROUP}\n"
            f"target_uids = {ids}\n"
            f"target_gids = {ids}\n"
            "interpreter = /usr/bin/python3\n"
            f"entry = {os.path.join(self.libdir, 'mailslot-lda')}\n"
            "resolver = passwd-file\n"
            f"passwd_file = {self.passwd_file}\n"
            "caller_config = yes\n"))
        # The administrator's step after editing settings: check them and write the
        # settings cache that delivering users cannot write.
        _run([os.path.join(self.libdir, "mailslot"), "config", "-c", self.settings])

    @staticmethod
    def _write_root_file(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)

    def example_master_line(self):
        """The shipped master.cf-virtual entry, pointed at this install and accounts."""
        text = _read_example("master.cf-virtual")
        text = text.replace("user=mailslot:secmail", f"user={PIPE_USER}:{CALLER_GROUP}")
        relay = os.path.join(self.libdir, "mailslot-relay")
        return text.replace("/usr/lib/mailslot/mailslot-relay", f"{relay} -c {self.settings}")

    def example_mailbox_command(self):
        """The shipped main.cf-system-users mailbox_command, pointed at this install."""
        for line in _read_example("main.cf-system-users").splitlines():
            if line.startswith("mailbox_command ="):
                lda = os.path.join(self.libdir, "mailslot-lda")
                return line.replace("/usr/lib/mailslot/mailslot-lda", f"{lda} -c {self.settings}")
        raise PostfixError("main.cf-system-users has no mailbox_command line")

    def example_vmailbox(self):
        """The shipped vmailbox map, with the test's virtual addresses for its two."""
        text = _read_example("vmailbox", keep_comments=True)
        for example, user in zip(EXAMPLE_ADDRESSES, self.virtual):
            if example not in text:
                raise PostfixError(f"vmailbox has no line for {example}")
            text = text.replace(example, user.address)
        return text + f"{self.vmail.address}   ok\n"

    def example_vmail_line(self):
        """The shipped master.cf-vmail entry as the service VMAIL_SERVICE, run as the
        test's vmail user, pointed at this install."""
        text = _read_example("master.cf-vmail")
        if not text.startswith("mailslot ") or "user=vmail " not in text:
            raise PostfixError("master.cf-vmail is not a 'mailslot' service with user=vmail")
        text = VMAIL_SERVICE + text[len("mailslot"):]
        text = text.replace("user=vmail ", f"user={VMAIL_USER} ")
        lda = os.path.join(self.libdir, "mailslot-lda")
        return text.replace("/usr/lib/mailslot/mailslot-lda", f"{lda} -c {self.settings}")

    def example_main_virtual(self, vmailbox):
        """The shipped main.cf-virtual, pointed at the test's domain and map."""
        text = _read_example("main.cf-virtual")
        for example, ours in ((EXAMPLE_VMAILBOX, vmailbox), (EXAMPLE_DOMAIN, VIRTUAL_DOMAINS)):
            if example not in text:
                raise PostfixError(f"main.cf-virtual does not name {example}")
            text = text.replace(example, ours)
        return text.strip()

    def _write_postfix_config(self):
        # The example map and its postmap, as docs/deployment.md says to compile it.
        vmailbox = os.path.join(self.pf_etc, "vmailbox")
        with open(vmailbox, "w") as f:
            f.write(self.example_vmailbox())
        # main.cf-system-users sets recipient_delimiter too: the same value, once.
        system = self.example_mailbox_command()
        virtual = "\n".join(line for line in self.example_main_virtual(vmailbox).splitlines()
                            if line.strip() != "recipient_delimiter = +")
        # Recipe 3's domain goes to its own service (master.cf-vmail's, renamed).
        transport = os.path.join(self.pf_etc, "transport")
        with open(transport, "w") as f:
            f.write(f"{VMAIL_DOMAIN} {VMAIL_SERVICE}:\n")
        main = f"""\
# Private test instance: loopback only, no outbound mail, nothing from /etc/postfix.
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mailslot.test
mydomain = mailslot.test
myorigin = {SYSTEM_DOMAIN}
mydestination = {SYSTEM_DOMAIN}, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
biff = no
# Nothing leaves this machine: every non-local destination fails at once.
default_transport = error:outbound mail is disabled in this test
relay_transport = error:outbound mail is disabled in this test
smtp_dns_support_level = disabled
maillog_file = {self.maillog}
maillog_file_prefixes = {self.base}
{system}
recipient_delimiter = +
{virtual}
transport_maps = texthash:{transport}
{VMAIL_SERVICE}_destination_recipient_limit = 1
# Retry deferred mail soon once the test has repaired the mailbox.
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
"""
        master = base_master_cf([
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "local     unix  -       n       n       -       -       local",
            "virtual   unix  -       n       n       -       -       virtual",
            self.example_master_line().rstrip("\n"),
            self.example_vmail_line().rstrip("\n")])
        for name, text in (("main.cf", main), ("master.cf", master)):
            with open(os.path.join(self.pf_etc, name), "w") as f:
                f.write(text)
        _run(["postmap", "-c", self.pf_etc, f"hash:{vmailbox}"])

    # -- running --------------------------------------------------------------------

    def postfix(self, *args):
        return _run(["postfix", "-c", self.pf_etc] + list(args))

    def postfix_tool(self, tool, *args):
        """Run one of Postfix's administration tools (postsuper ...) on this instance."""
        return _run([tool, "-c", self.pf_etc] + list(args))

    def start(self):
        self.postfix("start")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as s:
                    s.noop()
                return
            except OSError:
                time.sleep(0.3)
        raise PostfixError(f"Postfix did not accept SMTP on 127.0.0.1:{self.port} "
                           f"within {START_TIMEOUT} s:\n{self.log()}")

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        """postfix stop; if master is still there after STOP_TIMEOUT, kill it."""
        pid = self.master_pid()
        subprocess.run(["postfix", "-c", self.pf_etc, "stop"], capture_output=True,
                       timeout=60)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def send(self, sender, recipients, message):
        """Submit one message (bytes, LF or CRLF line ends) over SMTP to the instance."""
        # smtplib sends bytes as they are: bare LFs would reach Postfix as such, and a
        # message ending in LF would get an extra CRLF line before the final dot.
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.ehlo("client.mailslot.test")
            refused = s.sendmail(sender, recipients, message)
        if refused:
            raise PostfixError(f"recipients refused: {refused}")

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_for_message(self, maildir, marker, timeout=DELIVERY_TIMEOUT):
        """Paths of the files in maildir/new holding marker (bytes); waits until one
        appears or timeout runs out (then returns [])."""
        new = os.path.join(maildir, "new")
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
                path = os.path.join(new, name)
                try:
                    with open(path, "rb") as f:
                        if marker in f.read():
                            found.append(path)
                except FileNotFoundError:
                    continue
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def all_messages(self, marker):
        """Every file under homes/ that holds marker: where a message went."""
        found = []
        for top, _, files in os.walk(self.homes):
            for name in files:
                path = os.path.join(top, name)
                try:
                    with open(path, "rb") as f:
                        if marker in f.read():
                            found.append(path)
                except OSError:
                    continue
        return found

    def wait_for_log(self, pattern, timeout=DELIVERY_TIMEOUT):
        """The first maillog match of the regular expression, or None at timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.log())
            if m or time.monotonic() > deadline:
                return m
            time.sleep(0.2)

    def deferred(self):
        """Queue ids currently in the deferred queue (files under pf-spool/deferred)."""
        found = []
        for _, _, files in os.walk(os.path.join(self.spool, "deferred")):
            found.extend(files)
        return found

    def flush(self):
        self.postfix("flush")

    def cleanup(self):
        self.stop()
        remove_accounts()
        shutil.rmtree(self.base, ignore_errors=True)


def _read_example(name, keep_comments=False):
    with open(os.path.join(EXAMPLES, name)) as f:
        return "".join(line for line in f
                       if keep_comments or not line.lstrip().startswith("#"))
