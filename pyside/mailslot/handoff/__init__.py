"""The pipe's fast path: a resident engine that takes deliveries handed to it.

mailslot-lda-front (helper_c/mailslot-lda-front.c) passes its descriptors,
argv, allowed environment and resource limits to mailslot-handoffd of its own
uid, which forks one worker per hand-off; the worker runs the ordinary
mailslot-lda front (cli.main) as the process the MTA would have started.

    protocol.py   the frame: decoding and its limits (the C side encodes it)
    server.py     the listener: socket, accept, one fork per hand-off, reaping
    worker.py     one hand-off: peer check, applying the request, the delivery

Never imported by the pipe path itself (it imports socket).
"""
