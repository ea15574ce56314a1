"""The benchmark matrix: which deliveries are timed, with what, how often.

Each Case names a mailbox format, a message size, an optional Sieve script (rules
count) and an optional pre-filled mailbox (messages already there). Both sides get
byte-identical inputs: the same message file, the same script, the same pre-filled
mailbox. Run counts differ between the full run (`make bench`) and the quick one
(`make bench-quick`, about a minute, run by tests/bench/test_bench_quick.py).
"""

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
# A mailbox "of 20 000 messages" (the large-mailbox case).
LARGE_MAILBOX = 20_000


@dataclass(frozen=True)
class Case:
    name: str
    fmt: str              # "maildir" or "mbox"
    size: int             # message bytes
    sieve_rules: int = 0  # 0: no script
    prefill: int = 0      # messages in the mailbox before the first timed run
    full_runs: int = 200
    quick_runs: int = 12

    def runs(self, quick):
        return self.quick_runs if quick else self.full_runs


CASES = (
    Case("maildir-2k", "maildir", 2 * KIB),
    Case("mbox-2k", "mbox", 2 * KIB),
    Case("maildir-100k", "maildir", 100 * KIB, full_runs=100, quick_runs=6),
    Case("mbox-100k", "mbox", 100 * KIB, full_runs=100, quick_runs=6),
    Case("maildir-10m", "maildir", 10 * MIB, full_runs=20, quick_runs=2),
    Case("mbox-10m", "mbox", 10 * MIB, full_runs=20, quick_runs=2),
    Case("maildir-100m", "maildir", 100 * MIB, full_runs=5, quick_runs=1),
    Case("mbox-100m", "mbox", 100 * MIB, full_runs=5, quick_runs=1),
    Case("sieve-20", "maildir", 2 * KIB, sieve_rules=20),
    Case("sieve-200", "maildir", 2 * KIB, sieve_rules=200),
    Case("maildir-2k-20000", "maildir", 2 * KIB, prefill=LARGE_MAILBOX,
         full_runs=100, quick_runs=6),
    Case("mbox-2k-20000", "mbox", 2 * KIB, prefill=LARGE_MAILBOX,
         full_runs=100, quick_runs=6),
)
CASES_BY_NAME = {case.name: case for case in CASES}



@dataclass(frozen=True)
class LmtpCase:
    """The LMTP comparison (bench/lmtp_bench.py): mailslot-lmtpd against Dovecot's
    lmtp, one recipient per message, each connection busy for `seconds` a run."""
    size: int = 2 * KIB
    connections: tuple = (1, 4, 16)
    seconds: float = 5.0
    quick_seconds: float = 1.5
    full_runs: int = 5
    quick_runs: int = 2


LMTP_CASE = LmtpCase()
# Issue 17's targets: at least 2x Dovecot's lmtp at 1 and 4 connections, at least 70%
# of the physical limit at 4, peak memory under 64 MiB with 16 x 50 MB.
LMTP_TARGETS = {"ratio": {1: 2.0, 4: 2.0}, "physical_at_4": 0.7, "peak_mib": 64}

# The pipe targets of docs/benchmarks.md (ordinary path, median wall time ratio).
TARGETS = {"maildir-2k": 1.25, "mbox-2k": 1.25, "sieve-200": 1.4,
           "maildir-10m": 1.1, "mbox-10m": 1.1, "maildir-100m": 1.1, "mbox-100m": 1.1}


def make_message(size, serial=0):
    """A plain text message of exactly size bytes (LF line ends)."""
    head = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
            b"Subject: benchmark\nMessage-ID: <bench-%d@example.org>\n"
            b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n\n" % serial)
    line = b"The quick brown fox jumps over the lazy dog, again and again.\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 1] + b"\n"


def make_sieve_script(rules):
    """A realistic filter list that does not match the benchmark message."""
    lines = ['require ["fileinto", "envelope", "imap4flags"];']
    for i in range(rules):
        kind = i % 4
        if kind == 0:
            lines.append(f'if header :contains "subject" "keyword-{i}" '
                         f'{{ fileinto "Folder{i}"; stop; }}')
        elif kind == 1:
            lines.append(f'if address :is "from" "sender-{i}@example.com" '
                         f'{{ fileinto "Folder{i}"; stop; }}')
        elif kind == 2:
            lines.append(f'if header :matches "list-id" "*list-{i}.example.net*" '
                         f'{{ fileinto "Lists{i}"; stop; }}')
        else:
            lines.append(f'if envelope :is "from" "bounce-{i}@example.org" '
                         f'{{ addflag "\\\\Flagged"; }}')
    return "\n".join(lines) + "\n"
