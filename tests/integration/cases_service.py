"""Integration cases for running alertrelayd like a service (issue 5):
native journal entries read back from a real systemd-journald, and 100
SIGHUP reloads under load with tenants added, removed and changed.
Loaded by harness.py next to cases.py (every cases_*.py exports CASES)."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

from harness import (Daemon, Fail, Proc, Skip, compare, deliveries, log,
                     tail, wait_delivered, wait_for)

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
WRONG = "Wr0ng~Journal.secret_Kx7"
MSGID = {
    "failing": "5e1c7a0e9d3b4c2fa0a1d2e3f4a5b601",
    "recovered": "5e1c7a0e9d3b4c2fa0a1d2e3f4a5b602",
    "down": "5e1c7a0e9d3b4c2fa0a1d2e3f4a5b603",
    "up": "5e1c7a0e9d3b4c2fa0a1d2e3f4a5b604",
}
TOKEN_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")


def settle(ctx, source):
    marker = "harness-marker-%d" % time.monotonic_ns()
    ctx.sng.inject(source, marker)
    wait_for(lambda: any(r.get("MESSAGE", "").endswith(marker)
                         for r in ctx.sng.messages(source)),
             10, "syslog-ng to write a marker message")


# --------------------------------------------------------------------------
# journal_fields

def journal_alive():
    """True when something receives on the native journal socket (the
    socket file outlives a stopped journald, so connect to it)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(JOURNAL_SOCKET)
        return True
    except OSError:
        return False
    finally:
        s.close()


def journald_start(ctx):
    """(proc or None, why-not): our own journald, or None when one is
    already running (reused) or cannot be started (why-not says why)."""
    if journal_alive():
        log("journal: reusing the running journald")
        return None, None
    if os.geteuid() != 0:
        return None, "starting systemd-journald needs root"
    if not os.access(JOURNALD, os.X_OK):
        return None, "%s is not installed" % JOURNALD
    os.makedirs(os.path.dirname(JOURNAL_SOCKET), exist_ok=True)
    p = Proc(ctx.suite, "systemd-journald", [JOURNALD], cwd=ctx.dir)
    try:
        wait_for(lambda: journal_alive() or not p.running(), 15,
                 "systemd-journald to listen on %s" % JOURNAL_SOCKET)
    except Fail:
        p.stop()
        return None, "systemd-journald did not listen on %s:\n%s" \
            % (JOURNAL_SOCKET, tail(p.stderr()))
    if not p.running():
        p.stop()
        return None, "systemd-journald exited (status %s):\n%s" \
            % (p.p.returncode, tail(p.stderr()))
    return p, None


def journal_entries(pid):
    """This daemon's entries ([dict]), and journalctl's raw output."""
    raw = ""
    for extra in ([], ["-m"]):
        r = subprocess.run(["journalctl", "-o", "json", "--no-pager"] +
                           extra + ["SYSLOG_IDENTIFIER=alertrelayd",
                                    "_PID=%d" % pid],
                           capture_output=True, timeout=60)
        raw = r.stdout.decode("utf-8", "replace")
        ents = []
        for line in raw.split("\n"):
            if line.strip():
                try:
                    ents.append(json.loads(line))
                except ValueError:
                    raise Fail("journalctl -o json wrote a line that is "
                               "not JSON: %r" % line[:300])
        if ents:
            return ents, raw
    return [], raw


def field(e, k):
    """A journal field as text (journalctl gives bytes as a list)."""
    v = e.get(k)
    if isinstance(v, list):
        if v and isinstance(v[0], int):
            return bytes(v).decode("utf-8", "replace")
        return [field({"x": x}, "x") for x in v]
    return v


def has_msgid(ents, msgid, **fields):
    for e in ents:
        if field(e, "MESSAGE_ID") != msgid:
            continue
        if all(field(e, k) == v for k, v in fields.items()):
            return True
    return False


def check_journal_fields(ctx):
    jd, why = journald_start(ctx)
    if why is not None:
        raise Skip("no journal to test against: %s" % why)
    try:
        journal_case(ctx)
    finally:
        if jd is not None:
            jd.stop()


