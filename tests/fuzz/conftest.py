"""Hypothesis settings for the fuzzers: a bounded run in the suite, longer ones via
`make fuzz` (MAILSLOT_FUZZ_EXAMPLES). No example database is written into the
checkout; a failure prints the seed and the smallest failing input."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("MAILSLOT_FUZZ_EXAMPLES", "150"))

settings.register_profile(
    "mailslot", max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
settings.load_profile("mailslot")
