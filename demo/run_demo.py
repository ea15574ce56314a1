"""make demo: deliver the sample messages through mailslot-lda and show where they landed.

Installs the engine as a package would (`make install DESTDIR=demo/out/root`), writes
a configuration for a demo mailbox under demo/out/, and pipes each message in
demo/messages/ into the installed /usr/lib/mailslot/mailslot-lda the way Postfix's
pipe transport does (`-f ${sender} -a ${recipient} -m ${extension}`). The engine never
runs as root: run by root, the demo delivers as the unprivileged user "nobody".
Then it reads the Maildir and its dovecot-uidlist back and prints a summary.
"""

import os
import pwd
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
ROOT = os.path.join(OUT, "root")
ENGINE = os.path.join(ROOT, "usr/lib/mailslot/mailslot-lda")
ADMIN = os.path.join(ROOT, "usr/lib/mailslot/mailslot")
MAILDIR = os.path.join(OUT, "Maildir")
CONFIG = os.path.join(OUT, "mailslot.yaml")

# message file -> (envelope sender, envelope recipient)
ENVELOPES = {
    "01-plain.eml": ("alice@example.org", "bob@example.org"),
    "02-attachment.eml": ("carol@example.net", "bob@example.org"),
    "03-8bit.eml": ("juergen@example.de", "bob@example.org"),
    "04-detail.eml": ("announce-bounces@lists.example.com", "bob+lists@example.org"),
}

CONFIG_TEXT = """\
# mailslot demo configuration (made by demo/run_demo.py)
mail_location: maildir:{maildir}
hostname: demo.example.org
log_path: {out}/mailslot.log
mail_fsync: optimized
recipient_delimiter: "+"
lda_mailbox_autocreate: yes
lda_mailbox_autosubscribe: yes
first_valid_uid: 1
"""


def main():
    prepare()
    runner = delivery_user()
    print(f"Delivering {len(ENVELOPES)} sample messages as {runner.pw_name} "
          f"(uid {runner.pw_uid}) into {MAILDIR}\n")
    for name, (sender, recipient) in sorted(ENVELOPES.items()):
        extension = recipient.partition("@")[0].partition("+")[2]
        argv = [ENGINE, "-c", CONFIG, "-f", sender, "-a", recipient, "-m", extension]
        with open(os.path.join(HERE, "messages", name), "rb") as f:
            proc = run_as(runner, argv, stdin=f)
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        print(f"  {name:<20} -f {sender:<36} -a {recipient:<24} -> {status}")
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode("utf-8", "replace"))
            return 1
    print()
    summarise()
    log = os.path.join(OUT, "mailslot.log")
    if os.path.exists(log):
        print(f"\nDelivery log ({log}):")
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                print("  " + line.rstrip("\n"))
    return 0


def prepare():
    """Install the engine, write the config, make the mailbox's parent ours."""
    subprocess.run(["rm", "-rf", OUT], check=True)
    os.makedirs(OUT)
    subprocess.run(["make", "-s", "install", f"DESTDIR={ROOT}", "PREFIX=/usr"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    with open(CONFIG, "w") as f:
        f.write(CONFIG_TEXT.format(maildir=MAILDIR, out=OUT))
    os.chmod(CONFIG, 0o644)
    runner = delivery_user()
    if os.geteuid() == 0:
        # As an administrator would: check the settings and refresh their cache.
        subprocess.run([ADMIN, "config", "-c", CONFIG, "-n"], check=True,
                       stdout=subprocess.DEVNULL)
        os.chown(OUT, runner.pw_uid, runner.pw_gid)
        probe = run_as(runner, ["test", "-x", ENGINE])
        if probe.returncode != 0:
            sys.exit(f"demo: user {runner.pw_name} cannot reach {ENGINE}; "
                     "clone the repository where every user may read it (not /root)")


def delivery_user():
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody")
    return pwd.getpwuid(os.getuid())


def run_as(entry, argv, stdin=None):
    env = {"PATH": "/usr/bin:/bin", "USER": entry.pw_name, "LOGNAME": entry.pw_name,
           "HOME": OUT}
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", "--"] + argv
    return subprocess.run(argv, stdin=stdin, env=env, capture_output=True)


def summarise():
    """Print mailbox, UID, size and subject of every delivered message."""
    rows = []
    # INBOX (new/ at the root) first, then the folders.
    for folder in sorted(os.listdir(MAILDIR), key=lambda f: (f != "new", f)):
        path = os.path.join(MAILDIR, folder)
        if folder == "new" or (folder.startswith(".") and os.path.isdir(path)):
            box = "INBOX" if folder == "new" else folder[1:].replace(".", "/")
            base = MAILDIR if folder == "new" else path
            uids = read_uidlist(base)
            for sub in ("new", "cur"):
                for name in sorted(os.listdir(os.path.join(base, sub))):
                    key = name.split(":")[0]
                    subject = read_subject(os.path.join(base, sub, name))
                    size = key.partition(",S=")[2].partition(",")[0]
                    rows.append((box, uids.get(key, "-"), size, subject, f"{sub}/{name}"))
    print(f"{'mailbox':<8} {'uid':>3} {'size':>5}  {'subject':<34} file")
    for box, uid, size, subject, name in rows:
        print(f"{box:<8} {uid:>3} {size:>5}  {subject[:34]:<34} {name}")
    subs = os.path.join(MAILDIR, "subscriptions")
    if os.path.exists(subs):
        names = [l for l in open(subs).read().splitlines()[1:] if l.strip()]
        print(f"\nsubscribed: {', '.join(names)}")


def read_uidlist(base):
    uids = {}
    path = os.path.join(base, "dovecot-uidlist")
    if not os.path.exists(path):
        return uids
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
