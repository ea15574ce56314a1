"""make demo: deliver the sample messages through the whole pipeline and show the result.

Run as root (a fresh Debian machine), it shows what mailslot is for: delivery to
virtual users with their own uids, without setuid-root Python.

  nobody:nogroup (as Postfix's pipe user)
    -> demo/out/root/usr/lib/mailslot/mailslot-relay   root:nogroup 4750, a real setuid
       binary built with its policy at demo/out/etc/relay.policy
       -> python3 -I -S mailslot-lda, as uid 5001 (bob) or 5002 (alice), the ids a
          Dovecot-format passwd-file (demo/out/etc/users) gives them
          -> demo/out/vmail/<user>/Maildir, files owned by that uid

The engine is installed as a package would install it (`make install
DESTDIR=demo/out/root`). Each message in demo/messages/ is handed over with the
arguments Postfix's pipe transport uses (`-f ${sender} -a ${recipient}
-d ${user} -m ${extension}`). Then the Maildirs and their dovecot-uidlist files are
read back and summarised. Mail the engine sends (bob's Sieve rejection, alice's
vacation reply) goes to a small SMTP server this script starts on 127.0.0.1
(submission_host), and is shown whole.

Then the same engine as an LMTP server: mailslot-lmtpd, installed alike, runs as one
"vmail" uid (5010) for a single-uid domain (dave, erin) and is sent one transaction
with three recipients, one of them unknown; every reply is shown (one per recipient
after the data, as RFC 2033 asks).

Run as an ordinary user, there is no relay (it needs root to install): the engine is
run directly as that user, into demo/out/vmail/<you>/Maildir.
"""

import grp
import os
import pwd
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
ROOT = os.path.join(OUT, "root")
LIB = os.path.join(ROOT, "usr/lib/mailslot")
ENGINE = os.path.join(LIB, "mailslot-lda")
ADMIN = os.path.join(LIB, "mailslot")
RELAY = os.path.join(LIB, "mailslot-relay")
ETC = os.path.join(OUT, "etc")
CONFIG = os.path.join(ETC, "mailslot.yaml")
POLICY = os.path.join(ETC, "relay.policy")
USERS = os.path.join(ETC, "users")
VMAIL = os.path.join(OUT, "vmail")
CALLER_GROUP = "nogroup"        # the group the relay lets in (Postfix's would be secmail)

# Virtual users: name -> (uid, gid). They exist only in the passwd-file.
VIRTUAL_USERS = {"bob": (5001, 5001), "alice": (5002, 5002)}

# message file -> (envelope sender, envelope recipient, expected exit code)
ENVELOPES = {
    "01-plain.eml": ("alice@example.org", "bob@example.org", 0),
    "02-attachment.eml": ("carol@example.net", "bob@example.org", 0),
    "03-8bit.eml": ("juergen@example.de", "alice@example.org", 0),
    "04-detail.eml": ("announce-bounces@lists.example.com", "bob+lists@example.org", 0),
    "05-invoice.eml": ("orders@shop.example.com", "bob+Shopping@example.org", 0),
    "06-offer.eml": ("offers@spam.example", "bob@example.org", 0),
    "07-question.eml": ("carol@example.net", "alice@example.org", 0),
}
SIEVE_USERS = ("bob", "alice")  # users given demo/<user>.sieve as ~/.dovecot.sieve

CONFIG_TEXT = """\
# mailslot demo configuration (made by demo/run_demo.py)
mail_location: maildir:~/Maildir
log_path: ~/mailslot.log
namespace:
  inbox:
    separator: "/"
recipient_delimiter: "+"
lda_mailbox_autocreate: yes
lda_mailbox_autosubscribe: yes
first_valid_uid: {first_uid}
hostname: mx.example.org
postmaster_address: postmaster@example.org
submission_host: {sink}
userdb:
  - driver: passwd-file
    args: {users}
"""

