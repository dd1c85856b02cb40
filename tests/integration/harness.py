#!/usr/bin/env python3
"""Integration harness for alertrelayd: starts the fake cloud, a real
syslog-ng and the daemon on loopback, checks what arrives with an
independent CEF parser (liblognorm's lognormalizer), and runs the cases
declared in cases.py.  Python 3 standard library only.

Usage: harness.py [--quick] [--keep] [-v] [CASE ...]
The build directory comes from $ALERTRELAY_BUILD (default "build")."""

import argparse
import calendar
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
CEF_VENDOR = "Microsoft"
CEF_PRODUCT = "Microsoft Defender for Endpoint"
CEF_VERSION = "1.0"
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                          r"runtime error:|ThreadSanitizer|"
                          r"SUMMARY: UndefinedBehaviorSanitizer")

VERBOSE = False


class Fail(Exception):
    """A case's expectation did not hold; the message says what a user
    would have noticed."""


def log(msg):
    if VERBOSE:
        sys.stderr.write("    | %s\n" % msg)
        sys.stderr.flush()


def wait_for(pred, timeout, what, interval=0.1):
    """Poll pred() until it returns a true value or the deadline passes;
    return that value, or raise Fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Fail("timed out after %.0fs waiting for %s"
                       % (timeout, what))
        time.sleep(interval)


class Skip(Exception):
    """The case (or a part of it, see Ctx.skip) cannot run here: a tool is
    missing or the harness is not root.  Counted and printed as
    "skipped" with the reason, never as passed; a skip does not fail the
    run."""


class PortInUse(Exception):
    """A server could not bind a port the harness picked for it: another
    process took the port in between.  serve() starts it again."""


ADDR_IN_USE_RE = re.compile(r"address already in use|EADDRINUSE", re.I)
PORT_TRIES = 6
# Ports handed out in this run: never handed out twice.
_ports_given = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port nothing holds now, for a server that cannot report
    the port it bound (syslog-ng, etcd, the daemon's metrics_listen,
    openssl s_server); servers that can (the fakes) bind port 0 instead.
    It lies below the kernel's ephemeral range, so no outgoing connection
    and no port-0 bind can take it before the server binds it; another
    program picking the same port still can, so start such servers
    through serve(), which starts them again on new ports."""
    top = min(_ephemeral_low(), 32768) - 1
    if top < 11000:
        raise Fail("the ephemeral port range starts at %d: no room below "
                   "it for the test servers' ports" % (top + 1))
    for _ in range(200):
        port = random.randint(10000, top)
        if port not in _ports_given and _bindable(port, kind):
            _ports_given.add(port)
            return port
    raise Fail("no free loopback port in 10000-%d" % top)


def _socket_inodes(pid):
    out = set()
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            t = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


