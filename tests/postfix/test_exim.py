"""Exim from Debian's packages through its pipe transport: only if it installs here.

Debian's exim4-daemon-light and postfix both provide and conflict with
mail-transport-agent, so installing Exim would remove the Postfix that the other
end-to-end tests need. The Exim router and transport are shipped as an example
(packaging/examples/exim/exim4.conf-mailslot) and are not run here.
"""
import shutil

import pytest


@pytest.mark.skipif(shutil.which("exim4") is None,
                    reason="Exim is not installed: Debian's exim4-daemon-light conflicts "
                           "with postfix (both are mail-transport-agent), which the Postfix "
                           "end-to-end tests need")
def test_exim_pipe_transport():
    pytest.skip("Exim is installed, but this suite drives Postfix; an Exim run is not "
                "written yet")
