"""Fixtures for the mbox tests (helpers in tests/mbox/mboxtest.py)."""

import pytest

from tests.mbox.mboxtest import MboxHome


@pytest.fixture
def mbox_home():
    """A fresh home for an unprivileged user (TEST_UID when run as root)."""
    home = MboxHome.create()
    yield home
    home.cleanup()