def _bound_inodes(port, kind):
    """Inodes of the sockets listening (TCP) or bound (UDP) on port."""
    out = set()
    tables = ("tcp", "tcp6") if kind == socket.SOCK_STREAM else \
        ("udp", "udp6")
    for t in tables:
        try:
            with open("/proc/net/" + t) as f:
                lines = f.read().split("\n")[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or int(f[1].rsplit(":", 1)[1], 16) != port:
                continue
            if kind == socket.SOCK_STREAM and f[3] != "0A":
                continue
            out.add(f[9])
    return out


def listens(pid, ports):
    """Does process pid itself listen on every port?  ports: [port] (TCP)
    or [(port, socket.SOCK_DGRAM)] for UDP."""
    mine = _socket_inodes(pid)
    for p in ports:
        port, kind = p if isinstance(p, tuple) else (p, socket.SOCK_STREAM)
        if not _bound_inodes(port, kind) & mine:
            return False
    return True


def wait_listening(proc, ports, what, timeout=15):
    """Wait until proc itself listens on every port (see listens()).
    Raises PortInUse when proc lost a port to another process (it says
    "address already in use", or it exited and the port is taken), Fail
    when it exits for another reason or the deadline passes."""
    def ready():
        err = proc.stderr()
        if ADDR_IN_USE_RE.search(err):
            err = [x for x in err.split("\n")
                   if ADDR_IN_USE_RE.search(x)][0].strip()
        elif proc.running():
            return listens(proc.pid, ports)
        else:
            taken = [p for p in ports if not _bindable(
                *(p if isinstance(p, tuple) else (p, socket.SOCK_STREAM)))]
            if not taken:
                raise Fail("%s exited (status %s) before listening:\n%s"
                           % (what, proc.p.returncode, tail(err)))
            err = "exited; port %s is held by another process" % taken
        proc.stop(signal.SIGKILL)
        raise PortInUse("%s (pid %d): %s" % (what, proc.pid, err))
    wait_for(ready, timeout, "%s to listen on %s"
             % (what, ", ".join(str(p if not isinstance(p, tuple) else
                                    "udp/%d" % p[0]) for p in ports)))


def serve(suite, what, start, pause=0.0, tries=PORT_TRIES):
    """Start a server on ports the harness picked, retrying while another
    process takes one of them first.  start() writes the configuration,
    starts the process and waits for it with wait_listening(); it picks
    new ports with free_port() on each call (a first start), or keeps its
    ports (a restart: then pause seconds pass between tries, for the
    other holder to go).  Returns what start() returns."""
    last = None
    for i in range(tries):
        try:
            return start()
        except PortInUse as e:
            last = e
            suite.notes.append("note: %s; started again (try %d)"
                               % (e, i + 2))
            log("port in use: %s" % e)
            if pause:
                time.sleep(pause)
    raise Fail("%s: a port stayed taken after %d tries: %s"
               % (what, tries, last))


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def iso_to_ms(s):
    """'2024-05-06T07:08:09.1234567Z' -> epoch milliseconds (truncated,
    as rt is derived from the 100 ns value)."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                 r"(Z|[+-]\d\d:?\d\d)?$", s)
    if not m:
        raise Fail("unparsable timestamp from the fake cloud: %r" % s)
    y, mo, d, h, mi, se = (int(x) for x in m.group(1, 2, 3, 4, 5, 6))
    secs = calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0))
    tz = m.group(8)
    if tz and tz != "Z":
        sign = -1 if tz[0] == "+" else 1
        tz = tz[1:].replace(":", "")
        secs += sign * (int(tz[:2]) * 3600 + int(tz[2:]) * 60)
    frac = (m.group(7) or "") + "000"
    return secs * 1000 + int(frac[:3])


def ms_to_iso(ms):
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % (ms % 1000)


class Proc:
    """A child process with stdout/stderr in files under the case dir.
    Every Proc is registered with the suite and killed at the end."""

    def __init__(self, suite, name, argv, cwd, env=None, umask=None,
                 stdin=None):
        self.name = name
        self.argv = argv
        self.out_path = os.path.join(cwd, name + ".stdout")
        self.err_path = os.path.join(cwd, name + ".stderr")
        self.out = open(self.out_path, "ab")
        self.err = open(self.err_path, "ab")
        self.err_start = self.err.tell()
        pre = None
        if umask is not None:
            def pre():
                os.umask(umask)
        log("start %s: %s" % (name, " ".join(argv)))
        self.p = subprocess.Popen(argv, cwd=cwd, env=env,
                                  stdin=stdin or subprocess.DEVNULL,
                                  stdout=self.out, stderr=self.err,
                                  preexec_fn=pre, start_new_session=True)
        self.pid = self.p.pid
        suite.procs.append(self)

    def running(self):
        return self.p.poll() is None

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signal the process (by its pid), wait, SIGKILL if it lingers.
        Returns the exit status (negative: killed by a signal)."""
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                log("%s did not exit after signal %d; SIGKILL"
                    % (self.name, sig))
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.close()
        return self.p.returncode

    def close(self):
        for f in (self.out, self.err):
            if not f.closed:
                f.close()

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            f.seek(self.err_start)
            return f.read().decode("utf-8", "replace")


def tail(text, n=25):
    lines = text.rstrip("\n").split("\n")
    return "\n".join("      " + x for x in lines[-n:])


# --------------------------------------------------------------------------
# PKI: a CA, a server certificate for syslog-ng, a client certificate for
# the daemon (mTLS), and an unrelated second CA for the negative test.

def openssl(*args, cwd):
    r = subprocess.run(("openssl",) + args, cwd=cwd, capture_output=True)
    if r.returncode != 0:
        raise Fail("openssl %s failed: %s"
                   % (" ".join(args), r.stderr.decode(errors="replace")))


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    for ca in ("ca", "otherca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "30",
                "-subj", "/CN=alertrelay test %s" % ca,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                  "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        "client": "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    }
    cns = {"server": "localhost", "client": "alertrelay-forwarder"}
    for name, ext in exts.items():
        openssl("req", "-newkey", "rsa:2048", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + cns[name], cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
                "-CAkey", "ca.key", "-CAcreateserial", "-out", name + ".pem",
                "-days", "30", "-extfile", name + ".ext", cwd=d)
    for f in os.listdir(d):
        if f.endswith(".key"):
            os.chmod(os.path.join(d, f), 0o600)
    return d


# --------------------------------------------------------------------------
# syslog-ng, the real SIEM receiver.

SNG_CONF = """@version: 3.38
options {{
  keep-hostname(yes); chain-hostnames(no); use-dns(no); use-fqdn(no);
  keep-timestamp(yes); stats-freq(0); log-msg-size(262144);
  flush-lines(1); log-fifo-size(100000);
}};
# RFC 6587 octet counting + RFC 5424 (the syslog() driver)
source s_octet {{ syslog(ip("127.0.0.1") port({octet}) transport("tcp")
  max-connections(50) log-msg-size(262144)); }};
# newline framing + RFC 5424
source s_lf {{ network(ip("127.0.0.1") port({lf}) transport("tcp")
  flags(syslog-protocol) max-connections(50) log-msg-size(262144)); }};
source s_udp {{ network(ip("127.0.0.1") port({udp}) transport("udp")
  flags(syslog-protocol)); }};
# RFC 5425: TLS + octet counting; the client must present a certificate
# that chains to our CA (mTLS)
source s_tls {{ syslog(ip("127.0.0.1") port({tls}) transport("tls")
  max-connections(50) log-msg-size(262144)
  tls(key-file("{pki}/server.key") cert-file("{pki}/server.pem")
      ca-file("{pki}/ca.pem") peer-verify(required-trusted))); }};
template t_json {{ template("$(format-json --scope rfc5424 --scope nv-pairs \
--key SOURCE --pair PRI=$PRI)\\n"); }};
destination d_octet {{ file("{dir}/octet.json" template(t_json)); }};
destination d_lf {{ file("{dir}/lf.json" template(t_json)); }};
destination d_udp {{ file("{dir}/udp.json" template(t_json)); }};
destination d_tls {{ file("{dir}/tls.json" template(t_json)); }};
log {{ source(s_octet); destination(d_octet); }};
log {{ source(s_lf); destination(d_lf); }};
log {{ source(s_udp); destination(d_udp); }};
log {{ source(s_tls); destination(d_tls); }};
"""


class SyslogNg:
    SOURCES = ("octet", "lf", "udp", "tls")

    def __init__(self, suite, d):
        self.suite = suite
        self.dir = os.path.join(d, "syslog-ng")
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "syslog-ng.conf")
        self.pick_ports()
        self.told = False       # the ports were given out
        self.proc = None
        self.starts = 0

    def pick_ports(self):
        self.ports = {s: free_port(self.kind(s)) for s in self.SOURCES}

    def address(self, source):
        self.told = True
        return "127.0.0.1:%d" % self.ports[source]

    def kind(self, source):
        return socket.SOCK_DGRAM if source == "udp" else socket.SOCK_STREAM

    def start(self, timeout=10):
        """A first start before anyone was told the ports takes new ports
        while another process takes one first; otherwise the ports stay
        (configurations name them) and the start is tried again."""
        if self.starts == 0 and not self.told:
            tries = []

            def first():
                if tries:
                    self.pick_ports()
                tries.append(1)
                self._start(timeout)
            serve(self.suite, "syslog-ng", first)
        else:
            serve(self.suite, "syslog-ng", lambda: self._start(timeout),
                  pause=1)

    def _start(self, timeout):
        with open(self.conf, "w") as f:
            f.write(SNG_CONF.format(dir=self.dir, pki=self.suite.pki,
                                    **self.ports))
        self.starts += 1
        self.proc = Proc(self.suite, "syslog-ng.%d" % self.starts,
                         ["syslog-ng", "-F", "-f", self.conf,
                          "-R", os.path.join(self.dir, "persist"),
                          "-p", os.path.join(self.dir, "pid"),
                          "-c", os.path.join(self.dir, "ctl"),
                          "--no-caps"], cwd=self.dir)
        wait_listening(self.proc, [(self.ports[s], self.kind(s))
                                   for s in self.SOURCES],
                       "syslog-ng", timeout)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def messages(self, source):
        """Every complete JSON line syslog-ng wrote for source so far."""
        path = os.path.join(self.dir, source + ".json")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n")[:-1]:
            try:
                out.append(json.loads(line.decode("utf-8")))
            except ValueError as e:
                raise Fail("syslog-ng wrote a line that is not JSON "
                           "(%s): %r" % (e, line[:300]))
        return out

    def inject(self, source, text):
        """Send one marker message of our own (octet source only)."""
        msg = ("<134>1 %s localhost harness - - - %s"
               % (ms_to_iso(int(time.time() * 1000)), text)).encode()
        with socket.create_connection(("127.0.0.1", self.ports[source]),
                                      timeout=2) as s:
            if source == "octet":
                s.sendall(b"%d " % len(msg) + msg)
            else:
                s.sendall(msg + b"\n")


