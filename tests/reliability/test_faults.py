"""Resource faults end to end (tests/reliability/faults.py): a tiny tmpfs (ENOSPC),
ulimit -f (EFBIG), a read-only bind mount, exhausted inodes, a small open-files
limit, a userdb that hangs or answers garbage, an mbox lock held for ever -- each
exit 75 with a reason naming the cause, and the mailbox exactly as it was before."""

import shutil
import subprocess

import pytest

from tests.reliability import faults
from tests.support import needs_root

pytestmark = needs_root


@pytest.fixture(scope="module")
def namespaces():
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("mount namespaces are not available here")


@pytest.mark.parametrize("name", sorted(faults.FAULTS))
def test_fault_is_a_temporary_failure_that_changes_nothing(namespaces, name):
    result = faults.run_fault(name)
    assert faults.verdict(name, result) == [], result["stderr"]
