"""Durability cases (issue 3, SPEC section 5): SIEM outages, connection
resets through a chaos proxy, a SIEM that resets unread data at the end
of --once, kill -9 during a backfill, a full spool, a corrupted spool and
a full disk.  Every case compares what syslog-ng
received with the fake cloud's /_control/versions: zero loss is asserted,
duplicates are counted and reported in the case's note.

Each case has a short variant for the normal suite and a long one that
runs with --long (tests/integration/run_long.sh)."""

import errno
import fcntl
import os
import random
import select
import selectors
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

from harness import (Delivery, Fail, Skip, cef_parse, compare, count_keys,
                     deliveries, log, tail, wait_for, wait_delivered)

SEED = int(os.environ.get("ALERTRELAY_SEED", "0")) or None


def is_long(ctx=None):
    """--long (run_long.sh): the long randomized variants."""
    return bool(os.environ.get("ALERTRELAY_LONG")) or \
        bool(getattr(getattr(ctx, "suite", None), "long", False))


def rng(ctx):
    """A per-case PRNG; its seed is printed so a failure can be replayed
    with ALERTRELAY_SEED."""
    seed = SEED or random.randrange(1, 1 << 30)
    ctx.note("seed %d" % seed)
    return random.Random(seed)


def tenants(n, prefix="t"):
    return [{"name": "%s%d" % (prefix, i),
             "label": "Customer %s%d Ltd" % (prefix, i)}
            for i in range(1, n + 1)]


def fake_tenants(ts):
    args = []
    for t in ts:
        args += ["-t", t["name"]]
    return args


def octet_tcp(name="siem"):
    return {"name": name, "transport": "tcp", "framing": "octet-counting",
            "format": "cef", "sink": "octet"}


def settle(ctx, source):
    """Let syslog-ng write out what it received: a marker through the same
    source (octet, lf), or a pause (tls, where the harness cannot inject)."""
    if source == "tls":
        time.sleep(1.5)
        return
    marker = "harness-marker-%d" % time.monotonic_ns()
    ctx.sng.inject(source, marker)
    wait_for(lambda: any(r.get("MESSAGE", "").endswith(marker)
                         for r in ctx.sng.messages(source)),
             10, "syslog-ng to write a marker message")


def dup_count(dups):
    """Extra messages beyond one per version."""
    return sum(dups.values()) - len(dups)


def final_check(ctx, source, expected=None, strict=True):
    """Everything the cloud made visible arrived at source, at least once;
    returns (number of versions, duplicate messages)."""
    exp = ctx.expected() if expected is None else expected
    dels = wait_delivered(ctx.suite, ctx.sng, source, lambda: exp, 90,
                          what="every version at %s" % source)
    settle(ctx, source)
    dels = deliveries(ctx.suite, ctx.sng.messages(source), strict=strict)
    _, dups = compare(exp, dels, allow_dups=True)
    return len(exp), dup_count(dups)