# --------------------------------------------------------------------------
# The fake cloud.

class FakeCloud:
    def __init__(self, suite, d, args):
        self.suite = suite
        self.dir = d
        exe = os.path.join(suite.build, "tests", "fakes", "fakecloud")
        if not os.access(exe, os.X_OK):
            raise Fail("%s is not built" % exe)
        self.proc = Proc(suite, "fakecloud", [exe, "-p", "0"] + args, cwd=d)

        def port():
            m = re.search(r"^port=(\d+)\s*$", self.proc.stdout(), re.M)
            if m:
                return int(m.group(1))
            if not self.proc.running():
                raise Fail("fakecloud exited (status %s):\n%s"
                           % (self.proc.p.returncode,
                              tail(self.proc.stderr())))
            return None
        self.port = wait_for(port, 10, "fakecloud to print port=")
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, params=None, body=None):
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method,
                                     headers=headers)
        if method == "POST" and data is None:
            req.data = b""
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise Fail("fake cloud control %s %s -> HTTP %d: %s"
                       % (method, url, e.code,
                          e.read()[:300].decode(errors="replace")))
        except OSError as e:
            raise Fail("fake cloud control %s %s failed: %s"
                       % (method, url, e))
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def versions(self, tenant):
        """[(id, rt_ms), ...] for every version the fake made visible."""
        v = self.call("GET", "/_control/versions", {"tenant": tenant})
        if isinstance(v, dict):
            v = v.get("versions", v.get("value"))
        out = []
        for item in v:
            if isinstance(item, dict):
                aid, lut = item["id"], item["lastUpdateTime"]
            else:
                aid, lut = item[0], item[1]
            out.append((aid, iso_to_ms(lut) if isinstance(lut, str)
                        else int(lut)))
        return out

    def alerts(self, tenant, client_id=CLIENT_ID):
        """{id: alert} as the alerts API serves them now (current
        versions), fetched the way a client would: token, then pages."""
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": "secret-" + tenant,
            "scope": "https://api.securitycenter.microsoft.com/.default",
        }).encode()
        try:
            with urllib.request.urlopen(
                    "%s/%s/oauth2/v2.0/token" % (self.url, tenant),
                    data=form, timeout=10) as r:
                tok = json.loads(r.read())["access_token"]
            out = {}
            skip = 0
            while True:
                q = urllib.parse.urlencode({
                    "$filter": "lastUpdateTime ge 2000-01-01T00:00:00Z",
                    "$top": 10000, "$skip": skip,
                    "$orderby": "lastUpdateTime asc",
                    "$expand": "evidence"})
                req = urllib.request.Request(
                    "%s/api/alerts?%s" % (self.url, q),
                    headers={"Authorization": "Bearer " + tok})
                with urllib.request.urlopen(req, timeout=30) as r:
                    page = json.loads(r.read())["value"]
                for a in page:
                    out[a["id"]] = a
                if len(page) < 10000:
                    return out
                skip += len(page)
        except (OSError, ValueError, KeyError) as e:
            raise Fail("reading tenant %s's alerts from the fake: %s"
                       % (tenant, e))

    def add_alerts(self, tenant, n=1, fields=None):
        return self.call("POST", "/_control/alerts",
                         {"tenant": tenant, "n": n}, fields)

    def update(self, tenant, alert_id):
        return self.call("POST", "/_control/update",
                         {"tenant": tenant, "id": alert_id})

    def fault(self, tenant, kind, arg=None):
        p = {"tenant": tenant, "kind": kind}
        if arg is not None:
            p["arg"] = arg
        return self.call("POST", "/_control/fault", p)

    def stats(self):
        return self.call("GET", "/_control/stats")

    def log(self):
        return self.call("GET", "/_control/log")


