"""Sieve's vacation and redirect on the FUSE disk (fusecrash.py --sends vacation|redirect).

    sends = Sends("vacation", base)      # the script, the settings, the capture
    sends.clear()                        # before each cut delivery
    problems = sends.after_cut(rig, acked, cut)

The user's script answers (vacation) or forwards with keep (redirect) the message
whose subject is the cut one's ("new-..."; the old and next messages send nothing,
so the only mail that may go out is about the cut message). Outgoing mail goes to
a capturing sendmail_path off the FUSE disk (tests/send/capture.py), so what was
handed to the MTA is known whatever the cut left. After each cut state the MTA's
retry runs as the MTA would run it -- the same message again, only when the cut
delivery was not acknowledged -- on the state the cut left ("after the reboot").

What mailslot promises (duplicates.py, send/outgoing.py, README "Outgoing mail"):
the reply or the forward is claimed in the duplicate database (written to a
temp file, fsync, rename, directory fsync) before it is handed to the MTA, so a
retry after any cut finds the claim if anything went out. The rules checked, per
cut state:

  - at most one reply/forward of the cut message in all (cut delivery + retry):
    no extra one per cut (Pigeonhole records after sending, so its bound is one
    extra per cut; mailslot's claim-first order allows none);
  - exactly one when the cut delivery was acknowledged (the run not cut);
  - the duplicate database parses after the cut (fusecrash.py checks the file in
    every state) and the retry reads it: it exits 0 and logs no duplicate-database
    error (a torn file would be a 75 loop or a lost claim);
  - the retry's copy of the message obeys the usual rules (whole; at most the one
    duplicate a cut after the commit makes, never partial).

Counted, not a violation: states where nothing went out at all (the claim reached
the disk, the cut came before the MTA had the mail: the retry finds the claim and
stays silent) -- the price of claim-first; the report gives their number.
"""

import os

from tests.send.capture import CapturingSendmail

SENDER = "power@example.org"
FORWARD_TO = "forward@example.net"
SCRIPTS = {
    "vacation": b"""require ["vacation"];
if header :contains "subject" "new-" {
  vacation :days 1 :subject "away" "I am away.";
}
""",
    "redirect": ("""require ["copy"];
if header :contains "subject" "new-" { redirect :copy "%s"; }
""" % FORWARD_TO).encode(),
    # Forward only (no keep): the forward is the delivery.
    "forward": ("""if header :contains "subject" "new-" { redirect "%s"; }
""" % FORWARD_TO).encode(),
}


# The most mails about the cut message (cut delivery + the MTA's retry): a vacation
# reply is claimed before it is sent (none extra, perhaps none at all); a forward is
# recorded after it is sent (one extra per cut at most, never none).
MOST = {"vacation": 1, "redirect": 2, "forward": 2}


class Sends:
    def __init__(self, kind, prefix="mailslot-fusesend-"):
        self.kind = kind
        self.script = SCRIPTS[kind]
        self.saves = kind != "forward"      # the message is filed as well
        self.capture = CapturingSendmail(prefix)
        self.nothing_sent = 0       # states where the claim stood and nothing went out
        self.retries = 0            # cut states whose message the MTA delivered again
        self.sent_total = 0
        self.extra = 0              # states where the retry sent a second copy

    def settings(self):
        """Lines for the engine's mailslot.yaml."""
        return (f"sendmail_path: {self.capture.path}\n"
                "sieve_vacation_dont_check_recipient: yes\n"
                "postmaster_address: postmaster@power.example.org\n")

    def clear(self):
        for name in os.listdir(self.capture.spool):
            if name != "capture":
                os.unlink(os.path.join(self.capture.spool, name))

    def about(self, tag):
        """How many mails handed to the MTA are about the message tag (the reply's
        In-Reply-To, the forward's Message-ID)."""
        count = 0
        for _sender, rcpts, data in self.capture.sent():
            head = data.partition(b"\n\n")[0]
            if f"<{tag}@".encode() in head:
                count += 1
                want = [SENDER] if self.kind == "vacation" else [FORWARD_TO]
                if rcpts != want:
                    raise AssertionError(f"{self.kind} went to {rcpts}, not {want}")
        return count

    def after_cut(self, rig, acked, cut):
        """The MTA's retry of the cut message (if it was not acknowledged) and the
        rules above; problems ([] when none)."""
        tag = next(iter(rig.news))
        problems = []
        before = self.about(tag)
        if not cut and before != 1:
            problems.append(f"the delivery not cut handed {before} {self.kind} mails "
                            "to the MTA, not 1")
        if not acked:
            self.retries += 1
            mark = _size(rig.log)
            code, err = rig.engine(rig.new, rebooted=True)
            if code != 0:
                problems.append(f"the MTA's retry exited {code}: {err[-300:]}")
            with open(rig.log, errors="replace") as f:
                f.seek(mark)
                lines = f.readlines()
            bad = [line for line in lines if "duplicate database" in line]
            if bad:
                problems.append(f"the retry could not use the duplicate database: {bad[0]}")
            suppressed = any("discarded duplicate" in line for line in lines)
        else:
            suppressed = False
        total = self.about(tag)
        self.sent_total += total
        if total > 1:
            self.extra += 1
        if total > MOST[self.kind]:
            problems.append(f"{total} {self.kind} mails about one message went to the MTA "
                            f"({before} before the cut, {total - before} by the retry)")
        if total == 0:
            self.nothing_sent += 1
            if self.kind != "vacation":
                # Recorded after the send: nothing forwarded means nothing recorded,
                # and the retry must forward (the forward may be the only delivery).
                problems.append(f"nothing was forwarded (the retry found "
                                f"{'a' if suppressed else 'no'} record)"
                                + ("" if self.saves else ": the message is lost"))
            elif not suppressed:
                # Claimed before the send: no reply is allowed only when the retry
                # found the claim (the cut came between its rename and the send).
                problems.append("no vacation reply went out and the retry found no "
                                "claim in the duplicate database")
        return problems


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
