"""mailslot-lmtpd: the delivery engine as an LMTP server (RFC 2033).

protocol.py is the pure protocol state machine; server.py the sockets, signals and
the pool the deliveries run in; delivery.py files one spooled message for the
recipients of a transaction through the delivery core.
"""