# --------------------------------------------------------------------------
# The daemon.

def write_config(path, d, daemon, outputs, tenants, fake=None, extra=""):
    """Write an alertrelay.conf (SPEC §3).  daemon: dict of [daemon] keys;
    outputs: list of dicts with "name" + keys; tenants: list of dicts with
    "name", optional "secret" (written to a 0600 file), "tenant_id" and any
    other keys."""
    lines = ["# written by tests/integration/harness.py", "[daemon]"]
    for k, v in daemon.items():
        lines.append("%s = %s" % (k, v))
    for o in outputs:
        lines.append("")
        lines.append('[output "%s"]' % o["name"])
        for k, v in o.items():
            if k != "name":
                lines.append("%s = %s" % (k, v))
    sdir = os.path.join(d, "secrets")
    os.makedirs(sdir, mode=0o700, exist_ok=True)
    for t in tenants:
        lines.append("")
        lines.append('[tenant "%s"]' % t["name"])
        tid = t.get("tenant_id", t["name"])
        lines.append("tenant_id = %s" % tid)
        lines.append("client_id = %s" % t.get("client_id", CLIENT_ID))
        if "secret" in t or "client_secret_file" not in t:
            sf = os.path.join(sdir, t["name"])
            fd = os.open(sf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, (t.get("secret", "secret-" + tid) + "\n").encode())
            os.close(fd)
            os.chmod(sf, t.get("secret_mode", 0o600))
            lines.append("client_secret_file = %s" % sf)
        if fake is not None:
            lines.append("api_url = %s" % fake.url)
            lines.append("login_url = %s" % fake.url)
        for k, v in t.items():
            if k not in ("name", "secret", "secret_mode", "tenant_id",
                         "client_id"):
                lines.append("%s = %s" % (k, v))
    text = "\n".join(lines) + "\n" + extra
    with open(path, "w") as f:
        f.write(text)
    return path


