"""The Received line's date is made once per second and shared (delivery.py):
it must be exactly what email.utils would write for that second, every time."""

import email.utils

from mailslot.lmtp.delivery import _rfc5322_date


def test_date_cache_matches_formatdate_per_second():
    for when in (1796426240.0, 1796426240.9, 1796426241.2, 1796426240.5, 86400.0):
        assert _rfc5322_date(when) == email.utils.formatdate(int(when), localtime=True)
