"""Numbers SECURITY.md states about the helpers, recomputed from the sources.

"Root is held for N lines of C": every non-blank, non-comment line of the files built
into the relay (mailslot-relay.c, hygiene.c, trusted.c, relay_*.c), less the lines of
main after drop_privileges, runs -- or can run -- with euid 0.
"""
import re
from pathlib import Path

HELPER_C = Path(__file__).resolve().parents[2] / "helper_c"
SECURITY = Path(__file__).resolve().parents[2] / "SECURITY.md"


def code_lines(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return [line for line in text.split("\n") if line.strip()]


def root_held_lines():
    files = ["mailslot-relay.c", "hygiene.c", "trusted.c"] + \
        sorted(p.name for p in HELPER_C.glob("relay_*.c"))
    total = sum(len(code_lines((HELPER_C / f).read_text())) for f in files)
    relay = (HELPER_C / "mailslot-relay.c").read_text()
    after_drop = relay[relay.index("    drop_privileges((uid_t) t.uid"):]
    return total - len(code_lines(after_drop)), len(code_lines(after_drop))


def rule_file_lines():
    return sum(len(code_lines(p.read_text())) for p in HELPER_C.glob("relay_*.c"))


def test_root_held_line_count():
    held, after = root_held_lines()
    text = " ".join(SECURITY.read_text().split())
    assert f"**{held} lines of C**" in text, held
    assert f"less the {after} lines of `main` after `drop_privileges`" in text, after
    assert f"{rule_file_lines()} of those lines" in text, rule_file_lines()