def daemon_stderr(ctx):
    """The daemon's stderr over all its runs."""
    out = []
    for i in range(1, ctx.daemon.runs + 1):
        p = os.path.join(ctx.dir, "alertrelayd.%d.stderr" % i)
        try:
            with open(p, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            pass
    return "".join(out)


def find_line(text, *words):
    for line in text.split("\n"):
        low = line.lower()
        if all(w.lower() in low for w in words):
            return line
    return None


def need_line(text, *words, what=""):
    line = find_line(text, *words)
    if line is None:
        raise Fail("the daemon logged no line naming %s (%s); stderr:\n%s"
                   % (" + ".join(repr(w) for w in words), what,
                      tail(text)))
    return line


def api_request_count(ctx):
    """Alert API requests the fake has logged (token requests excluded)."""
    n = 0
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and "/oauth2/" not in f[3]:
            n += 1
    return n


def stop_now(ctx):
    """Stop the daemon with two SIGTERMs (the second exits at once, the
    spool kept on disk); it must exit 0."""
    p = ctx.daemon.proc
    os.kill(p.pid, signal.SIGTERM)
    time.sleep(0.3)
    if p.running():
        os.kill(p.pid, signal.SIGTERM)
    rc = p.wait(15)
    if rc is None:
        raise Fail("alertrelayd did not exit after a second SIGTERM")
    p.close()
    ctx.suite.check_sanitizer(p)
    if rc != 0:
        raise Fail("alertrelayd exited %s after two SIGTERMs; stderr:\n%s"
                   % (rc, tail(p.stderr())))


# --------------------------------------------------------------------------
# The spool's on-disk format (lib/spool.c): 12-byte header "ARS1", u32
# length, u32 crc32c, then the payload.

SPOOL_MAGIC = b"ARS1"


def spool_dir(ctx, output="siem"):
    return os.path.join(ctx.dir, "state", "spool", output)


def spool_records(path):
    """[(offset, payload)] of the records of one segment file, as long as
    they parse (the test reads files it has not damaged yet)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    off = 0
    while off + 12 <= len(data) and data[off:off + 4] == SPOOL_MAGIC:
        n = struct.unpack("<I", data[off + 4:off + 8])[0]
        if off + 12 + n > len(data):
            break
        out.append((off, data[off + 12:off + 12 + n]))
        off += 12 + n
    return out


def spool_segments(d):
    try:
        return sorted(os.path.join(d, f) for f in os.listdir(d)
                      if f.endswith(".seg"))
    except FileNotFoundError:
        return []


def spool_count(d):
    return sum(len(spool_records(s)) for s in spool_segments(d))


def payload_key(ctx, payload):
    """The (label, id, rt) of a spooled message, parsed like a delivery."""
    msg = payload.decode("utf-8", "replace")
    i = msg.find("CEF:")
    if i < 0:
        raise Fail("spooled record is not CEF: %r" % msg[:200])
    cef = cef_parse(ctx.suite, [msg[i:]])[0]
    if cef is None:
        raise Fail("lognormalizer rejected a spooled record: %r"
                   % msg[:300])
    return Delivery({"MESSAGE": msg[i:]}, cef).key()


# --------------------------------------------------------------------------
# A TCP proxy that breaks connections at random points of the stream.

class ChaosProxy:
    """Relays daemon <-> syslog-ng and, `drops` times, breaks the daemon's
    connection after a random number of bytes.  A break models a receiver
    that processes everything its TCP stack acknowledged and then resets
    the connection: what the proxy has read is forwarded, the unread rest
    of its receive queue is drained and forwarded too, then the daemon
    gets a RST (SO_LINGER 0) while syslog-ng sees an orderly close.  A small
    receive buffer and a rate limit keep unacknowledged data in the
    daemon's send queue at the cut, which must be resent."""

    def __init__(self, target_port, drops, rnd, max_gap, rate=2 << 20):
        self.target = target_port
        self.drops_left = drops
        self.dropped = 0
        self.discarded = 0
        self.conns = 0
        self.rnd = rnd
        self.max_gap = max_gap
        self.rate = rate
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.stopping.set()
        for t in self.threads:
            t.join(5)
        self.ls.close()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _reset(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()

    @staticmethod
    def _close_up(up):
        """Orderly close towards syslog-ng, reading what it still sends."""
        try:
            up.shutdown(socket.SHUT_WR)
            up.settimeout(2)
            while up.recv(65536):
                pass
        except OSError:
            pass
        up.close()

    def _serve(self, c):
        with self.lock:
            self.conns += 1
            threshold = None
            if self.drops_left > 0:
                threshold = self.rnd.randint(4096, self.max_gap)
        try:
            up = socket.create_connection(("127.0.0.1", self.target),
                                          timeout=5)
        except OSError:
            self._reset(c)
            return
        c.setblocking(False)
        up.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(c, selectors.EVENT_READ, "down")
        sel.register(up, selectors.EVENT_READ, "up")
        n = 0
        t0 = time.monotonic()
        try:
            while not self.stopping.is_set():
                for key, _ in sel.select(0.2):
                    src = key.fileobj
                    dst = up if key.data == "down" else c
                    try:
                        data = src.recv(16384)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
                    if key.data != "down":
                        continue
                    n += len(data)
                    # Rate limit: the window stays small, the daemon's
                    # send queue full.
                    ahead = n / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                    if threshold is not None and n >= threshold:
                        self._drop(c, up)
                        return
        except OSError:
            pass
        finally:
            sel.close()
            for s in (c, up):
                if s.fileno() != -1:
                    s.close()

    def _drop(self, c, up):
        with self.lock:
            if self.drops_left <= 0:
                return
            self.drops_left -= 1
            self.dropped += 1
        # What sits in the receive queue now is read and forwarded.  Then
        # the receiver "dies": it waits (up to 20 ms) for more bytes to
        # arrive, which our kernel acknowledges, and resets the connection
        # without reading them.  The daemon must not count those as
        # delivered just because they were acknowledged: it holds recent
        # records back and sends them again.
        up.setblocking(True)
        c.setblocking(True)
        queued = self._inq(c)
        while queued > 0:
            data = c.recv(min(queued, 65536))
            if not data:
                break
            queued -= len(data)
            up.sendall(data)
        deadline = time.monotonic() + 0.02
        while self._inq(c) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        self.discarded += self._inq(c)
        self._reset(c)
        self._close_up(up)

    @staticmethod
    def _inq(s):
        """Bytes in the socket's receive queue (FIONREAD)."""
        try:
            return struct.unpack("i", fcntl.ioctl(
                s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0


# --------------------------------------------------------------------------
# outage: syslog-ng down while alerts keep arriving on several tenants.

def feeder(ctx, names, stop, period=0.25, update_every=4):
    """Add one alert per tenant every period (and update one now and
    then) until stop is set."""
    i = 0
    while not stop.is_set():
        for name in names:
            ctx.fake.add_alerts(name, 1)
            if i % update_every == update_every - 1:
                vs = ctx.fake.versions(name)
                if vs:
                    ctx.fake.update(name, vs[len(vs) // 2][0])
        i += 1
        stop.wait(period)


def check_outage(ctx):
    length = 30 if is_long(ctx) else 8
    names = [t[0] for t in ctx.tenants()]
    ctx.daemon.start()
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30,
                   daemon=ctx.daemon, what="the initial backlog")
    stop = threading.Event()
    th = threading.Thread(target=feeder, args=(ctx, names, stop),
                          daemon=True)
    th.start()
    try:
        time.sleep(1.5)
        ctx.sng.stop()
        t0 = time.monotonic()
        time.sleep(length)
        ctx.daemon.alive()
        ctx.sng.start()
        outage = time.monotonic() - t0
        time.sleep(1.5)
    finally:
        stop.set()
        th.join(10)
    n, dups = final_check(ctx, "octet")
    ctx.daemon.stop()
    err = daemon_stderr(ctx)
    need_line(err, "output siem", "127.0.0.1", "retrying",
              what="the outage warning")
    need_line(err, "output siem: connected to", what="the reconnection")
    ctx.note("%d versions over %d tenants after a %.0fs SIEM outage; "
             "%d duplicate messages" % (n, len(names), outage, dups))


# --------------------------------------------------------------------------
# resets: a chaos proxy breaks TCP and TLS connections mid-stream.

def check_resets(ctx):
    drops = 20 if is_long(ctx) else 5
    r = rng(ctx)
    nalerts = sum(1 for t in ctx.tenants()
                  for _ in ctx.fake.versions(t[0]))
    # About 1.3 KB per message: the breaks come within the first half of
    # the data (a mean gap of a quarter of an even share).
    gap = max(16384, nalerts * 1300 // (2 * (drops + 1)))
    proxies = {
        "octet": ChaosProxy(ctx.sng.ports["octet"], drops, r, gap),
        "tls": ChaosProxy(ctx.sng.ports["tls"], drops, r, gap),
    }
    try:
        outs = [
            {"name": "siem", "transport": "tcp",
             "framing": "octet-counting", "format": "cef",
             "address": proxies["octet"].address()},
            {"name": "siemtls", "transport": "tls", "format": "cef",
             "address": proxies["tls"].address(),
             "tls_server_name": "localhost", "ca_file": "ca.pem",
             "cert_file": "client.pem", "key_file": "client.key"},
        ]
        ctx.daemon.conf = ctx.make_config(outputs=outs)
        ctx.daemon.start()
        res = {}
        for src in ("octet", "tls"):
            res[src] = final_check(ctx, src)
        ctx.daemon.stop()
    finally:
        for p in proxies.values():
            p.close()
    for src, p in proxies.items():
        if p.dropped < drops:
            raise Fail("the %s proxy broke only %d of %d connections (the "
                       "stream ended first)" % (src, p.dropped, drops))
    err = daemon_stderr(ctx)
    need_line(err, "output siem", "lost connection",
              what="the broken TCP connection")
    ctx.note("TCP: %d versions, %d resets (%d acknowledged bytes thrown "
             "away by the receiver), %d duplicate messages; TLS: %d "
             "versions, %d resets (%d bytes thrown away), %d duplicate "
             "messages"
             % (res["octet"][0], proxies["octet"].dropped,
                proxies["octet"].discarded, res["octet"][1],
                res["tls"][0], proxies["tls"].dropped,
                proxies["tls"].discarded, res["tls"][1]))


# --------------------------------------------------------------------------
# crash: kill -9 at random moments during a backfill.

def msg_count(ctx, source):
    """Lines syslog-ng has written for source (cheap: no parsing)."""
    try:
        with open(os.path.join(ctx.sng.dir, source + ".json"), "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def check_crash(ctx):
    kills = 20 if is_long(ctx) else 4
    r = rng(ctx)
    exp = ctx.expected()
    src = "octet"
    stages = []
    for i in range(kills):
        ctx.daemon.start()
        t0 = time.monotonic()
        if i % 2 == 0:
            # While starting, polling, spooling the first pages.
            time.sleep(r.uniform(0.05, 0.8))
        else:
            # In the middle of the stream, a little further on.
            target = msg_count(ctx, src) + \
                int(r.uniform(0.3, 1.2) * len(exp) / kills)
            try:
                wait_for(lambda: msg_count(ctx, src) >= target, 20,
                         "progress", interval=0.01)
            except Fail:
                pass
            time.sleep(r.uniform(0, 0.05))
        if not ctx.daemon.proc.running():
            raise Fail("alertrelayd exited before kill %d; stderr:\n%s"
                       % (i + 1, tail(ctx.daemon.proc.stderr())))
        os.kill(ctx.daemon.proc.pid, signal.SIGKILL)
        ctx.daemon.proc.wait(10)
        ctx.daemon.proc.close()
        ctx.suite.check_sanitizer(ctx.daemon.proc)
        stages.append((time.monotonic() - t0, msg_count(ctx, src)))
        log("kill %d after %.2fs: %d messages so far" % (i + 1,
                                                         *stages[-1]))
    got_before = msg_count(ctx, src)
    ctx.daemon.start()
    n, dups = final_check(ctx, src, expected=exp)
    ctx.daemon.stop()
    ctx.note("%d versions over %d tenants, %d kill -9 at %s messages "
             "received; %d duplicate messages"
             % (n, len(ctx.tenants()), kills,
                ",".join(str(m) for _, m in stages), dups))
    if got_before >= len(exp):
        ctx.note("warning: the backfill had finished before the last "
                 "kill")


# --------------------------------------------------------------------------
# full_spool: spool_max_bytes reached while the SIEM is down.  The check
# runs before each page, so the spool may pass the bound by one page.

def check_full_spool(ctx):
    ctx.sng.stop()
    ctx.daemon.start()
    err = lambda: ctx.daemon.proc.stderr()
    for t in ("t1", "t2"):
        line = wait_for(lambda: ctx.daemon.alive() and
                        find_line(err(), "tenant %s" % t, "polling paused",
                                  "output siem"),
                        30, "the daemon to say polling of %s paused" % t)
    # Paused means no API calls while the spool stays full.
    n1 = api_request_count(ctx)
    time.sleep(3)
    n2 = api_request_count(ctx)
    if n2 != n1:
        raise Fail("%d API requests while polling was paused" % (n2 - n1))
    size = sum(os.path.getsize(s)
               for s in spool_segments(spool_dir(ctx)))
    spooled = spool_count(spool_dir(ctx))
    exp = ctx.expected()
    if spooled >= len(exp):
        raise Fail("all %d versions fit in the spool; the case needs more"
                   % len(exp))
    ctx.sng.start()
    n, dups = final_check(ctx, "octet", expected=exp)
    ctx.daemon.stop()
    ctx.note("paused with %d records (%d bytes, spool_max_bytes 1M) and "
             "no API call for 3s: %s; resumed by itself: %d versions, %d "
             "duplicate messages" % (spooled, size, line.strip()[:90], n,
                                     dups))


# --------------------------------------------------------------------------
# corrupt_spool: flipped bytes and a truncated segment.

def check_corrupt_spool(ctx):
    ctx.sng.stop()
    exp = ctx.expected()
    ctx.daemon.start()
    d = spool_dir(ctx)
    wait_for(lambda: ctx.daemon.alive() and spool_count(d) >= len(exp),
             30, "every version in the spool")
    time.sleep(1.5)		# the cursor is committed after the sync
    stop_now(ctx)
    segs = spool_segments(d)
    recs = spool_records(segs[-1])
    if len(recs) < 10:
        raise Fail("only %d records in %s" % (len(recs), segs[-1]))
    path = segs[-1]
    name = os.path.basename(path)
    # Flip a byte in the middle of a record's payload, and in another
    # record's length field (a damaged length must be caught too).
    damaged = []
    with open(path, "r+b") as f:
        for idx, where in ((len(recs) // 3, "payload"),
                           (len(recs) // 2, "length")):
            off, payload = recs[idx]
            pos = off + 12 + len(payload) // 2 if where == "payload" \
                else off + 5
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x5a]))
            damaged.append((off, payload_key(ctx, payload)))
        # A torn tail: the last record cut in half.
        off, payload = recs[-1]
        f.truncate(off + 12 + len(payload) // 2)
        damaged.append((off, payload_key(ctx, payload)))
    ctx.sng.start()
    ctx.daemon.start()
    lost = set(k for _, k in damaged)
    want = exp - lost
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: want, 60,
                   daemon=ctx.daemon, what="every intact record")
    time.sleep(1)
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = deliveries(ctx.suite, ctx.sng.messages("octet"))
    got = set(x.key() for x in dels)
    _, dups = compare(want, [x for x in dels if x.key() not in lost],
                      allow_dups=True)
    back = lost & got
    if back:
        raise Fail("damaged records were delivered anyway: %s"
                   % sorted(back))
    err = daemon_stderr(ctx)
    for off, _ in damaged[:2]:
        need_line(err, "corrupt record", name, "offset %d" % off,
                  what="the damaged record at %s offset %d" % (name, off))
    need_line(err, name, "offset %d" % damaged[2][0], "truncat",
              what="the torn tail at offset %d" % damaged[2][0])
    ctx.note("%d intact versions delivered, %d damaged records reported "
             "with file and offset and skipped; %d duplicate messages"
             % (len(want), len(damaged), dup_count(dups)))


# --------------------------------------------------------------------------
# disk_full: state_dir on a small tmpfs that fills up.

def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=%s,mode=0700" % size, "tmpfs", path],
                       capture_output=True)
    if r.returncode != 0:
        raise Fail("cannot mount a tmpfs on %s: %s"
                   % (path, r.stderr.decode(errors="replace").strip()))


def umount(path):
    if subprocess.run(["umount", path], capture_output=True).returncode:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path):
    """Write a filler file until the file system is full."""
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[:len(chunk) // 8 or 1]
    finally:
        os.close(fd)


def check_disk_full(ctx):
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    state = os.path.join(ctx.dir, "state")
    mount_tmpfs(state, "8m")
    try:
        disk_full_run(ctx, state)
    finally:
        if ctx.daemon.proc is not None and ctx.daemon.proc.running():
            ctx.daemon.proc.stop(signal.SIGKILL)
        umount(state)


def disk_full_run(ctx, state):
    names = [t[0] for t in ctx.tenants()]
    more = 300 if is_long(ctx) else 100
    ctx.daemon.start()
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30,
                   daemon=ctx.daemon, what="the first alerts")
    # Records spooled while the SIEM is away must survive the full disk.
    ctx.sng.stop()
    for name in names:
        ctx.fake.add_alerts(name, more // 2)
    d = spool_dir(ctx)
    wait_for(lambda: ctx.daemon.alive() and spool_count(d) >= more,
             30, "the new alerts in the spool")
    filler = os.path.join(state, "filler")
    fill(filler)
    t0 = time.monotonic()
    for name in names:
        ctx.fake.add_alerts(name, more)
    err = lambda: ctx.daemon.proc.stderr()
    line = wait_for(lambda: ctx.daemon.alive() and
                    find_line(err(), "cannot write spool", state,
                              "no space left on device", "pauses"),
                    30, "an error saying the spool cannot be written "
                    "because the disk is full")
    # Full for a while, more alerts meanwhile: nothing may crash.
    time.sleep(2)
    for name in names:
        ctx.fake.add_alerts(name, more // 2)
    time.sleep(2)
    ctx.daemon.alive()
    os.unlink(filler)
    ctx.sng.start()
    t1 = time.monotonic()
    n, dups = final_check(ctx, "octet")
    ctx.daemon.stop()
    ctx.note("disk full for %.0fs with %d records spooled: \"%s\"; "
             "recovered %.0fs after space returned: %d versions, %d "
             "duplicate messages"
             % (t1 - t0, more, line.strip()[13:130], time.monotonic() - t1,
                n, dups))


# --------------------------------------------------------------------------

T4 = tenants(4)
T10 = tenants(10)
T2 = tenants(2)
T1 = tenants(1)


def crash_fake():
    """20,000 alerts over 10 tenants with --long, else 4,000."""
    per = 2000 if is_long() else 400
    return fake_tenants(T10) + ["--alerts", str(per), "--seed", "33"]


# --------------------------------------------------------------------------
# end_unread_reset: the end of --once waits for the SIEM's own close.

class UnreadResetSiem:
    """A SIEM whose first connection takes the daemon's bytes into its
    kernel (its TCP acknowledges them) and never reads them; when the
    daemon shuts its side (FIN: a half-close, or its exit), that
    connection is reset, and the unread bytes with it, as a SIEM that
    crashes with unread data does.  Later connections are read to the
    end and closed after the daemon's FIN, as syslog servers do.  The
    port is bound at once and listened on only from listen(): until
    then every connection is refused."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = 0
        self.unread = 0         # bytes thrown away by the reset
        self.lines = []         # what later connections read
        self.closed_after_fin = 0
        self.stop = threading.Event()
        self.threads = []

    def address(self):
        return "127.0.0.1:%d" % self.port

    def listen(self):
        self.sock.listen(8)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns += 1
                first = self.conns == 1
            t = threading.Thread(target=self._unread if first
                                 else self._read, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _unread(self, c):
        p = select.poll()
        p.register(c, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            if p.poll(200):
                break
        n = struct.unpack("i", fcntl.ioctl(c, termios.FIONREAD,
                                            b"\0\0\0\0"))[0]
        with self.lock:
            self.unread += n
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        c.close()

    def _read(self, c):
        buf = b""
        c.settimeout(60)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    with self.lock:
                        self.closed_after_fin += 1
                    break
                buf += d
        except OSError:
            pass
        c.close()
        with self.lock:
            self.lines += [x.decode("utf-8", "replace")
                           for x in buf.split(b"\n") if x]

    def deliveries(self, suite):
        """The CEF events read (after the syslog header), parsed as the
        syslog-ng cases parse theirs."""
        with self.lock:
            lines = list(self.lines)
        bad = [x for x in lines if "CEF:" not in x]
        if bad:
            raise Fail("the SIEM read a line that is not a forwarded "
                       "alert: %r" % bad[0][:300])
        return deliveries(suite, [{"MESSAGE": x[x.index("CEF:"):]}
                                  for x in lines])

    def close(self):
        self.stop.set()
        self.sock.close()
        for t in self.threads:
            t.join(5)


def check_end_unread_reset(ctx):
    exp = ctx.expected()
    siem = UnreadResetSiem()
    try:
        out = {"name": "siem", "transport": "tcp", "framing": "newline",
               "format": "cef", "address": siem.address()}
        ctx.daemon.conf = ctx.make_config(outputs=[out])
        p = ctx.daemon.start("--once", "-v")
        # Every tenant caught up and its pages saved while the SIEM
        # refuses connections: the records wait in the spool.
        wait_for(lambda: ctx.daemon.alive() and
                 p.stderr().count("caught up") >= len(ctx.tenants()), 30,
                 "every tenant caught up (alertrelayd --once)")
        siem.listen()
        rc = p.wait(60)
        if rc is None:
            p.stop()
            raise Fail("alertrelayd --once still running 60 s after the "
                       "SIEM came up; stderr:\n%s" % tail(p.stderr()))
        p.close()
        ctx.suite.check_sanitizer(p)
        err = p.stderr()
    finally:
        siem.close()
    dels = siem.deliveries(ctx.suite)
    missing = sorted(k for k in exp if k not in count_keys(dels))
    if rc != 0:
        raise Fail("alertrelayd --once exited %d; stderr:\n%s"
                   % (rc, tail(err)))
    if missing:
        raise Fail("alertrelayd --once exited 0, but %d of %d versions never "
                   "reached the SIEM (it had reset %d unread bytes on %d "
                   "connection(s)): they were taken as delivered on the "
                   "TCP acknowledgement alone, e.g. %s"
                   % (len(missing), len(exp), siem.unread, siem.conns,
                      missing[:2]))
    compare(exp, dels)          # each once, none the cloud never showed
    need_line(err, "output siem", "lost connection",
              what="the reset of the unread connection")
    need_line(err, "read every record and closed",
              what="the SIEM's close confirming the resent records")
    note = ("%d versions: the first connection was reset with %d bytes "
            "unread, all %d sent again on connection %d and confirmed by "
            "the SIEM's close" % (len(exp), siem.unread, len(dels),
                                  siem.conns))
    # syslog-ng, over TCP and over TLS with real certificates, closes
    # after the half-close: the end is confirmed by its close.
    for t in ctx.tenants():
        ctx.fake.add_alerts(t[0], 3)
    exp2 = ctx.expected() - exp
    ctx.daemon.conf = ctx.make_config(outputs=[
        octet_tcp("sngtcp"),
        {"name": "sngtls", "transport": "tls", "format": "cef",
         "sink": "tls", "ca_file": "ca.pem", "cert_file": "client.pem",
         "key_file": "client.key"}])
    t0 = time.monotonic()
    rc, _, err = ctx.daemon.run("--once", "-v", timeout=60)
    dt = time.monotonic() - t0
    if rc != 0:
        raise Fail("second alertrelayd --once exited %d; stderr:\n%s"
                   % (rc, tail(err)))
    for src, out in (("octet", "sngtcp"), ("tls", "sngtls")):
        dels = wait_delivered(ctx.suite, ctx.sng, src, lambda: exp2, 10,
                              what="the new versions on output " + out)
        compare(exp2, dels)
        need_line(err, "output %s:" % out, "read every record and closed",
                  what="syslog-ng's close after the half-close of " + out)
    ctx.note(note + "; syslog-ng (TCP and TLS) confirmed %d new versions "
             "by its close, --once took %.2f s" % (len(exp2), dt))


CASES = [
    {
        "name": "outage",
        "doc": "syslog-ng down 8s (--long: 30s) while alerts and updates "
               "arrive on 4 tenants: zero loss, duplicates reported",
        "fake": fake_tenants(T4) + ["--alerts", "10", "--seed", "31"],
        "tenants": T4,
        "outputs": [octet_tcp()],
        "check": check_outage,
    },
    {
        "name": "resets",
        "doc": "a proxy resets TCP and TLS connections mid-stream 5 times "
               "each (--long: 20): zero loss, duplicates reported",
        "pki": True,
        "fake": fake_tenants(T4) + ["--alerts",
                                    "2500" if is_long() else "500",
                                    "--seed", "32"],
        "tenants": T4,
        "outputs": [octet_tcp()],
        "check": check_resets,
    },
    {
        "name": "end_unread_reset",
        "doc": "--once ends with a half-close and waits for the SIEM's own "
               "close: a SIEM that acknowledged every record at TCP level "
               "and resets without reading them gets them all again, once; "
               "syslog-ng over TCP and TLS confirms by its close",
        "quick": True,
        "pki": True,
        "syslog_ng": True,
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "8", "--seed", "36"],
        "tenants": [{"name": "t1", "label": "Customer t1 Ltd"},
                    {"name": "t2", "label": "Customer t2 Ltd"}],
        "check": check_end_unread_reset,
    },
    {
        "name": "crash",
        "doc": "kill -9 at random moments 4 times (--long: 20) during a "
               "4,000 (20,000) alert backfill over 10 tenants: zero loss",
        "fake": crash_fake(),
        "tenants": T10,
        "daemon": {"page_size": "100"},
        "outputs": [octet_tcp()],
        "check": check_crash,
    },
    {
        "name": "full_spool",
        "doc": "spool_max_bytes 1M (the minimum), SIEM down: polling "
               "pauses naming the output, no API calls, resumes by itself, "
               "zero loss",
        "fake": fake_tenants(T2) + ["--alerts", "1500", "--seed", "34"],
        "tenants": T2,
        "daemon": {"page_size": "100"},
        "outputs": [dict(octet_tcp(), spool_max_bytes="1M")],
        "check": check_full_spool,
    },
    {
        "name": "corrupt_spool",
        "doc": "flipped bytes and a truncated segment: intact records "
               "delivered, damage reported with file and offset",
        "fake": fake_tenants(T1) + ["--alerts", "60", "--seed", "35"],
        "tenants": T1,
        "outputs": [octet_tcp()],
        "check": check_corrupt_spool,
    },
    {
        "name": "disk_full",
        "doc": "state_dir on a tmpfs that fills up: clear ENOSPC errors, "
               "recovery when space returns, zero loss",
        "fake": fake_tenants(T2) + ["--alerts", "20", "--seed", "36"],
        "tenants": T2,
        "outputs": [octet_tcp()],
        "check": check_disk_full,
    },
]
