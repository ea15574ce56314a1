"""Outgoing mail: Sieve reject, redirect, vacation and notify, and DSNs.

transport.py hands a message to sendmail_path or submission_host; compose.py
writes rejections (MDN), DSNs, vacation replies and notifications; redirect.py
streams forwarded copies and detects loops; outgoing.py holds the rules for what
is sent and what a failure means; postmaster.py reads postmaster_address. The duplicate database is ../duplicates.py.

None of this is imported on the plain delivery path: only a Sieve result with an
action that sends mail brings it in.
"""