def journal_case(ctx):
    fake, sng = ctx.fake, ctx.sng
    tenants = ("acme", "wrongsecret", "flaky")
    secrets = [WRONG, "secret-acme", "secret-flaky", "secret-wrongsecret"]
    sng.stop()                      # the TLS output is down at first
    exe = os.path.join(ctx.suite.build, "alertrelayd")
    if not os.access(exe, os.X_OK):
        raise Fail("%s is not built" % exe)
    d = Proc(ctx.suite, "alertrelayd.journal",
             [exe, "-c", ctx.conf, "--log-target", "journal"], cwd=ctx.dir)
    state = {"ents": []}

    def seen(msgid, **fields):
        if not d.running():
            raise Fail("alertrelayd exited (status %s); stderr:\n%s"
                       % (d.p.returncode, tail(d.stderr())))
        state["ents"] = journal_entries(d.pid)[0]
        return has_msgid(state["ents"], msgid, **fields)

    wait_for(lambda: seen(MSGID["down"], OUTPUT="siem"), 20,
             "an 'output down' journal entry (MESSAGE_ID=...603, "
             "OUTPUT=siem)", interval=0.5)
    wait_for(lambda: seen(MSGID["failing"], TENANT="wrongsecret") and
             seen(MSGID["failing"], TENANT="flaky"), 30,
             "'tenant failing' entries for wrongsecret and flaky",
             interval=0.5)
    sng.start()
    wait_for(lambda: seen(MSGID["up"], OUTPUT="siem"), 60,
             "an 'output recovered' journal entry (MESSAGE_ID=...604)",
             interval=0.5)
    wait_for(lambda: seen(MSGID["recovered"], TENANT="flaky"), 60,
             "a 'tenant recovered' entry for flaky (MESSAGE_ID=...602)",
             interval=0.5)
    exp = ctx.expected(only=("acme", "flaky"))
    dels = wait_delivered(ctx.suite, sng, "tls", lambda: exp, 60,
                          what="acme's and flaky's alerts over TLS")
    if d.stderr().strip():
        log("daemon stderr under --log-target journal:\n%s"
            % tail(d.stderr()))
    rc = d.stop(signal.SIGTERM, timeout=20)
    ctx.suite.check_sanitizer(d)
    if rc != 0:
        raise Fail("alertrelayd exited %s on SIGTERM; stderr:\n%s"
                   % (rc, tail(d.stderr())))
    time.sleep(0.5)
    ents, raw = journal_entries(d.pid)
    if not ents:
        raise Fail("journalctl shows no entries of alertrelayd[%d]" % d.pid)

    # Every entry about a tenant carries TENANT=.
    name_re = re.compile(r"\b(%s)\b" % "|".join(tenants))
    for e in ents:
        msg = field(e, "MESSAGE") or ""
        named = set(name_re.findall(msg))
        if named and field(e, "TENANT") not in named:
            raise Fail("journal entry about tenant %s has TENANT=%s: %r"
                       % ("/".join(sorted(named)), field(e, "TENANT"), msg))
        if field(e, "TENANT") is not None and \
                field(e, "TENANT") not in tenants:
            raise Fail("journal entry has unknown TENANT=%s: %r"
                       % (field(e, "TENANT"), msg))
    # The wrong secret: AADSTS and HTTP status as fields, at LOG_ERR.
    bad = [e for e in ents if field(e, "TENANT") == "wrongsecret" and
           "AADSTS7000215" in (field(e, "MESSAGE") or "")]
    if not bad:
        raise Fail("no journal entry for wrongsecret mentions "
                   "AADSTS7000215; its entries: %r"
                   % [field(e, "MESSAGE") for e in ents
                      if field(e, "TENANT") == "wrongsecret"])
    if not any(field(e, "AADSTS") == "7000215" and
               field(e, "HTTP_STATUS") == "401" and
               field(e, "PRIORITY") == "3" for e in bad):
        raise Fail("the wrong-secret entry lacks AADSTS=7000215, "
                   "HTTP_STATUS=401, PRIORITY=3: %r"
                   % [{k: field(e, k) for k in ("MESSAGE", "PRIORITY",
                                                "AADSTS", "HTTP_STATUS")}
                      for e in bad])
    for e in ents:
        if field(e, "AADSTS") not in (None, "7000215") or \
                (field(e, "AADSTS") is not None and
                 field(e, "TENANT") != "wrongsecret"):
            raise Fail("unexpected AADSTS=%s on %s's entry %r"
                       % (field(e, "AADSTS"), field(e, "TENANT"),
                          field(e, "MESSAGE")))
    if not any(field(e, "TENANT") == "flaky" and
               field(e, "HTTP_STATUS") == "500" for e in ents):
        raise Fail("no entry for flaky has HTTP_STATUS=500: %r"
                   % [field(e, "MESSAGE") for e in ents
                      if field(e, "TENANT") == "flaky"])
    # MESSAGE_IDs for what operators alert on, with their context field.
    for key, what, need in (
            ("failing", "tenant failing", {"TENANT": "wrongsecret"}),
            ("failing", "tenant failing", {"TENANT": "flaky"}),
            ("recovered", "tenant recovered", {"TENANT": "flaky"}),
            ("down", "output down", {"OUTPUT": "siem"}),
            ("up", "output recovered", {"OUTPUT": "siem"})):
        if not has_msgid(ents, MSGID[key], **need):
            raise Fail("no %s entry (MESSAGE_ID=%s) with %s"
                       % (what, MSGID[key], need))
    for e in ents:
        mid = field(e, "MESSAGE_ID")
        if mid in (MSGID["down"], MSGID["up"]) and field(e, "OUTPUT") is None:
            raise Fail("output entry without OUTPUT=: %r"
                       % field(e, "MESSAGE"))
        if mid in (MSGID["failing"], MSGID["recovered"]) and \
                field(e, "TENANT") is None:
            raise Fail("tenant entry without TENANT=: %r"
                       % field(e, "MESSAGE"))
        if mid is not None and not re.match(r"^[0-9a-f]{32}$", mid):
            raise Fail("MESSAGE_ID=%r is not a 128-bit id" % mid)
    if has_msgid(ents, MSGID["recovered"], TENANT="wrongsecret"):
        raise Fail("wrongsecret was logged as recovered")
    # No secret and no issued token anywhere in the journal.
    tokens = []
    tlog = os.path.join(ctx.dir, "tokens.log")
    if os.path.exists(tlog):
        with open(tlog) as f:
            tokens = [x.strip() for x in f if x.strip()]
    if not tokens:
        raise Fail("the fake's --token-log %s lists no issued token" % tlog)
    for s in secrets + tokens:
        if s in raw:
            raise Fail("the journal shows a %s (%s...)"
                       % ("secret" if s in secrets else "access token",
                          s[:12]))
    m = TOKEN_RE.search(raw)
    if m:
        raise Fail("the journal shows what looks like a token: %s..."
                   % m.group(0)[:20])
    compare(exp, [x for x in dels if x.label in ("Acme", "Flaky")])
    ctx.note("%d journal entries of alertrelayd[%d]: TENANT/OUTPUT/AADSTS/"
             "HTTP_STATUS/MESSAGE_ID fields right, no secret or token "
             "(%d issued)" % (len(ents), d.pid, len(tokens)))