class Daemon:
    def __init__(self, suite, d, conf, name="alertrelayd"):
        self.suite = suite
        self.dir = d
        self.conf = conf
        self.name = name
        self.exe = os.path.join(suite.build, "alertrelayd")
        if not os.access(self.exe, os.X_OK):
            raise Fail("%s is not built" % self.exe)
        self.runs = 0
        self.proc = None
        self.env = None         # extra environment (LD_PRELOAD shims)

    def argv(self, *extra):
        return [self.exe, "-c", self.conf, "--log-target", "stderr"] + \
            list(extra)

    def _proc(self, *extra, umask=0o022):
        self.runs += 1
        env = None
        if self.env:
            env = dict(os.environ)
            env.update(self.env)
        p = Proc(self.suite, "%s.%d" % (self.name, self.runs),
                 self.argv(*extra), cwd=self.dir, env=env, umask=umask)
        return p

    def run(self, *extra, timeout=60, umask=0o022):
        """Run to completion (--once, --check-config): (status, stdout,
        stderr).  A run that outlives timeout is a failure."""
        p = self._proc(*extra, umask=umask)
        rc = p.wait(timeout)
        if rc is None:
            p.stop()
            self.suite.check_sanitizer(p)
            raise Fail("alertrelayd %s did not exit within %ds; "
                       "stderr:\n%s" % (" ".join(extra), timeout,
                                        tail(p.stderr())))
        p.close()
        self.suite.check_sanitizer(p)
        return rc, p.stdout(), p.stderr()

    def start(self, *extra, umask=0o022):
        self.proc = self._proc(*extra, umask=umask)
        return self.proc

    def alive(self):
        if self.proc is None or not self.proc.running():
            raise Fail("alertrelayd exited unexpectedly (status %s); "
                       "stderr:\n%s" % (self.proc.p.returncode,
                                        tail(self.proc.stderr())))
        return True

    def stop(self):
        """SIGTERM; a clean daemon exits 0 within its stop deadline."""
        rc = self.proc.stop(signal.SIGTERM, timeout=20)
        self.suite.check_sanitizer(self.proc)
        if rc != 0:
            raise Fail("alertrelayd exited with status %s on SIGTERM; "
                       "stderr:\n%s" % (rc, tail(self.proc.stderr())))
        return rc


# --------------------------------------------------------------------------
# Checking what arrived.

def lognorm_workaround(msg):
    """liblognorm bug #363 (Debian's 2.0.6) skips the first character after
    the 7th unescaped header pipe: give it a space to skip."""
    pipes = 0
    i = 0
    while i < len(msg):
        c = msg[i]
        if c == "\\":
            i += 2
            continue
        if c == "|":
            pipes += 1
            if pipes == 7:
                return msg[:i + 1] + " " + msg[i + 1:]
        i += 1
    return msg


