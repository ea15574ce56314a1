"""The private Postfix instance of the end-to-end tests, once per session.

See tests/postfix/postfixtest.py for what it sets up. Needs root (it creates
accounts, installs the setuid relay and runs Postfix's master) and Postfix from
Debian's packages; without them the tests skip and say why.
"""
import os
import shutil

import pytest

from tests.postfix.postfixtest import DAEMON_DIR, PostfixInstance
from tests.support import IS_ROOT, world_tempdir


@pytest.fixture(scope="session")
def postfix():
    if not IS_ROOT:
        pytest.skip("needs root: runs Postfix's master, creates accounts and installs "
                    "the setuid relay (CI runs as root)")
    for tool in ("postfix", "make", "cc", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make deps-test installs Postfix "
                        "from Debian's packages)")
    if not os.path.exists(os.path.join(DAEMON_DIR, "master")):
        pytest.skip(f"Postfix's master is not in {DAEMON_DIR}")
    instance = PostfixInstance(world_tempdir("mslt-pf-"))
    try:
        instance.setup()
        instance.start()
        yield instance
    finally:
        instance.cleanup()
