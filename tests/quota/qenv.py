"""A private Dovecot with its quota plugin, and mailslot on the same Maildir.

    q = QuotaEnv.create(rules={"quota_rule": "*:storage=10k"}, userdb_fields=...)
    q.mailslot_lda(message, "-f", "s@example.org")       # cli.main as the test user
    q.mailslot("quota", "get", "-f", "tab")              # admin.main as the test user
    q.dovecot_lda(message)                                # Dovecot's own LDA
    q.doveadm_quota()                                     # doveadm -f tab quota get rows
    q.maildirsize()                                       # the file's text, or None

Dovecot gets `mail_plugins = quota` and `plugin { quota = maildir:User quota; ... }`
with the same rules that mailslot's settings (or its passwd-file userdb, as
userdb_<name>=<value> fields) carry, so that both programs see one configuration.
Everything runs as the unprivileged test user of tests/dovecot_env.py; outgoing
mail goes to a capture script that appends each message to a file.
"""

import os

from tests.dovecot_env import DovecotEnv

LDA_CODE = "import sys; from mailslot.cli import main; sys.exit(main(sys.argv[1:]))"
ADMIN_CODE = "import sys; from mailslot.admin import main; sys.exit(main(sys.argv[1:]))"
POSTMASTER = "postmaster@example.org"
CAPTURE = """#!/bin/sh
# Captures one outgoing message: its argv line, then the message, then a marker.
out="$(dirname "$0")/sent.txt"
{ echo "ARGV: $*"; cat; echo "--END--"; } >> "$out"
"""


class QuotaEnv:
    def __init__(self, env, conf, dovecot_rules):
        self.env, self.conf, self.dovecot_rules = env, conf, dovecot_rules
        self.home, self.user = env.home, env.user
        self.maildir = os.path.join(env.home, "Maildir")
        self.control = self.maildir
        self.sent_path = os.path.join(env.base, "sent.txt")

    @classmethod
    def create(cls, *, rules=None, userdb_fields=None, settings=None,
               mail_location="maildir:~/Maildir"):
        """rules: quota settings for both (mailslot's settings file and
        Dovecot's plugin block); userdb_fields: quota settings given to mailslot
        through its passwd-file userdb (and to Dovecot as plugin settings)."""
        rules = dict(rules or {})
        userdb_fields = dict(userdb_fields or {})
        env = DovecotEnv.create(extra_settings={"mail_plugins": "quota"},
                                mail_location=mail_location)
        capture = os.path.join(env.base, "capture.sh")
        with open(env.conf, "a") as f:
            f.write(f"hostname = test.example.org\npostmaster_address = {POSTMASTER}\n"
                    f"sendmail_path = {capture}\n")
        plugin = {"quota": "maildir:User quota"}
        for key, value in list(rules.items()) + list(userdb_fields.items()):
            if key.startswith("quota"):
                plugin[key] = value.replace("%", "%%")
        with open(env.conf, "a") as f:
            f.write("plugin {\n" + "".join(f"  {k} = {v}\n" for k, v in plugin.items())
                    + "}\n")
        with open(capture, "w") as f:
            f.write(CAPTURE)
        os.chmod(capture, 0o755)
        open(os.path.join(env.base, "sent.txt"), "a").close()
        env.give(os.path.join(env.base, "sent.txt"))
        passwd = os.path.join(env.base, "mailslot.passwd")
        extra = " ".join(f"userdb_{k}={v}" for k, v in userdb_fields.items())
        with open(passwd, "w") as f:
            f.write(f"{env.user}:x:{env.uid}:{env.gid}::{env.home}::{extra}\n")
        conf = os.path.join(env.base, "mailslot.yaml")
        settings = dict(settings or {})
        lines = [f"mail_location: {settings.pop('mail_location', mail_location)}",
                 f"log_path: {env.home}/mailslot.log",
                 "hostname: test.example.org", f"postmaster_address: {POSTMASTER}",
                 f"sendmail_path: {capture}",
                 "userdb:", "  - driver: passwd-file", f"    args: {passwd}"]
        for key, value in list(rules.items()) + list(settings.items()):
            lines.append(f"{key}: {_yaml(value)}")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        for path in (passwd, conf):
            os.chmod(path, 0o644)
        return cls(env, conf, plugin)

    def cleanup(self):
        self.env.cleanup()

    # --- mailslot ---------------------------------------------------------------------

    def mailslot_lda(self, message, *args):
        return self.env.run_python(LDA_CODE, "-c", self.conf, "-d", self.user, *args,
                                   input=message, check=False)

    def mailslot(self, *args):
        return self.env.run_python(ADMIN_CODE, *args, check=False)

    def mailslot_quota(self):
        """mailslot quota get -f tab, as rows of the five columns."""
        proc = self.mailslot("quota", "get", "-c", self.conf, "-u", self.user, "-f", "tab")
        assert proc.returncode == 0, proc.stderr
        return _tab_rows(proc.stdout.decode())

    # --- Dovecot ----------------------------------------------------------------------

    def dovecot_lda(self, message, *args):
        return self.env.lda(message, *args, check=False)

    def doveadm_quota(self):
        proc = self.env.doveadm("-f", "tab", "quota", "get")
        return _tab_rows(proc.stdout.decode())

    # --- files ------------------------------------------------------------------------

    def maildirsize(self):
        try:
            with open(os.path.join(self.control, "maildirsize")) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_maildirsize(self, text, mtime=None):
        path = os.path.join(self.maildir, "maildirsize")
        with open(path, "w") as f:
            f.write(text)
        self.env.give(path)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    def sent(self):
        """The captured outgoing messages: [(argv line, message bytes)]."""
        with open(self.sent_path, "rb") as f:
            data = f.read()
        out = []
        for chunk in data.split(b"--END--\n"):
            if chunk.startswith(b"ARGV: "):
                argv, _, message = chunk.partition(b"\n")
                out.append((argv[6:].decode(), message))
        return out

    def log(self):
        try:
            with open(os.path.join(self.home, "mailslot.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""


def _tab_rows(text):
    lines = [line for line in text.split("\n") if line]
    assert lines[0].split("\t") == ["Quota name", "Type", "Value", "Limit", "%"], lines
    return [tuple(line.split("\t")) for line in lines[1:]]


def _yaml(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def message(size, subject="x", msgid="<q1@example.org>"):
    """A message of exactly size bytes (LF line ends)."""
    head = (f"From: Alice <alice@example.org>\nTo: test@example.org\n"
            f"Subject: {subject}\nMessage-ID: {msgid}\n\n").encode()
    body = size - len(head) - 1
    if body < 0:
        return head[:size - 1] + b"\n"      # a tiny message: header lines only
    return head + b"y" * body + b"\n"
