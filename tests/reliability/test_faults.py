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


def test_site_packages_on_demand_run_no_pth_file(tmp_path):
    """sitepath adds site-packages for PyYAML without reading `.pth` files: their
    import lines ran at every delivery with a stale settings cache, and one failing
    (too few file descriptors) printed "Error processing line 1 of ...pth" to stderr
    beside the engine's reason. A virtual environment (found by its pyvenv.cfg, as
    site would) is served too."""
    import os
    import sys

    from tests.support import REPO
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", venv / "bin" / "python3")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    site_dir = venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages"
    site_dir.mkdir(parents=True)
    (site_dir / "probe_module.py").write_text("WHERE = 'venv'\n")
    (site_dir / "zz-noisy.pth").write_text(
        "import sys; sys.stderr.write('a .pth file ran\\n')\n")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from mailslot.sitepath import enable_site_packages\n"
            "enable_site_packages()\n"
            "import probe_module; print(probe_module.WHERE)\n" % os.path.join(REPO, "pyside"))
    proc = subprocess.run([str(venv / "bin" / "python3"), "-I", "-S", "-c", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "venv\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("limit", [4, 6])
def test_too_few_file_descriptors_give_one_line_on_stderr(namespaces, limit):
    """At `ulimit -n 4` and 6 the engine answers 75 with exactly one line, the
    reason (before: site's "Error processing line 1 of ...pth" came first)."""
    result = faults.run_fault(f"nofile-{limit}")
    assert result["code"] == 75
    assert len(result["stderr"].splitlines()) == 1, result["stderr"]
    assert "Too many open files" in result["stderr"]
