"""A delivery that goes well builds none of errors.py's other failure kinds.

errors._MORE's classes (usage, unknown user, reject, userdb, privilege, message, log,
send, quota, Sieve) are built the first time one is named; the plain delivery's
modules name them only when something fails. The engine runs in-process (main(),
no os._exit) as the test user, so that errors' namespace can be looked at after.
Apart from tests/engine/test_lda.py because tests/fastpath reruns that suite
through the C front, where this in-process run means nothing.
"""

import os

from tests.engine.test_lda import MSG, env  # noqa: F401 (env: the fixture)
from tests.support import needs_root, run_as

pytestmark = needs_root


def test_a_plain_delivery_builds_none_of_the_other_failure_kinds(env, installed):
    # errors._MORE's classes are built when first named: a delivery that goes
    # well (both formats) names none of them.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mailslot.cli import main; "
            "code = main(sys.argv[2:]); import mailslot.errors as e; "
            "print(code, sorted(n for n in e._MORE if n in vars(e)))")
    python = os.path.join(installed, "python")
    for location in ("maildir:~/Maildir", "mbox:~/mail:INBOX=~/mail/inbox"):
        for _ in range(2):      # the second into an existing mailbox
            proc = run_as(env.user, ["/usr/bin/python3", "-I", "-S", "-c", code, python,
                                     "-c", env.conf, "-o", f"mail_location={location}"],
                          input=MSG)
            assert proc.stdout.split(b"\n")[0] == b"0 []", (proc.stdout, proc.stderr)
