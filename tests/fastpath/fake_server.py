"""A stand-in for mailslot-handoffd that answers as told, to test the front.

    python3 fake_server.py SOCKET MODE RECORD

Run as the test user (the front checks the server's uid). Accepts one
connection, records what arrived in RECORD (hex frame, descriptor count, the
bytes after the frame) as lines "key value", and answers per MODE:

    refuse      'R'                  close       close at once, nothing sent
    silent      nothing, wait 5 s    ready-close 'A', read 'G', close
    code:N      'A', read 'G', then 'X' and N
"""

import array
import os
import socket
import sys
import time

path, mode, record = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(1)
print("listening", flush=True)
conn, _ = listener.accept()
conn.settimeout(10)
lines = []
data, anc, flags, _ = conn.recvmsg(65536 + 8, socket.CMSG_SPACE(64))
fds = []
for level, kind, payload in anc:
    if kind == socket.SCM_RIGHTS:
        fds.extend(array.array("i", payload))
if data:
    length = int.from_bytes(data[4:8], "big") + 8 if len(data) >= 8 else 0
    while len(data) < length:
        chunk = conn.recv(length - len(data))
        if not chunk:
            break
        data += chunk
lines.append(f"frame {data.hex()}")
lines.append(f"fds {len(fds)}")


def save():
    with open(record, "w") as f:
        f.write("\n".join(lines) + "\n")


save()
if not data:
    sys.exit(0)                 # the client hung up without asking
if mode == "refuse":
    conn.sendall(b"R")
elif mode == "close":
    pass
elif mode == "silent":
    time.sleep(5)
else:
    conn.sendall(b"A")
    go = conn.recv(1)
    lines.append(f"go {go.hex()}")
    if mode.startswith("code:"):
        conn.sendall(b"X" + bytes([int(mode[5:])]))
conn.close()
save()
