#!/usr/bin/env python3
"""Plain HTTP server for the QEMU download scenarios.

usage: httpd.py DIR PORTFILE LOGFILE

Serves DIR on 127.0.0.1 (an ephemeral port, written to PORTFILE once it
listens) and appends one line per request to LOGFILE:
"METHOD PATH STATUS SIZE" (SIZE is "-" unless the handler knows it). The
guest reaches it as 10.0.2.2:8080 through QEMU's user-mode network and
guestfwd.py (see harness.sh: dl_netdev).
"""
import functools
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code="-", size="-"):
        with open(sys.argv[3], "a", encoding="utf-8") as log:
            log.write(f"{self.command} {self.path} {code} {size}\n")

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


def main():
    handler = functools.partial(Handler, directory=sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    server.serve_forever()


if __name__ == "__main__":
    main()