POLICY_TEXT = """\
# mailslot-relay policy for make demo (made by demo/run_demo.py)
caller_groups = {caller_group}
target_uids = 5000-5999
target_gids = 5000-5999
interpreter = /usr/bin/python3
entry = {engine}
resolver = passwd-file
passwd_file = {users}
no_new_privs = no
caller_config = yes
caller_mail_path = no
"""


def main():
    sys.path.insert(0, REPO)
    from tests.send.smtpsink import SmtpSink
    with SmtpSink() as sink:
        code = deliver_all(sink)
        if code == 0:
            show_sent(sink)
        return code


def show_sent(sink):
    """Print what the engine sent to the SMTP sink, envelope first."""
    print(f"Mail the engine sent (to the demo's SMTP server on {sink.address}):\n")
    for mail in sink.wait(2):
        print(f"  MAIL FROM:<{mail.sender}> RCPT TO:{', '.join(f'<{r}>' for r in mail.recipients)}")
        for line in mail.data.decode("utf-8", "replace").split("\n"):
            print("  | " + line)
        print()


def deliver_all(sink):
    as_root = os.geteuid() == 0
    prepare(as_root, sink.address)
    caller = pwd.getpwnam("nobody") if as_root else pwd.getpwuid(os.getuid())
    if as_root:
        import stat
        st = os.stat(RELAY)
        print(f"{stat.filemode(st.st_mode)} {pwd.getpwuid(st.st_uid).pw_name}:"
              f"{grp.getgrgid(st.st_gid).gr_name} {RELAY}")
        print(f"Delivering as {caller.pw_name}:{CALLER_GROUP} through the setuid "
              f"mailslot-relay to virtual users {', '.join(VIRTUAL_USERS)}\n")
    else:
        print(f"Not root: no relay; delivering as {caller.pw_name} directly\n")
    for name, (sender, recipient, expected) in sorted(ENVELOPES.items()):
        user = recipient.partition("@")[0].partition("+")[0]
        # As Postfix's pipe: -f ${sender} -a ${original_recipient} -r ${recipient}.
        args = ["-c", CONFIG, "-f", sender, "-a", recipient, "-r", recipient]
        argv = [RELAY] + args + ["-d", user] if as_root else [ENGINE] + args
        with open(os.path.join(HERE, "messages", name), "rb") as f:
            proc = run_as(caller, argv, stdin=f, as_root=as_root)
        reason = proc.stderr.decode("utf-8", "replace").strip()
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {reason}"
        print(f"  {name:<18} {sender:<35} -> {recipient:<26} {status}")
        if proc.returncode != expected:
            sys.stderr.write(f"demo: expected exit {expected}\n{reason}\n")
            return 1
    print()
    summarise()
    return deliver_lmtp(as_root)


LMTP_DIR = os.path.join(OUT, "lmtp")
LMTP_UID = 5010                 # the single "vmail" uid of the LMTP domain
LMTP_USERS = ("dave", "erin")


