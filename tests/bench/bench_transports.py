#!/usr/bin/env python3
"""Backfill through each delivery transport: tcp (the counting sink),
relp (a real rsyslogd with imrelp, Direct main queue, writing a file) and
kafka (librdkafka's mock cluster, 3 brokers, acks=all).  The daemon runs
--once: it exits when every record is acknowledged by the receiver, so
its wall time and CPU cover the whole delivery.

Usage: bench_transports.py [--build DIR] [--tenants N] [--alerts N]
                           [TRANSPORT ...]
Prints one "RESULT transport_NAME k=v ..." line per transport; figures
are printed, never asserted (exit 1 only when a transport could not run).
"""

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"


def log(msg):
    print(msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_line(path, prefix, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line[len(prefix):].strip()
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError("no %r in %s" % (prefix, path))


def spawn(argv, d, name, stdin=None):
    out = open(os.path.join(d, name + ".out"), "w")
    err = open(os.path.join(d, name + ".err"), "w")
    return subprocess.Popen(argv, stdout=out, stderr=err, cwd=d,
                            stdin=stdin or subprocess.DEVNULL)


def config(d, fake_port, output, tenants):
    sec = os.path.join(d, "secrets")
    os.makedirs(sec, mode=0o700, exist_ok=True)
    lines = ["[daemon]", "state_dir = %s/state" % d,
             "control_socket = %s/control.sock" % d, "page_size = 10000",
             "first_fetch = 2h", "poll_interval = 60s", "",
             '[output "out"]']
    lines += ["%s = %s" % kv for kv in output.items()]
    url = "http://127.0.0.1:%d" % fake_port
    for t in tenants:
        p = os.path.join(sec, t)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, ("secret-%s\n" % t).encode())
        os.close(fd)
        lines += ["", '[tenant "%s"]' % t, "tenant_id = %s" % t,
                  "client_id = %s" % CLIENT_ID,
                  "client_secret_file = %s" % p, "api_url = %s" % url,
                  "login_url = %s" % url]
    path = os.path.join(d, "alertrelay.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def run_once(build, d, conf, limit):
    """alertrelayd --once; (exit status, wall s, user s, sys s)."""
    t0 = time.monotonic()
    p = spawn([os.path.join(build, "alertrelayd"), "-c", conf,
               "--log-target", "stderr", "--once"], d, "alertrelayd")
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() - t0 > limit:
            p.kill()
        time.sleep(0.02)
    return (os.waitstatus_to_exitcode(status), time.monotonic() - t0,
            ru.ru_utime, ru.ru_stime)


class Tcp:
    def __init__(self, build, d):
        self.p = spawn([os.path.join(build, "tests", "bench", "sink"),
                        "--interval", "200"], d, "sink")
        self.port = int(wait_line(os.path.join(d, "sink.out"), "port=", 10))
        self.d = d
        self.output = {"transport": "tcp",
                       "address": "127.0.0.1:%d" % self.port}

    def count(self, expected):
        """The sink prints its count every 200 ms: wait for a line that
        has them all (the daemon exits a round trip after the sink read
        the last one), or 1 s."""
        end = time.monotonic() + 1.0
        while True:
            n = 0
            with open(os.path.join(self.d, "sink.out")) as f:
                for line in f:
                    if line.startswith("stats "):
                        kv = dict(x.split("=", 1)
                                  for x in line.split()[1:])
                        n = int(float(kv.get("msgs", 0)))
            if n >= expected or time.monotonic() > end:
                return n
            time.sleep(0.05)

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Relp:
    def __init__(self, build, d):
        sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
        import cases_relp
        exe, mods = cases_relp.rsyslog_root(build)
        self.port = free_port()
        self.d = d
        conf = os.path.join(d, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write('global(workDirectory="%s" maxMessageSize="64k")\n'
                    'main_queue(queue.type="Direct")\n'
                    'module(load="%s/imrelp.so")\n'
                    'input(type="imrelp" address="127.0.0.1" port="%d" '
                    'maxDataSize="128k")\n'
                    'template(name="raw" type="string" '
                    'string="%%rawmsg%%\\n")\n'
                    'action(type="omfile" file="%s/relp.log" '
                    'template="raw")\n' % (d, mods, self.port, d))
        self.p = spawn([exe, "-n", "-f", conf, "-i",
                        os.path.join(d, "rsyslog.pid"), "-M", mods], d,
                       "rsyslogd")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port),
                                         timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        self.output = {"transport": "relp",
                       "address": "127.0.0.1:%d" % self.port}

    def count(self, expected):
        with open(os.path.join(self.d, "relp.log"), "rb") as f:
            return f.read().count(b"\n")

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Kafka:
    def __init__(self, build, d):
        self.p = spawn([os.path.join(build, "tests", "fakes", "kafkamock"),
                        "-t", "bench"], d, "kafkamock",
                       stdin=subprocess.PIPE)
        self.boot = wait_line(os.path.join(d, "kafkamock.out"),
                              "bootstrap ", 10)
        self.output = {"transport": "kafka", "brokers": self.boot,
                       "topic": "bench"}

    def count(self, expected):
        """Messages appended: the mock cluster keeps about 5 MB per
        partition and drops the oldest beyond that, so count offsets
        (last offset + 1 per partition), not the messages still there."""
        r = subprocess.run(["kcat", "-b", self.boot, "-C", "-t", "bench",
                            "-o", "beginning", "-e", "-q",
                            "-f", "%p %o\n"], capture_output=True,
                           timeout=300)
        last = {}
        for line in r.stdout.decode().split("\n"):
            if line:
                p, o = line.split()
                last[p] = max(last.get(p, -1), int(o))
        return sum(o + 1 for o in last.values())

    def stop(self):
        self.p.stdin.close()
        self.p.wait()


KINDS = {"tcp": Tcp, "relp": Relp, "kafka": Kafka}


def bench(a, kind, root):
    d = os.path.join(root, kind)
    os.makedirs(d)
    tenants = ["tenant-%04d" % (i + 1) for i in range(a.tenants)]
    total = a.tenants * a.alerts
    fake = spawn([os.path.join(a.build, "tests", "fakes", "fakecloud"),
                  "-p", "0", "--tenants", str(a.tenants), "--alerts",
                  str(a.alerts), "--spread", "1h", "--no-rate-limit",
                  "--seed", "1"], d, "fake")
    port = int(wait_line(os.path.join(d, "fake.out"), "port=", 60))
    try:
        recv = KINDS[kind](a.build, d)
    except BaseException as e:
        # rsyslogd comes from Debian's packages (apt-get download):
        # without them the relp figure is missing, said so, not an error.
        fake.terminate()
        log("%s: skipped, cannot start the receiver: %s" % (kind, e))
        return True
    conf = config(d, port, dict(recv.output, format="cef"), tenants)
    rc, wall, user, sys_s = run_once(a.build, d, conf, 120 + total / 1000)
    got = recv.count(total)
    recv.stop()
    fake.terminate()
    fake.wait()
    cpu = user + sys_s
    log("%s: exit %d, %d/%d delivered and acknowledged in %.2f s = %.0f "
        "alerts/s; daemon CPU %.2f s (user %.2f, sys %.2f) = %.1f us "
        "per alert" % (kind, rc, got, total, wall, got / wall, cpu, user,
                       sys_s, 1e6 * cpu / max(got, 1)))
    log("RESULT transport_%s alerts=%d expected=%d wall_s=%.3f "
        "alerts_per_s=%.0f cpu_s=%.3f us_per_alert=%.2f exit=%d"
        % (kind, got, total, wall, got / wall, cpu,
           1e6 * cpu / max(got, 1), rc))
    return rc == 0 and got >= total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("kinds", nargs="*", default=["tcp", "relp", "kafka"])
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    root = tempfile.mkdtemp(prefix="alertrelay-bench-transports.")
    log("transports: %d tenants x %d alerts, --once, format cef"
        % (a.tenants, a.alerts))
    ok = True
    try:
        for k in a.kinds:
            ok = bench(a, k, root) and ok
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            log("kept %s" % root)
    return 0 if ok else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
