"""A real etcd cluster on loopback for the cluster-mode cases: N members
started as child processes of the harness (Debian etcd-server 3.4), each
with its own data directory, client and peer port; members can be
stopped, killed, paused and started again with their data.  Reads go
through the v3 JSON gateway with the standard library only."""

import base64
import json
import os
import shutil
import signal
import ssl
import urllib.request

from harness import (Fail, Proc, Skip, free_port, openssl, serve, tail,
                     wait_for, wait_listening)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def unb64(s):
    return base64.b64decode(s).decode("utf-8", "replace")


def prefix_end(p):
    b = bytearray(p.encode())
    b[-1] += 1
    return b.decode()


class EtcdMember:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.i = i
        self.name = "etcd%d" % (i + 1)
        self.pick_ports()
        self.data = os.path.join(cluster.dir, self.name + ".data")
        self.proc = None
        self.starts = 0

    def pick_ports(self):
        self.client_port = free_port()
        self.peer_port = free_port()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.cluster.tls else "http",
                                      self.client_port)

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def argv(self):
        return ["etcd", "--name", self.name, "--data-dir", self.data,
                "--listen-client-urls", self.url,
                "--advertise-client-urls", self.url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.cluster.initial_cluster(),
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.cluster.token,
                # cases_cluster.ELECTION is this election timeout
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-level", "warn"] + self.tls_args()

    def tls_args(self):
        if not self.cluster.tls:
            return []
        ca, cert, key = self.cluster.tls
        return ["--cert-file", cert, "--key-file", key,
                "--trusted-ca-file", ca, "--client-cert-auth"]

    def start(self):
        """Start the member again on its ports (the cluster knows them),
        trying again while another process holds one."""
        serve(self.cluster.suite, self.name, self.start_once, pause=1)

    def start_once(self):
        """Start and wait until it listens on both ports (PortInUse when
        another process holds one)."""
        self.starts += 1
        self.proc = Proc(self.cluster.suite, "%s.%d" % (self.name,
                                                         self.starts),
                         self.argv(), cwd=self.cluster.dir)
        wait_listening(self.proc, [self.client_port, self.peer_port],
                       self.name, 30)

    def running(self):
        return self.proc is not None and self.proc.running()

    def stop(self, sig=signal.SIGTERM):
        """Stop the member (SIGKILL: as if its host died)."""
        if self.proc is not None:
            self.proc.stop(sig, timeout=10)
            self.proc = None

    def pause(self):
        """SIGSTOP: the port stays open but nothing answers (a partition
        as the clients see it)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2,
                                        context=self.cluster.ssl) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """tls: the harness PKI directory: etcd then serves https with a
    certificate from its CA and requires client certificates from it."""

    def __init__(self, suite, d, n=3, tls=None):
        if not _have_etcd():
            raise Skip("etcd is not installed (Debian package etcd-server)")
        self.suite = suite
        self.dir = os.path.join(d, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        self.token = "alertrelay-it-%d" % os.getpid()
        self.tls = None
        self.ssl = None
        if tls:
            self.tls = make_etcd_cert(tls, self.dir)
            self.ssl = ssl.create_default_context(cafile=self.tls[0])
            self.ssl.load_cert_chain(os.path.join(tls, "client.pem"),
                                     os.path.join(tls, "client.key"))
        self.members = [EtcdMember(self, i) for i in range(n)]

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    def endpoints(self, only=None):
        ms = self.members if only is None else [self.members[i]
                                                for i in only]
        return ",".join(m.url for m in ms)

    def start(self, timeout=30):
        """The first start: while another process takes a member's port
        first, the whole cluster starts again on new ports with empty
        data directories (the members' peer URLs are in each other's
        configuration)."""
        tries = []

        def attempt():
            if tries:
                self.stop()
                for m in self.members:
                    shutil.rmtree(m.data, ignore_errors=True)
                    m.pick_ports()
            tries.append(1)
            for m in self.members:
                m.start_once()
        serve(self.suite, "etcd", attempt)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout=30, members=None):
        ms = self.members if members is None else members

        def ok():
            for m in ms:
                if not m.running():
                    raise Fail("%s exited (status %s):\n%s"
                               % (m.name, m.proc.p.returncode,
                                  tail(m.proc.stderr())))
            return all(m.healthy() for m in ms)
        wait_for(ok, timeout, "etcd to be healthy", interval=0.2)

    def call(self, path, body, timeout=5):
        """POST to the first member that answers; the decoded reply."""
        data = json.dumps(body).encode()
        err = None
        for m in self.members:
            if not m.running():
                continue
            req = urllib.request.Request(m.url + path, data=data,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=timeout,
                                            context=self.ssl) as r:
                    return json.loads(r.read())
            except (OSError, ValueError) as e:
                err = e
        raise Fail("etcd %s failed on every member: %s" % (path, err))

    def get_prefix(self, prefix):
        """{key: (value, lease)} under prefix."""
        r = self.call("/v3/kv/range", {"key": b64(prefix),
                                        "range_end": b64(prefix_end(prefix))})
        return {unb64(kv["key"]): (unb64(kv.get("value", "")),
                                   kv.get("lease", "0"))
                for kv in r.get("kvs", [])}

    def stop(self):
        for m in self.members:
            m.stop()


def _have_etcd():
    return any(os.access(os.path.join(p, "etcd"), os.X_OK)
               for p in os.environ.get("PATH", "").split(":"))


def make_etcd_cert(pki, d):
    """A certificate from the harness CA for etcd: server and client use
    (its gateway dials its own gRPC port with it), SAN 127.0.0.1."""
    with open(os.path.join(d, "etcd.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "basicConstraints=CA:FALSE\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "etcd.key",
            "-out", "etcd.csr", "-subj", "/CN=etcd", cwd=d)
    openssl("x509", "-req", "-in", "etcd.csr", "-CA",
            os.path.join(pki, "ca.pem"), "-CAkey", os.path.join(pki, "ca.key"),
            "-CAcreateserial", "-out", "etcd.pem", "-days", "30",
            "-extfile", "etcd.ext", cwd=d)
    os.chmod(os.path.join(d, "etcd.key"), 0o600)
    return (os.path.join(pki, "ca.pem"), os.path.join(d, "etcd.pem"),
            os.path.join(d, "etcd.key"))