def deliver_lmtp(as_root):
    """One LMTP transaction through mailslot-lmtpd; print the dialogue."""
    import signal
    import socket
    import time
    uid, gid = (LMTP_UID, LMTP_UID) if as_root else (os.getuid(), os.getgid())
    os.makedirs(LMTP_DIR)
    os.chmod(LMTP_DIR, 0o755)
    lines = []
    for name in LMTP_USERS:
        home = os.path.join(LMTP_DIR, name)
        os.makedirs(home, mode=0o700)
        lines.append(f"{name}::{uid}:{gid}::{home}::\n")
    users, conf = os.path.join(LMTP_DIR, "users"), os.path.join(LMTP_DIR, "mailslot.yaml")
    sock_path = os.path.join(LMTP_DIR, "lmtp")
    write(users, "".join(lines))
    write(conf, f"mail_location: maildir:~/Maildir\nlog_path: ~/mailslot.log\n"
                f"hostname: lmtp.example.org\nfirst_valid_uid: {min(uid, 1000)}\n"
                f"lmtp_listen: unix:{sock_path}\n"
                f"userdb:\n  - driver: passwd-file\n"
                f"    args: username_format=%n {users}\n")
    for path in [LMTP_DIR] + [os.path.join(LMTP_DIR, n) for n in LMTP_USERS]:
        os.chown(path, uid, gid)
    argv = [os.path.join(LIB, "mailslot-lmtpd"), "-c", conf, "--foreground"]
    if as_root:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] + argv
    print(f"mailslot-lmtpd as uid {uid} on {sock_path}:")
    server = subprocess.Popen(argv, env={"PATH": "/usr/bin:/bin"},
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(sock_path):
                break
            time.sleep(0.05)
        with open(os.path.join(HERE, "messages", "01-plain.eml"), "rb") as f:
            body = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        body = b"\r\n".join(b"." + l if l.startswith(b".") else l
                             for l in body.split(b"\r\n"))
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(sock_path)
        reader = conn.makefile("rb")

        def replies(n):
            for _ in range(n):
                while True:
                    line = reader.readline().decode().rstrip("\r\n")
                    print(f"  S: {line}")
                    if line[3:4] != "-":
                        break

        def send(text, n):
            for line in text.split("\r\n")[:-1]:
                print(f"  C: {line}")
            conn.sendall(text.encode())
            replies(n)

        replies(1)
        send("LHLO mx.example.org\r\n", 1)
        send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@example.com>\r\n"
             "RCPT TO:<nosuch@example.com>\r\nRCPT TO:<erin@example.com>\r\n"
             "DATA\r\n", 5)
        print("  C: (the message, 01-plain.eml, and the final dot)")
        conn.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        replies(2)                      # one per accepted recipient: dave, erin
        send("QUIT\r\n", 1)
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    for name in LMTP_USERS:
        new = os.path.join(LMTP_DIR, name, "Maildir", "new")
        for entry in sorted(os.listdir(new)):
            print(f"  {name}: {os.path.join(new, entry)} (uid {os.stat(os.path.join(new, entry)).st_uid})")
    print()
    return 0


