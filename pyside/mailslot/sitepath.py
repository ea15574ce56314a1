"""Make site-packages importable on demand, for an engine started with python3 -I -S.

The installed engine runs without site (-S) so that the pipe path does not pay for
it. The few modules that need a third-party package (PyYAML when the settings cache
is stale, python-prctl under the relay) call enable_site_packages() first.

Security: under -I the user's site directory and PYTHON* variables stay ignored;
only the interpreter's own site-packages directories are added.
"""

import sys


def enable_site_packages():
    """Add the interpreter's site-packages to sys.path if site was not run."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site
        site.main()
