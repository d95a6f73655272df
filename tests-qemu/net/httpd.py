#!/usr/bin/env python3
"""Plain HTTP server for the QEMU download scenarios.

usage: httpd.py DIR PORTFILE LOGFILE

Serves DIR on 127.0.0.1 (an ephemeral port, written to PORTFILE once it
listens) and appends one line per request to LOGFILE:
"METHOD PATH STATUS SIZE" (SIZE is "-" unless the handler knows it), for
files served by this script itself followed by "range=RANGE sent=BYTES"
(RANGE is "-" without a Range header; BYTES is what reached the socket,
also when the client went away). A range "bytes=N-" is answered 206 with
Content-Range, or 416 past the end. The guest reaches it as 10.0.2.2:8080
through QEMU's user-mode network and guestfwd.py (see harness.sh:
dl_netdev).

Faults (tests-qemu/faults.sh): DIR/.faults, read at every request, one
"PATH MODE [ARG]" line per file:
  throttle RATE   the body at RATE bytes/s; while it is sent, LOGFILE.progress
                  holds "PATH SENT"
  short           Content-Length half the real length, the whole file sent
  long            Content-Length twice the real length, the file sent, then
                  the connection closed; a Range is ignored (200 again)
  huge-headers KIB  KIB KiB of header lines before the file
  endless         no Content-Length, bytes until the client goes away
"""
import functools
import http.server
import os
import re
import sys
import time

CHUNK = 64 * 1024


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code="-", size="-"):
        self.log_line(f"{self.command} {self.path} {code} {size}")

    def log_line(self, line):
        with open(sys.argv[3], "a", encoding="utf-8") as log:
            log.write(line + "\n")

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def fault(self):
        try:
            with open(os.path.join(self.directory, ".faults"), encoding="utf-8") as f:
                for line in f:
                    words = line.split()
                    if len(words) >= 2 and words[0] == self.path:
                        return words[1], (words[2] if len(words) > 2 else None)
        except FileNotFoundError:
            pass
        return None, None

    def do_GET(self):  # noqa: N802 - stdlib name
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            super().do_GET()
            return
        mode, arg = self.fault()
        size = os.path.getsize(path)
        asked = self.headers.get("Range")
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if match and mode != "long":
            start, status = int(match.group(1)), 206
            if start >= size:
                self.send_response_only(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.log_line(f"GET {self.path} 416 0 range={asked} sent=0")
                return
        length = size - start
        self.send_response_only(status)
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if mode == "short":
            self.send_header("Content-Length", str(length // 2))
        elif mode == "long":
            self.send_header("Content-Length", str(length * 2))
        elif mode != "endless":
            self.send_header("Content-Length", str(length))
        if mode in ("short", "long", "endless"):
            self.send_header("Connection", "close")
            self.close_connection = True
        if mode == "huge-headers":
            for i in range(int(arg or 1024)):
                self.send_header(f"X-Filler-{i}", "x" * 1000)
        self.end_headers()
        sent = 0
        rate = int(arg) if mode == "throttle" else 0
        began = time.monotonic()
        try:
            with open(path, "rb") as f:
                f.seek(start)
                while True:
                    data = f.read(CHUNK)
                    if not data:
                        if mode != "endless":
                            break
                        f.seek(0)
                        continue
                    self.wfile.write(data)
                    sent += len(data)
                    if rate:
                        self.progress(sent)
                        ahead = began + sent / rate - time.monotonic()
                        if ahead > 0:
                            time.sleep(ahead)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        self.log_line(f"GET {self.path} {status} {length} range={asked or '-'} sent={sent}")

    def progress(self, sent):
        tmp = sys.argv[3] + ".progress.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{self.path} {sent}\n")
        os.rename(tmp, sys.argv[3] + ".progress")


def main():
    handler = functools.partial(Handler, directory=sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    server.serve_forever()


if __name__ == "__main__":
    main()
