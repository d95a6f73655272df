#!/usr/bin/env python3
"""QEMU guestfwd helper: one guest TCP connection to 127.0.0.1:PORT.

usage (QEMU): -netdev user,restrict=on,guestfwd=tcp:10.0.2.2:PORT-cmd:guestfwd.py PORT

QEMU runs this once per connection with the guest's side of the connection
on stdin/stdout. With restrict=on the guest reaches nothing but this.
"""
import os
import selectors
import socket
import sys


def main():
    guest = socket.socket(fileno=os.dup(0))
    try:
        host = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    except OSError:
        guest.close()  # the guest sees the connection closed: server down
        return
    host.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(guest, selectors.EVENT_READ, host)
    sel.register(host, selectors.EVENT_READ, guest)
    open_ends = 2
    while open_ends:
        for key, _ in sel.select():
            src, dst = key.fileobj, key.data
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                dst.sendall(data)
                continue
            sel.unregister(src)
            open_ends -= 1
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
    guest.close()
    host.close()


if __name__ == "__main__":
    main()