def cef_parse(suite, messages):
    """Parse CEF strings with lognormalizer; returns a list of the "cef"
    objects (None where liblognorm rejected the event), in order."""
    if not messages:
        return []
    bad = [m for m in messages if "\n" in m or "\r" in m]
    if bad:
        raise Fail("%d message(s) contain a raw CR/LF, e.g. %r"
                   % (len(bad), bad[0][:200]))
    data = "".join(lognorm_workaround(m) + "\n" for m in messages)
    r = subprocess.run(["lognormalizer", "-r", suite.rulebase, "-e", "json"],
                       input=data.encode("utf-8"), capture_output=True,
                       timeout=60)
    out = r.stdout.decode("utf-8", "replace").split("\n")
    out = [x for x in out if x.strip()]
    if len(out) != len(messages):
        raise Fail("lognormalizer returned %d lines for %d messages: %s"
                   % (len(out), len(messages),
                      r.stderr.decode(errors="replace")[:300]))
    res = []
    for line in out:
        j = json.loads(line)
        res.append(j.get("cef"))
    return res


class Delivery:
    """One forwarded alert version as syslog-ng received it."""

    def __init__(self, rec, cef):
        self.rec = rec
        self.cef = cef
        ext = cef.get("Extensions", {}) if cef else {}
        self.ext = ext
        self.label = ext.get("cs2")
        self.id = ext.get("externalId")
        try:
            self.rt = int(ext.get("rt"))
        except (TypeError, ValueError):
            self.rt = None
        self.act = ext.get("act")

    def key(self):
        return (self.label, self.id, self.rt)


def deliveries(suite, records, strict=True):
    """Parse every syslog-ng record's MESSAGE as CEF.  With strict, a
    message liblognorm rejects fails the case."""
    recs = [r for r in records if r.get("PROGRAM") != "harness"]
    cefs = cef_parse(suite, [r.get("MESSAGE", "") for r in recs])
    out = []
    for r, c in zip(recs, cefs):
        if c is None:
            if strict:
                raise Fail("lognormalizer rejected a delivered message: %r"
                           % r.get("MESSAGE", "")[:400])
            continue
        out.append(Delivery(r, c))
    return out


def expected_versions(fake, tenants):
    """{(label, id, rt_ms)} for every version the fake made visible, for
    tenants given as [(fake tenant name, label)]."""
    exp = set()
    for name, label in tenants:
        for aid, rt in fake.versions(name):
            exp.add((label, aid, rt))
    return exp


def count_keys(dels):
    c = {}
    for d in dels:
        c[d.key()] = c.get(d.key(), 0) + 1
    return c


def compare(expected, dels, allow_dups=False, allow_missing=False):
    """Missing, duplicated and unexpected versions; raises Fail unless
    the delivery is exactly once (or at least once with allow_dups)."""
    got = count_keys(dels)
    missing = sorted(k for k in expected if k not in got)
    dups = {k: n for k, n in got.items() if n > 1}
    unexpected = sorted((k for k in got if k not in expected), key=str)
    problems = []
    if missing and not allow_missing:
        problems.append("%d of %d versions never arrived, e.g. %s"
                        % (len(missing), len(expected), missing[:3]))
    if dups and not allow_dups:
        problems.append("%d versions arrived more than once (%d extra "
                        "messages), e.g. %s"
                        % (len(dups), sum(dups.values()) - len(dups),
                           list(dups.items())[:3]))
    if unexpected:
        problems.append("%d delivered versions the cloud never showed, "
                        "e.g. %s" % (len(unexpected), unexpected[:3]))
    if problems:
        raise Fail("; ".join(problems))
    return missing, dups


def wait_delivered(suite, sng, source, expected_fn, timeout, daemon=None,
                   what=None):
    """Wait until every expected version has arrived at source; returns
    the deliveries.  expected_fn is re-evaluated each round (the cloud may
    still be making versions visible)."""
    state = {}

    def done():
        if daemon is not None:
            daemon.alive()
        exp = expected_fn()
        recs = sng.messages(source)
        if len(recs) < len(exp):
            state["last"] = (exp, None, len(recs))
            return None
        dels = deliveries(suite, recs)
        got = set(d.key() for d in dels)
        state["last"] = (exp, dels, len(recs))
        if exp <= got:
            return dels
        return None
    try:
        return wait_for(done, timeout, what or "all versions to arrive",
                        interval=0.25)
    except Fail as e:
        exp, dels, n = state.get("last", (set(), None, 0))
        if dels is None:
            dels = deliveries(suite, sng.messages(source), strict=False)
        got = set(d.key() for d in dels)
        missing = sorted(exp - got)
        msg = "%s: %d of %d versions arrived (%d messages); missing e.g. %s" \
            % (e, len(exp) - len(missing), len(exp), n, missing[:3])
        if daemon is not None and daemon.proc is not None:
            msg += "\n    daemon stderr (tail):\n" + \
                tail(daemon.proc.stderr(), 15)
        raise Fail(msg)


