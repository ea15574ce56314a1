"""mailslot: a local delivery agent compatible with Dovecot's dovecot-lda.

Only the version lives here: the pipe path imports nothing it does not need.
"""

__version__ = "0.1.0"
