"""Outgoing mail through the delivery core with its clock injected (deliver.py's
DeliveryContext(clock=...)), as an LMTP server will call it: one process per user
making deliveries at chosen times.

The vacation reply goes out at t0, not at t0 + period - 1 s, again at t0 + period;
its Date is the injected time; each user has their own reply memory. The sink is a
real SMTP server on 127.0.0.1 (submission_host).
"""

import json
import os
import subprocess
import sys
from email.utils import formatdate

from tests.support import REPO, needs_root

pytestmark = needs_root

T0 = 1_800_000_000
DAY = 86400
MSG = (b"From: Sender Name <sender@example.com>\nTo: a@example.org, b@example.org\n"
       b"Subject: Hello there\nMessage-ID: <core-send@example.com>\n\nbody line\n")

CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
plan = json.loads(sys.argv[2])
from mailslot.message import read_message
from mailslot.recipient import load_base_settings, resolve
from mailslot.deliver import DeliveryContext, deliver
base = load_base_settings(plan["conf"], [])
out = []
for when, names in plan["deliveries"]:
    fd = os.open(plan["message"], os.O_RDONLY)
    message = read_message(fd)
    for name in names:
        rcpt = resolve(base, name)
        envelope = {"from": "sender@example.com", "to": plan["address"],
                    "orig_to": plan["address"]}
        context = DeliveryContext(rcpt.settings, rcpt.user, envelope,
                                  clock=lambda when=when: when)
        saved = deliver(context, message)
        out.append([when, name, [s.mailbox for s in saved]])
    os.close(fd)
print(json.dumps(out))
"""


def test_vacation_period_through_the_core_with_the_clock_injected(mailer):
    a, b = mailer.users
    address = {a: "a@example.org", b: "b@example.org"}
    for user in (a, b):
        mailer.script(user, 'require "vacation";\nvacation :days 2 "Away.";\n')
    for done in run_deliveries(mailer, {
            a: (address[a], [T0, T0 + 2 * DAY - 1, T0 + 2 * DAY]),
            b: (address[b], [T0])}):
        assert [saved for _, _, saved in done] == [["INBOX"]] * len(done)
    sent = mailer.sink.wait(3, timeout=10)
    dates = sorted((m.recipients[0], _header(m.data, b"Date"), _header(m.data, b"From"))
                   for m in sent)
    assert len(sent) == 3, sent
    assert dates == sorted([
        ("sender@example.com", formatdate(T0, localtime=True), "<a@example.org>"),
        ("sender@example.com", formatdate(T0 + 2 * DAY, localtime=True),
         "<a@example.org>"),
        ("sender@example.com", formatdate(T0, localtime=True), "<b@example.org>"),
    ])
    assert "discarded duplicate response to <sender@example.com>" in mailer.log(a)


def run_deliveries(mailer, plan_by_user):
    """For each user, one process delivering the message at each given time."""
    message = os.path.join(mailer.confdir, "msg")
    with open(message, "wb") as f:
        f.write(MSG)
    os.chmod(message, 0o644)
    for user, (address, whens) in plan_by_user.items():
        plan = {"conf": mailer.conf, "message": message, "address": address,
                "deliveries": [[when, [user.pw_name]] for when in whens]}
        proc = subprocess.run(
            ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
             "--init-groups", "--", sys.executable, "-I", "-c", CHILD,
             os.path.join(REPO, "pyside"), json.dumps(plan)],
            capture_output=True, timeout=120, cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name})
        assert proc.returncode == 0, proc.stderr.decode()
        yield json.loads(proc.stdout.decode().splitlines()[-1])


def test_redirect_memory_lasts_sieve_redirect_duplicate_period(mailer):
    a = mailer.users[0]
    mailer.script(a, 'redirect "fwd@example.net";\n')
    hours = 3600
    (done,) = run_deliveries(mailer, {a: ("a@example.org",
                                          [T0, T0 + 12 * hours - 1, T0 + 12 * hours])})
    # Forwarded, suppressed as a duplicate (not kept: the forward was done), forwarded.
    assert [saved for _, _, saved in done] == [[], [], []]
    sent = mailer.sink.wait(3, timeout=3)
    assert [m.recipients for m in sent] == [["fwd@example.net"]] * 2


def _header(data, name):
    for line in data.split(b"\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    return None