# --------------------------------------------------------------------------
# reload_under_load

STABLE = ("s1", "s2", "s3")
VOLATILE = ("v1", "v2", "v3", "v4", "v5", "v6")
NRELOADS = 100
SEV = ("informational", "low", "medium", "high")


def cursor_key(s):
    """'2026-...T..:..:..[.fffffff]Z' -> comparable (seconds, 100 ns)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    if not m:
        raise Fail("cursor show printed %r, not an ISO 8601 UTC time" % s)
    return (m.group(1), int(((m.group(2) or "") + "0000000")[:7]))


def ctl_cursor(ctx, name):
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    if not os.access(exe, os.X_OK):
        raise Fail("%s is not built" % exe)
    r = subprocess.run([exe, "-s", os.path.join(ctx.dir, "ctl.sock"),
                        "cursor", "show", name], capture_output=True,
                       timeout=30)
    out = r.stdout.decode("utf-8", "replace").strip()
    if r.returncode != 0:
        raise Fail("alertrelayctl cursor show %s exited %d: %s"
                   % (name, r.returncode,
                      (out + r.stderr.decode("utf-8", "replace"))[:300]))
    return None if out == "none" else cursor_key(out)


class Feeder(threading.Thread):
    """Adds alerts to the fake every ~100 ms until stopped."""

    def __init__(self, fake, rng):
        super().__init__(daemon=True)
        self.fake = fake
        self.rng = rng
        self.halt = threading.Event()
        self.error = None
        self.added = 0

    def run(self):
        names = STABLE + VOLATILE
        try:
            while not self.halt.is_set():
                t = self.rng.choice(names)
                n = self.rng.randint(1, 3)
                self.fake.add_alerts(t, n)
                self.added += n
                if self.rng.random() < 0.2:
                    self.fake.call("POST", "/_control/update",
                                   {"tenant": self.rng.choice(VOLATILE),
                                    "n": 1})
                self.halt.wait(self.rng.uniform(0.08, 0.12))
        except Exception as e:      # reported by the check
            self.error = e


def reload_conf(ctx, step, rng, secrets):
    """The tenants for reload step (0: initial; NRELOADS: all present)."""
    ts = []
    for i, name in enumerate(STABLE):
        t = {"name": name, "label": "Stable %s" % name,
             "client_secret_file": secrets[name]}
        # Routing changes for the core too; siem always gets them.
        if step and rng.random() < 0.5:
            t["outputs"] = "siem, siem2"
        ts.append(t)
    if step == 0:
        present = VOLATILE[:3]
    elif step == NRELOADS:
        present = VOLATILE
    else:
        present = [v for v in VOLATILE if rng.random() < 0.6]
    for name in present:
        t = {"name": name, "client_secret_file": secrets[name]}
        if step and step != NRELOADS:
            t["label"] = "Volatile %s %s" % (name, rng.choice("ABC"))
            t["min_severity"] = rng.choice(SEV)
            t["outputs"] = rng.choice(("siem", "siem2", "siem, siem2"))
        else:
            t["label"] = "Volatile %s" % name
        ts.append(t)
    tmp = ctx.make_config("next.conf", tenants=ts)
    os.rename(tmp, ctx.conf)        # the daemon never reads half a file
    return len(ts)


def reloads_applied(d):
    err = d.proc.stderr()
    if "reload rejected" in err:
        raise Fail("a reload was rejected:\n%s" % tail(err, 15))
    return len(re.findall(r"reload applied", err))


def check_reload_under_load(ctx):
    fake, sng = ctx.fake, ctx.sng
    rng = random.Random(5)
    # Secret files written once, so no reload can read one half-written.
    sdir = os.path.join(ctx.dir, "secrets")
    ctx.make_config("secrets.conf", tenants=[
        {"name": n} for n in STABLE + VOLATILE])
    secrets = {n: os.path.join(sdir, n) for n in STABLE + VOLATILE}
    ctx.conf = os.path.join(ctx.dir, "alertrelay.conf")
    reload_conf(ctx, 0, rng, secrets)
    d = Daemon(ctx.suite, ctx.dir, ctx.conf)
    ctx.daemon = d
    d.start()
    stable = [(n, "Stable %s" % n) for n in STABLE]
    labels = set(lab for _, lab in stable)

    def stable_exp():
        return set((lab, aid, rt) for n, lab in stable
                   for aid, rt in fake.versions(n))
    snap = stable_exp()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 60, daemon=d,
                   what="the stable tenants' initial backlog")
    cursors = {n: [] for n in STABLE}

    def sample():
        for n in STABLE:
            c = ctl_cursor(ctx, n)
            h = cursors[n]
            if h and (c is None or c < h[-1]):
                raise Fail("cursor of %s moved backwards: %s -> %s"
                           % (n, h[-1], c))
            if c is not None:
                h.append(c)
    sample()
    feeder = Feeder(fake, random.Random(55))
    feeder.start()
    sizes = []
    try:
        for step in range(1, NRELOADS + 1):
            sizes.append(reload_conf(ctx, step, rng, secrets))
            before = reloads_applied(d)
            os.kill(d.proc.pid, signal.SIGHUP)
            wait_for(lambda: d.alive() and reloads_applied(d) > before, 15,
                     "reload %d to be applied" % step, interval=0.02)
            if feeder.error is not None:
                raise Fail("adding alerts to the fake failed: %s"
                           % feeder.error)
            if step % 10 == 0:
                sample()
            time.sleep(rng.uniform(0.1, 0.2))
    finally:
        feeder.halt.set()
        feeder.join(15)
    if feeder.error is not None:
        raise Fail("adding alerts to the fake failed: %s" % feeder.error)
    # Final config: every tenant present; let them catch up.
    final = stable_exp()
    dels = wait_delivered(ctx.suite, sng, "octet", stable_exp, 90, daemon=d,
                          what="every stable-tenant version after the "
                               "reloads")
    sample()
    time.sleep(2)                   # a late duplicate would show now
    sample()
    n_applied = reloads_applied(d)
    d.alive()
    d.stop()
    settle(ctx, "octet")
    dels = deliveries(ctx.suite, sng.messages("octet"))
    final = stable_exp()
    _, dups = compare(final, [x for x in dels if x.label in labels])
    if n_applied != NRELOADS:
        raise Fail("%d SIGHUPs sent, the daemon logged 'reload applied' "
                   "%d times" % (NRELOADS, n_applied))
    vol = [x for x in dels if x.label not in labels]
    vkeys = {}
    for x in vol:
        vkeys[(x.id, x.rt)] = vkeys.get((x.id, x.rt), 0) + 1
    vdup = sum(n - 1 for n in vkeys.values() if n > 1)
    ctx.note("%d SIGHUPs applied (%d-%d tenants), %d alerts added during "
             "them; stable tenants: %d versions exactly once, cursors "
             "monotonic over %d samples; volatile tenants: %d versions on "
             "siem, %d re-sent" % (n_applied, min(sizes), max(sizes),
                                   feeder.added, len(final),
                                   len(cursors["s1"]), len(vkeys), vdup))


# --------------------------------------------------------------------------

TLS_OUT = [{"name": "siem", "transport": "tls", "format": "cef",
            "sink": "tls", "ca_file": "ca.pem",
            "cert_file": "client.pem", "key_file": "client.key"}]

CASES = [
    {
        "name": "journal_fields",
        "doc": "--log-target journal against a real systemd-journald: "
               "TENANT/OUTPUT/AADSTS/HTTP_STATUS/PRIORITY/MESSAGE_ID "
               "fields; no secret or token in the journal",
        "fake": ["-t", "acme", "-t", "wrongsecret", "-t", "flaky",
                 "--alerts", "10", "--seed", "51",
                 "--fault", "flaky:500:2", "--token-log", "tokens.log"],
        "tenants": [{"name": "acme", "label": "Acme"},
                    {"name": "wrongsecret", "label": "Wrong",
                     "secret": WRONG},
                    {"name": "flaky", "label": "Flaky"}],
        "outputs": TLS_OUT,
        "check": check_journal_fields,
    },
    {
        "name": "reload_under_load",
        "doc": "100 SIGHUPs while alerts arrive and tenants are added, "
               "removed and changed: stable tenants get every version "
               "once, cursors never go back, every reload applied",
        "fake": sum((["-t", n] for n in STABLE + VOLATILE), []) +
                ["--alerts", "10", "--seed", "52"],
        "tenants": [],
        "outputs": [{"name": "siem", "transport": "tcp",
                     "framing": "octet-counting", "format": "cef",
                     "sink": "octet"},
                    {"name": "siem2", "transport": "tcp",
                     "framing": "newline", "format": "cef", "sink": "lf"}],
        "check": check_reload_under_load,
    },
]
