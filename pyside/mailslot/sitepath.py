"""Make site-packages importable on demand, for an engine started with python3 -I -S.

The installed engine runs without site (-S) so that the pipe path does not pay for
it. The few modules that need a third-party package (PyYAML when the settings cache
is stale, python-prctl under the relay) call enable_site_packages() first.

Only the directories are added: no `.pth` file is read and no sitecustomize is
imported. A `.pth` file's import lines would run code at every such delivery (and,
when one fails -- too few file descriptors, say -- site prints "Error processing
line N of ....pth" and a traceback to stderr, a second line beside the engine's
one reason); none of the engine's dependencies needs one.

Security: under -I the user's site directory and PYTHON* variables stay ignored;
only the interpreter's own site-packages directories (or its virtual
environment's, by the pyvenv.cfg beside the interpreter) are added.
"""

import sys


def _directories(os, site):
    """The site-packages directories: a virtual environment's (site would have
    found it by the pyvenv.cfg beside the interpreter, which -S skips) and the
    system's unless the environment leaves them out; else the interpreter's own."""
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    for conf in (os.path.join(exe_dir, "pyvenv.cfg"),
                 os.path.join(os.path.dirname(exe_dir), "pyvenv.cfg")):
        try:
            with open(conf, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        dirs = [os.path.join(os.path.dirname(exe_dir), "lib",
                             "python%d.%d" % sys.version_info[:2], "site-packages")]
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "include-system-site-packages" and \
                    value.strip().lower() == "true":
                dirs += site.getsitepackages()
        return dirs
    return site.getsitepackages()


def enable_site_packages():
    """Add the interpreter's site-packages to sys.path if site was not run."""
    if sys.flags.no_site and "site" not in sys.modules:
        import os
        import site             # under -S, importing site runs nothing
        for path in _directories(os, site):
            if path not in sys.path and os.path.isdir(path):
                sys.path.append(path)