# --------------------------------------------------------------------------
# The suite.

class Suite:
    def __init__(self, build, keep):
        self.build = build
        self.keep = keep
        self.procs = []
        self.root = tempfile.mkdtemp(prefix="alertrelay-it.")
        self.pki = None
        self.rulebase = os.path.join(self.root, "cef.rb")
        with open(self.rulebase, "w") as f:
            f.write("version=2\nrule=:%cef:cef%\n")
        self.notes = []

    def setup_pki(self):
        if self.pki is None:
            self.pki = make_pki(os.path.join(self.root, "pki"))
        return self.pki

    def case_dir(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        return d

    def check_sanitizer(self, proc):
        err = proc.stderr()
        m = SANITIZER_RE.search(err)
        if m:
            i = max(0, m.start() - 200)
            raise Fail("%s reported a sanitizer error:\n%s"
                       % (proc.name, tail(err[i:i + 3000], 40)))

    def kill_all(self):
        for p in self.procs:
            if p.running():
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            p.close()

    def end_case(self):
        """Stop whatever a case left running (daemons first)."""
        for p in reversed(self.procs):
            if p.running():
                p.stop(signal.SIGTERM, timeout=5)
            p.close()
            try:
                err = p.stderr() if p.name.startswith("fakecloud") else ""
            except OSError:     # the work directory is gone: gone()
                err = ""
            if SANITIZER_RE.search(err):
                self.notes.append("warning: the fake cloud reported a "
                                  "sanitizer error: %s" % p.err_path)
        self.procs = []

    def gone(self):
        """The work directory was removed under us (by another program):
        what follows would fail for that reason only."""
        return not os.path.isdir(self.root)

    def cleanup(self):
        self.kill_all()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


class Ctx:
    """What a case's check function gets: the suite, its directory, and
    the components the case declared, already started."""

    def __init__(self, suite, case):
        self.suite = suite
        self.case = case
        self.dir = suite.case_dir(case["name"])
        self.fake = None
        self.sng = None
        self.daemon = None
        self.conf = None
        self.notes = []
        self.skipped = []

    def note(self, msg):
        self.notes.append(msg)

    def skip(self, reason):
        """A part of the case cannot run here (reason says why): the rest
        runs, and the case counts as skipped, not passed."""
        self.skipped.append(reason)

    def start_daemon(self, daemon=None, extra="", umask=0o022,
                     metrics=False, env=None):
        """Write the configuration (make_config) and start the daemon
        (env: extra environment).  With metrics, metrics_listen gets a
        free port, and a new one while another process takes it first;
        returns that port."""
        self.daemon = Daemon(self.suite, self.dir, None)
        self.daemon.env = env

        def attempt():
            dk = dict(daemon or {})
            port = None
            if metrics:
                port = free_port()
                dk["metrics_listen"] = "127.0.0.1:%d" % port
            self.conf = self.daemon.conf = self.make_config(daemon=dk,
                                                            extra=extra)
            p = self.daemon.start(umask=umask)
            if metrics:
                wait_listening(p, [port], "alertrelayd metrics_listen", 30)
            return port
        return serve(self.suite, "alertrelayd", attempt)

    # Helpers used by the checks.
    def tenants(self):
        """[(fake tenant name, label)] as configured."""
        return [(t.get("tenant_id", t["name"]), t.get("label", t["name"]))
                for t in self.case.get("tenants", [])]

    def expected(self, only=None):
        ts = [t for t in self.tenants() if only is None or t[0] in only]
        return expected_versions(self.fake, ts)

    def make_config(self, name="alertrelay.conf", daemon=None, outputs=None,
                    tenants=None, extra=""):
        c = self.case
        dk = {
            "state_dir": os.path.join(self.dir, "state"),
            "poll_interval": "1s",
            "overlap": "2m",
            "first_fetch": "2h",
            "control_socket": os.path.join(self.dir, "ctl.sock"),
        }
        dk.update(c.get("daemon", {}))
        if daemon:
            dk.update(daemon)
        outs = []
        for o in (outputs if outputs is not None else c.get("outputs", [])):
            o = dict(o)
            src = o.pop("sink", None)
            if src is not None:
                o["address"] = self.sng.address(src)
            for k in ("ca_file", "cert_file", "key_file"):
                if k in o and not o[k].startswith("/"):
                    o[k] = os.path.join(self.suite.pki, o[k])
            outs.append(o)
        return write_config(os.path.join(self.dir, name), self.dir, dk, outs,
                            tenants if tenants is not None
                            else c.get("tenants", []),
                            fake=self.fake, extra=extra)


def run_case(suite, case):
    ctx = Ctx(suite, case)
    try:
        if case.get("pki") or any(o.get("transport") == "tls"
                                  for o in case.get("outputs", [])):
            suite.setup_pki()
        if case.get("syslog_ng", bool(case.get("outputs"))):
            suite.setup_pki()
            ctx.sng = SyslogNg(suite, ctx.dir)
            ctx.sng.start()
        if "fake" in case:
            ctx.fake = FakeCloud(suite, ctx.dir, case["fake"])
        if case.get("tenants") is not None and ctx.fake is not None:
            ctx.conf = ctx.make_config()
            ctx.daemon = Daemon(suite, ctx.dir, ctx.conf)
        case["check"](ctx)
    finally:
        suite.end_case()
    if ctx.skipped:
        e = Skip("%s (the rest of the case passed)"
                 % "; ".join(ctx.skipped))
        e.notes = ctx.notes
        raise e
    return ctx


def extra_cases():
    """The CASES of every cases_*.py next to this file, in name order."""
    import importlib
    out = []
    for f in sorted(os.listdir(HERE)):
        if f.startswith("cases_") and f.endswith(".py"):
            out += importlib.import_module(f[:-3]).CASES
    return out


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="only the fast subset (for the ASan build)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--long", action="store_true",
                    help="the long randomized variants (run_long.sh)")
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    a = ap.parse_args()
    VERBOSE = a.verbose
    sys.path.insert(0, HERE)
    sys.modules.setdefault("harness", sys.modules[__name__])
    if a.long:
        os.environ["ALERTRELAY_LONG"] = "1"
    import cases as casemod
    all_cases = list(casemod.CASES) + extra_cases()

    selected = [c for c in all_cases
                if (not a.quick or c.get("quick"))
                and (not a.cases or c["name"] in a.cases)]
    unknown = set(a.cases) - set(c["name"] for c in all_cases)
    if unknown:
        sys.stderr.write("unknown case(s): %s\n" % ", ".join(sorted(unknown)))
        return 64
    if a.list:
        for c in selected:
            print("%-18s %s" % (c["name"], c.get("doc", "")))
        return 0

    build = os.environ.get("ALERTRELAY_BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(TOP, build)
    os.chdir(TOP)
    for tool in ("syslog-ng", "lognormalizer", "openssl"):
        if shutil.which(tool) is None:
            sys.stderr.write("integration: %s is not installed\n" % tool)
    suite = Suite(build, a.keep)
    suite.long = a.long

    def on_signal(sig, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    passed = failed = skipped = 0
    t_all = time.monotonic()
    print("integration: build %s, work dir %s"
          % (os.path.relpath(build, TOP), suite.root))
    try:
        for case in selected:
            if suite.gone():
                failed += 1
                print("the work directory %s was removed by another "
                      "program during the run: stopped before %s"
                      % (suite.root, case["name"]))
                break
            t0 = time.monotonic()
            sys.stdout.write("%-18s " % case["name"])
            sys.stdout.flush()
            try:
                ctx = run_case(suite, case)
            except Fail as e:
                failed += 1
                print("FAIL (%.1fs)\n    %s"
                      % (time.monotonic() - t0,
                         str(e).replace("\n", "\n    ")))
                for n in suite.notes:
                    print("    %s" % n)
                suite.notes = []
                continue
            except Skip as e:
                skipped += 1
                print("skipped (%.1fs)\n    %s"
                      % (time.monotonic() - t0,
                         str(e).replace("\n", "\n    ")))
                for n in getattr(e, "notes", []):
                    print("    note: %s" % n)
                for n in suite.notes:
                    print("    %s" % n)
                suite.notes = []
                continue
            except KeyboardInterrupt:
                raise
            except Exception:
                failed += 1
                print("FAIL (%.1fs) harness error\n%s"
                      % (time.monotonic() - t0,
                         tail(traceback.format_exc(), 30)))
                continue
            passed += 1
            print("ok   (%.1fs)" % (time.monotonic() - t0))
            for n in ctx.notes:
                print("    note: %s" % n)
            for n in suite.notes:
                print("    %s" % n)
            suite.notes = []
    except KeyboardInterrupt:
        print("\ninterrupted")
        failed += 1
    finally:
        if failed:
            suite.keep = suite.keep or os.environ.get("ALERTRELAY_KEEP")
        suite.cleanup()
    if suite.keep:
        print("work dir kept: %s" % suite.root)
    print("total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
