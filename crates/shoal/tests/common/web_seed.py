#!/usr/bin/python3
"""A web seed (BEP 19) for the tests and benches/webseed.py: an HTTP/1.1 server of the
files under a folder that answers single `Range: bytes=A-B` requests with 206 (Python's
own server ignores ranges), keeping connections open between requests as HTTP/1.1
does. Prints READY, then one `GET path first last client_port` line per answer (the
port tells connections apart). With corrupt=1 it flips the first byte of every answer.
Given a sixth argument, a base URL, it serves nothing itself: every request is
redirected there (302, `Location: BASE/path`) and printed as `REDIRECT path`, as
archive.org sends each file to a data server. Exits by itself after 120 s (or the
number of seconds given fifth).

    web_seed.py ROOT IP PORT CORRUPT [LIFETIME [REDIRECT_TO]]
"""
import http.server, os, re, sys, threading
from urllib.parse import unquote

PRINTING = threading.Lock()
root, ip, port, corrupt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
lifetime = float(sys.argv[5]) if len(sys.argv) > 5 else 120
redirect_to = sys.argv[6].rstrip('/') if len(sys.argv) > 6 else None


def say(line):
    with PRINTING:  # one whole line at a time from the server's threads
        print(line, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        if redirect_to:
            self.send_response(302)
            self.send_header('Location', redirect_to + self.path)
            self.send_header('Content-Length', '0')
            self.end_headers()
            say('REDIRECT %s' % self.path)
            return
        path = os.path.realpath(os.path.join(root, unquote(self.path.lstrip('/'))))
        if not path.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        m = re.fullmatch(r'bytes=(\d+)-(\d+)', self.headers.get('Range', ''))
        first, last, status = (int(m[1]), min(int(m[2]), size - 1), 206) if m else (0, size - 1, 200)
        with open(path, 'rb') as f:
            f.seek(first)
            data = bytearray(f.read(last - first + 1))
        if corrupt and data:
            data[0] ^= 0xff
        self.send_response(status)
        if status == 206:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (first, last, size))
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        say('GET %s %d %d %d' % (self.path, first, last, self.client_address[1]))

    def log_message(self, *args):
        pass


threading.Timer(lifetime, lambda: os._exit(0)).start()
server = http.server.ThreadingHTTPServer((ip, port), Handler)
say('READY')
server.serve_forever()
