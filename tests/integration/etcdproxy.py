"""A holding HTTP proxy between one daemon and etcd's JSON gateway, for
the lifecycle cells of the cluster cases: it relays every request (one
per connection, "Connection: close" both ways) and can hold the next
request that matches until the test releases it, so a transition (reload,
SIGTERM, hand-off) happens while that request is in flight, without
sleeps.  It binds port 0 in this process and reads the port back
(harness README, "Ports")."""

import base64
import socket
import threading
import time

from harness import Fail


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Hold:
    """One armed hold: the first request whose path and body contain
    every string of match is kept until release()."""

    def __init__(self, match, every=False):
        self.match = match
        self.every = every      # every matching request, not one
        self.held = threading.Event()
        self.go = threading.Event()
        self.answer = True
        self.path = None
        self.client_gone = False
        self.forwarded = threading.Event()
        self.response = b""

    def wait_held(self, timeout, what):
        if not self.held.wait(timeout):
            raise Fail("no etcd request matching %s within %ds (%s)"
                       % (self.match, timeout, what))
        return self

    def release(self, answer=True):
        """Forward the request to etcd; answer=False: its answer is lost
        (the daemon's connection is closed instead)."""
        self.answer = answer
        self.go.set()


class EtcdProxy:
    def __init__(self, target_url):
        host, port = target_url.split("//", 1)[1].rsplit(":", 1)
        self.target = (host, int(port))
        self.lock = threading.Lock()
        self.holds = []
        self.requests = 0
        self.stopping = threading.Event()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def hold(self, *match, every=False):
        """Arm a hold for the next request containing every string of
        match (path or body), or every one with every=True (etcd hung);
        returns it."""
        h = Hold(match, every)
        with self.lock:
            self.holds.append(h)
        return h

    def close(self):
        self.stopping.set()
        with self.lock:
            for h in self.holds:
                h.go.set()
        self.thread.join(5)
        self.ls.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    @staticmethod
    def _read_request(c):
        """(head lines, body) of one request; answers Expect."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                return None, None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        n = 0
        keep = []
        for ln in lines:
            k = ln.split(":", 1)[0].strip().lower()
            if k == "content-length":
                n = int(ln.split(":", 1)[1])
            if k == "expect":
                c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                continue
            if k == "connection":
                continue
            keep.append(ln)
        while len(body) < n:
            chunk = c.recv(65536)
            if not chunk:
                return None, None
            body += chunk
        return keep + ["Connection: close"], body

    def _take_hold(self, text):
        with self.lock:
            for h in self.holds:
                if all(m in text for m in h.match):
                    if not h.every:
                        self.holds.remove(h)
                    return h
        return None

    def _forward(self, lines, body):
        up = socket.create_connection(self.target, timeout=10)
        try:
            up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                       + body)
            out = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    return out
                out += chunk
        finally:
            up.close()

    def _serve(self, c):
        try:
            c.settimeout(30)
            lines, body = self._read_request(c)
            if lines is None:
                return
            self.requests += 1
            h = self._take_hold(lines[0] + " " + body.decode("latin-1"))
            if h is not None:
                h.path = lines[0].split(" ")[1]
                h.held.set()
                while not h.go.wait(0.1):
                    pass
            try:
                resp = self._forward(lines, body)
            except OSError:
                return
            if h is not None:
                h.response = resp
                h.forwarded.set()
            if h is None or h.answer:
                c.sendall(resp)
        except OSError:
            if h is not None:
                h.client_gone = True
        finally:
            c.close()


def wait_gone(proc, timeout):
    """Seconds until proc exited, or Fail."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not proc.running():
            return time.monotonic() - t0
        time.sleep(0.01)
    raise Fail("the daemon still runs %.1f s after SIGTERM" % timeout)
