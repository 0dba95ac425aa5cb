#!/usr/bin/env python3
"""Binds a unix datagram socket (a test NOTIFY_SOCKET) and appends every message to a file."""
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        data = sock.recv(65536)
        for line in data.decode(errors="replace").splitlines():
            f.write(line + "\n")