def prepare(as_root, sink_address):
    """Install the engine (and relay), write configuration, make the users' homes."""
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for path in (OUT, ETC, VMAIL):
        os.makedirs(path)
        os.chmod(path, 0o755)
    subprocess.run(["make", "-s", "install", f"DESTDIR={ROOT}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    users = VIRTUAL_USERS if as_root else {
        pwd.getpwuid(os.getuid()).pw_name: (os.getuid(), os.getgid())}
    lines = []
    for name, (uid, gid) in users.items():
        home = os.path.join(VMAIL, name)
        os.makedirs(home, mode=0o700)
        if as_root:
            os.chown(home, uid, gid)
        lines.append(f"{name}:{{PLAIN}}demo:{uid}:{gid}::{home}::\n")
        script = os.path.join(HERE, f"{name}.sieve")
        if name in SIEVE_USERS or (not as_root and os.path.exists(script)):
            target = os.path.join(home, ".dovecot.sieve")
            shutil.copy(script if os.path.exists(script)
                        else os.path.join(HERE, "bob.sieve"), target)
            if as_root:
                os.chown(target, uid, gid)
    write(USERS, "".join(lines))
    first_uid = min(uid for uid, _ in users.values())
    write(CONFIG, CONFIG_TEXT.format(users=USERS, first_uid=first_uid,
                                     sink=sink_address))
    if not as_root:
        return
    # The relay reads its policy from a path fixed at build time: build a copy whose
    # policy is demo/out/etc/relay.policy, and install it as a package would, setuid
    # root and executable only by the caller group.
    subprocess.run(["make", "-s", "-C", os.path.join(REPO, "helper_c"),
                    f"OUT={os.path.join(OUT, 'build')}", f"POLICY_PATH={POLICY}", "all"],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.copy(os.path.join(OUT, "build", "mailslot-relay"), RELAY)
    os.chown(RELAY, 0, grp.getgrnam(CALLER_GROUP).gr_gid)
    os.chmod(RELAY, 0o4750)
    write(POLICY, POLICY_TEXT.format(caller_group=CALLER_GROUP, engine=ENGINE,
                                     users=USERS))
    # As an administrator would: check the settings and refresh their cache.
    subprocess.run([ADMIN, "config", "-c", CONFIG, "-n"], check=True,
                   stdout=subprocess.DEVNULL)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def run_as(entry, argv, stdin, as_root):
    env = {"PATH": "/usr/bin:/bin", "USER": entry.pw_name, "LOGNAME": entry.pw_name,
           "HOME": os.path.join(VMAIL, entry.pw_name)}
    if as_root:
        gid = grp.getgrnam(CALLER_GROUP).gr_gid
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={gid}",
                "--clear-groups", "--"] + argv
    return subprocess.run(argv, stdin=stdin, env=env, capture_output=True)


def summarise():
    """Print, per user: mailbox, UID, size, owner and subject of each message."""
    for user in sorted(os.listdir(VMAIL)):
        maildir = os.path.join(VMAIL, user, "Maildir")
        if not os.path.isdir(maildir):
            continue
        print(f"{user}: {maildir}")
        print(f"  {'mailbox':<16} {'uid':>3} {'size':>5} {'owner':>5} {'flags':<18} subject")
        for box, base in mailboxes(maildir):
            uids = read_uidlist(base)
            keywords = read_keywords(base)
            for sub in ("new", "cur"):
                for name in sorted(os.listdir(os.path.join(base, sub))):
                    path = os.path.join(base, sub, name)
                    key = name.split(":")[0]
                    size = key.partition(",S=")[2].partition(",")[0]
                    flags = flag_names(name.partition(":2,")[2], keywords)
                    print(f"  {box:<16} {uids.get(key, '-'):>3} {size:>5} "
                          f"{os.stat(path).st_uid:>5} {flags:<18} {read_subject(path)}")
        subs = os.path.join(maildir, "subscriptions")
        if os.path.exists(subs):
            names = [l for l in open(subs).read().splitlines()[1:] if l.strip()]
            # subscriptions v2 separates hierarchy levels with a tab.
            print(f"  subscribed: {', '.join(n.replace(chr(9), '/') for n in names)}")
        log = os.path.join(VMAIL, user, "mailslot.log")
        if os.path.exists(log):
            print("  log:")
            with open(log, encoding="utf-8", errors="replace") as f:
                for line in f:
                    print("    " + line.rstrip("\n"))
        print()


SYSTEM_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                "T": "\\Deleted"}


def read_keywords(base):
    """{letter: keyword} from a Maildir folder's dovecot-keywords ("<index> <name>")."""
    try:
        with open(os.path.join(base, "dovecot-keywords"), encoding="ascii") as f:
            pairs = [line.rstrip("\n").partition(" ") for line in f]
    except FileNotFoundError:
        return {}
    return {chr(ord("a") + int(i)): name for i, _, name in pairs if i.isdigit()}


def flag_names(letters, keywords):
    """The IMAP names of a Maildir file name's info letters."""
    return " ".join(SYSTEM_FLAGS.get(c) or keywords.get(c, c) for c in letters)


def mailboxes(maildir):
    """Yield (name, directory): INBOX first, then the Maildir++ folders."""
    yield "INBOX", maildir
    for entry in sorted(os.listdir(maildir)):
        path = os.path.join(maildir, entry)
        if entry.startswith(".") and entry not in (".", "..") and os.path.isdir(path):
            yield entry[1:].replace(".", "/"), path


def read_uidlist(base):
    uids = {}
    path = os.path.join(base, "dovecot-uidlist")
    if os.path.exists(path):
        with open(path) as f:
            next(f, None)
            for line in f:
                uid, _, rest = line.rstrip("\n").partition(" ")
                uids[rest.rpartition(":")[2]] = uid
    return uids


def read_subject(path):
    from email.header import decode_header, make_header
    with open(path, "rb") as f:
        for raw in f:
            if raw in (b"\n", b"\r\n"):
                break
            if raw.lower().startswith(b"subject:"):
                text = raw[8:].decode("utf-8", "replace").strip()
                return str(make_header(decode_header(text)))
    return ""


if __name__ == "__main__":
    sys.exit(main())
