"""Integration cases for transitions while requests are in flight (SPEC §5
"Robustness rules"): a token request, an alerts page, check-tenant's
requests and a backfill's page are held by the fake cloud
(/_control/hold) while the tenant is disabled, removed, given other
credentials or other outputs by a reload, while the backfill or the
alertrelayctl client goes away, or while the daemon gets SIGTERM.  The
daemon must survive (no sanitizer report), the other tenants deliver every
version exactly once, and no answer made for the old configuration is
used.  Also: a corrupt state file fails one tenant alone, backfill for a
certificate tenant, a far-future lastUpdateTime, a nextLink that leaves
api_url.  Loaded by harness.py (every cases_*.py exports CASES)."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import (Daemon, Fail, compare, deliveries, expected_versions,
                     iso_to_ms, log, ms_to_iso, tail, wait_for,
                     wait_delivered)
from cases_ctl import ctl, ctl_ok, status_json, tenant_of, settle

OCTET = {"name": "siem", "transport": "tcp", "framing": "octet-counting",
         "format": "cef", "sink": "octet"}
LF = {"name": "siem2", "transport": "tcp", "framing": "newline",
      "format": "cef", "sink": "lf"}


# --------------------------------------------------------------------------
# Helpers: holds in the fake, one daemon per cell.

def hold(ctx, tenant, what, match=None, n=1):
    p = {"tenant": tenant, "what": what, "n": n}
    if match is not None:
        p["match"] = match
    ctx.fake.call("POST", "/_control/hold", p)
    return len(ctx.fake.call("GET", "/_control/held")["held"])


def held(ctx):
    return ctx.fake.call("GET", "/_control/held")["held"]


def wait_held(ctx, base, tenant, what, daemon=None, state="held",
              timeout=15):
    """Wait until a request held after index base is in state; its index."""
    def find():
        if daemon is not None:
            daemon.alive()
        for i, h in enumerate(held(ctx)[base:]):
            if h["tenant"] == tenant and h["what"] == what and \
                    h["state"] == state:
                return base + i + 1
        return None
    return wait_for(find, timeout, "a %s request of %s to be %s"
                    % (what, tenant, state)) - 1


def release(ctx, tenant=None, what=None):
    p = {}
    if tenant:
        p["tenant"] = tenant
    if what:
        p["what"] = what
    return ctx.fake.call("POST", "/_control/release", p)["released"]


def fake_log(ctx):
    """[(tenant, method, uri, status, tokfield)] of every logged request."""
    text = ctx.fake.call("GET", "/_control/log", {"tok": "1"}) or ""
    out = []
    for line in text.split("\n"):
        f = line.split(" ")
        if len(f) >= 6:
            out.append((f[1], f[2], f[3], f[4], f[5]))
    return out


def api_calls(lines):
    return [x for x in lines if "/oauth2/" not in x[2]]


class Cell:
    """One daemon with its own state, socket and labels, on the case's
    shared fake cloud and syslog-ng."""

    def __init__(self, ctx, name, victim=None, others=("o1", "o2"),
                 daemon=None):
        self.ctx = ctx
        self.name = name
        self.sock = os.path.join(ctx.dir, name + ".sock")
        self.dk = {"state_dir": os.path.join(ctx.dir, name + ".state"),
                   "control_socket": self.sock}
        self.dk.update(daemon or {})
        self.others = [{"name": o, "label": "%s-%s" % (name, o),
                        "outputs": "siem"} for o in others]
        self.victim = dict({"name": "v", "label": "%s-v" % name,
                            "outputs": "siem"}, **(victim or {}))
        self.daemon = None

    def labels(self):
        return [(t["name"], t["label"]) for t in self.others]

    def write(self, victim="same"):
        if victim != "same":
            self.victim = victim
        ts = list(self.others)
        if self.victim is not None:
            ts.insert(0, self.victim)
        return self.ctx.make_config(name=self.name + ".conf", daemon=self.dk,
                                    outputs=[OCTET, LF], tenants=ts)

    def start(self):
        conf = self.write()
        self.daemon = Daemon(self.ctx.suite, self.ctx.dir, conf,
                             name=self.name)
        self.daemon.start()
        wait_for(lambda: self.daemon.alive() and os.path.exists(self.sock)
                 and ctl(self.ctx, "status", sock=self.sock)[0] == 0, 15,
                 "%s's control socket to answer" % self.name)

    def ctl(self, *args, **kw):
        return ctl(self.ctx, *args, sock=self.sock, **kw)

    def ctl_bg(self, *args):
        exe = os.path.join(self.ctx.suite.build, "alertrelayctl")
        return subprocess.Popen([exe, "-s", self.sock] + list(args),
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def status(self, tenant):
        rc, out, err = self.ctl("status", "--json")
        if rc != 0:
            raise Fail("%s: status exited %d: %s" % (self.name, rc, err))
        return tenant_of(json.loads(out), tenant)

    def reload(self, victim):
        self.write(victim)
        rc, out, err = self.ctl("reload")
        if rc != 0 or "reload applied" not in out:
            raise Fail("%s: reload: exit %d %r" % (self.name, rc, out + err))

    def dels(self, source="octet", label=None):
        d = deliveries(self.ctx.suite, self.ctx.sng.messages(source))
        want = set(lb for _, lb in self.labels()) if label is None \
            else {label}
        return [x for x in d if x.label in want]

    def others_flow(self):
        """A new alert for every other tenant arrives, and every version
        of theirs did: the other tenants carry on."""
        for o in self.others:
            self.ctx.fake.add_alerts(o["name"], 1)
        exp = expected_versions(self.ctx.fake, self.labels())
        wait_delivered(self.ctx.suite, self.ctx.sng, "octet", lambda: exp,
                       30, daemon=self.daemon,
                       what="%s: the other tenants' alerts" % self.name)

    def stop(self):
        self.daemon.stop()

    def exactly_once(self):
        settle(self.ctx)
        compare(expected_versions(self.ctx.fake, self.labels()),
                self.dels())


# --------------------------------------------------------------------------
# The lifecycle matrix: in-flight kind x transition.

def t_disable(cell):
    v = dict(cell.victim, enabled="no")
    cell.reload(v)


def t_remove(cell):
    cell.reload(None)


def t_creds(cell):
    v = dict(cell.victim, tenant_id="v2")
    cell.reload(v)


def t_routing(cell):
    v = dict(cell.victim, outputs="siem2")
    cell.reload(v)


TRANSITIONS = {"disable": t_disable, "remove": t_remove, "creds": t_creds,
               "routing": t_routing}


def stale_checks(cell, kind, tr, log_before):
    """After the transition: what the victim tenant may still do."""
    ctx = cell.ctx
    label = cell.victim["label"] if cell.victim else "%s-v" % cell.name
    after = api_calls(fake_log(ctx)[log_before:])
    if tr in ("disable", "remove"):
        bad = [x for x in after if x[0] == "v" and x[1] == "GET" and
               not x[2].endswith("?$top=1")]
        if bad:
            raise Fail("%s: the %s tenant still polled: %s"
                       % (cell.name, tr == "disable" and "disabled" or
                          "removed", bad[:2]))
    if tr == "creds":
        bad = [x for x in after if x[0] == "v" and not x[2].endswith("?$top=1")]
        if bad:
            raise Fail("%s: after tenant_id v -> v2, alerts were read with "
                       "a token issued for v: %s" % (cell.name, bad[:2]))
        # A new alert on each side: v2's arrives under the tenant's label,
        # v's (readable only with a token for v) never does.
        canary = ctx.fake.add_alerts("v", 1)["ids"][0]
        fresh = ctx.fake.add_alerts("v2", 1)["ids"][0]
        exp = set((label, a, rt) for a, rt in ctx.fake.versions("v2")
                  if a == fresh)
        wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                       daemon=cell.daemon, what="%s: a new alert of v2 "
                       "under the new tenant_id" % cell.name)
        settle(ctx)
        olds = set(a for a, _ in ctx.fake.versions("v"))
        if kind in ("token", "alerts") and any(
                d.id in olds for d in cell.dels(label=label)):
            raise Fail("%s: alerts of the old tenant_id (read for the old "
                       "credentials) were forwarded after the reload"
                       % cell.name)
        if any(d.id == canary for d in cell.dels(label=label)):
            raise Fail("%s: an alert of the old tenant_id was forwarded "
                       "under the new configuration" % cell.name)
    if tr == "routing":
        # A new alert goes to the new output only; with nothing of v
        # forwarded before, everything of v does.
        fresh = ctx.fake.add_alerts("v", 1)["ids"][0]
        exp = set((label, a, rt) for a, rt in ctx.fake.versions("v")
                  if a == fresh or kind in ("token", "alerts"))
        wait_delivered(ctx.suite, ctx.sng, "lf", lambda: exp, 30,
                       daemon=cell.daemon, what="%s: v's alerts on the new "
                       "output" % cell.name)
        settle(ctx)
        old = cell.dels("octet", label)
        if any(d.id == fresh for d in old) or \
                (kind in ("token", "alerts") and old):
            raise Fail("%s: alerts of v reached the output it no longer "
                       "routes to" % cell.name)


def run_cell(ctx, kind, tr, n):
    cell = Cell(ctx, "c%d" % n)
    log("cell %s: %s x %s" % (cell.name, kind, tr))
    proc = None
    if kind == "token":
        base = hold(ctx, "v", "token")
        cell.start()
        wait_held(ctx, base, "v", "token", cell.daemon)
    elif kind == "alerts":
        base = hold(ctx, "v", "alerts")
        cell.start()
        wait_held(ctx, base, "v", "alerts", cell.daemon)
    elif kind in ("check", "backfill"):
        cell.start()
        wait_for(lambda: cell.status("v")["polls_ok"] >= 1, 20,
                 "%s: v's first catch-up" % cell.name)
        if kind == "check":
            base = hold(ctx, "v", "alerts", match="alerts?$top=1")
            proc = cell.ctl_bg("check-tenant", "v")
        else:
            base = hold(ctx, "v", "alerts", match="+lt+")
            now = int(time.time() * 1000)
            proc = cell.ctl_bg("backfill", "v", ms_to_iso(now - 3600000),
                               ms_to_iso(now))
        wait_held(ctx, base, "v", "alerts", cell.daemon)
    if tr == "sigterm":
        cell.others_flow()
        t0 = time.monotonic()
        cell.stop()
        if time.monotonic() - t0 > 12:
            raise Fail("%s: SIGTERM with a held %s took %.0fs"
                       % (cell.name, kind, time.monotonic() - t0))
        release(ctx)
        cell.exactly_once()
        return
    log_before = None
    if tr == "vanish":
        proc.kill()
        proc.wait()
        # The daemon gives the client's request up (the fake sees it go).
        wait_held(ctx, base, "v", "alerts", cell.daemon, state="cancelled")
    else:
        TRANSITIONS[tr](cell)
    if kind == "token" and tr in ("creds", "remove"):
        # The request made for the old credentials is given up.
        wait_held(ctx, base, "v", "token", cell.daemon, state="cancelled")
    # Anything the fake answers from here on was asked under the new
    # configuration (or is a stale request the daemon should have
    # dropped).
    log_before = len(fake_log(ctx))
    release(ctx)
    if proc is not None and tr != "vanish":
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise Fail("%s: alertrelayctl %s never finished after a %s"
                       % (cell.name, kind, tr))
        if kind == "backfill" and tr in ("disable", "remove", "creds") and \
                proc.returncode == 0:
            raise Fail("%s: the backfill of a tenant a reload %s reports "
                       "success:\n%s" % (cell.name, tr, tail(out.decode())))
    cell.others_flow()
    if log_before is not None:
        stale_checks(cell, kind, tr, log_before)
    cell.daemon.alive()
    cell.stop()
    cell.exactly_once()


def matrix(kind, transitions):
    def check(ctx):
        for i, tr in enumerate(transitions):
            t0 = time.monotonic()
            try:
                run_cell(ctx, kind, tr, i + 1)
            except Fail as e:
                raise Fail("%s x %s: %s" % (kind, tr, e))
            ctx.note("%s x %s: ok (%.1fs)" % (kind, tr,
                                               time.monotonic() - t0))
    return check


# --------------------------------------------------------------------------
# A backfill that became the token's waiter, then Ctrl-C.

def check_backfill_token_cancel(ctx):
    cell = Cell(ctx, "c1")
    cell.start()
    wait_for(lambda: cell.status("v")["polls_ok"] >= 1, 20,
             "v's first catch-up")
    # The live poller's next page waits; the backfill's page is refused
    # with 401, so the backfill asks for a new token, which waits too.
    base_a = hold(ctx, "v", "alerts", match="+ge+")
    wait_held(ctx, base_a, "v", "alerts", cell.daemon)
    base_t = hold(ctx, "v", "token")
    ctx.fake.fault("v", "401", "1")
    now = int(time.time() * 1000)
    proc = cell.ctl_bg("backfill", "v", ms_to_iso(now - 3600000),
                       ms_to_iso(now))
    wait_held(ctx, base_t, "v", "token", cell.daemon)
    proc.kill()
    proc.wait()
    wait_for(lambda: not cell.status("v")["backfill_running"], 10,
             "the backfill to be cancelled when alertrelayctl exits")
    release(ctx)
    cell.others_flow()
    wait_for(lambda: cell.status("v")["polls_ok"] >= 2, 20,
             "v to poll again after the token arrived")
    cell.stop()
    cell.exactly_once()
    ctx.note("backfill cancelled while it waited for the token: no crash")


# --------------------------------------------------------------------------
# A corrupt state file fails its tenant alone, at start and on reload.

def check_bad_state(ctx):
    cell = Cell(ctx, "c1")
    cell.start()
    wait_for(lambda: cell.status("v")["polls_ok"] >= 1, 20,
             "v's first catch-up")
    cell.stop()
    path = os.path.join(cell.dk["state_dir"], "tenants", "v.state")
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 2))
    # Start: the daemon runs, v fails alone and says how to get out.
    cell.start()
    st = cell.status("v")
    if st["state"] != "failed" or path not in (st["last_error"] or "") or \
            "alertrelayctl cursor set v" not in st["last_error"]:
        raise Fail("a corrupt state file: status of v is %s / %r; expected "
                   "failed, naming %s and 'alertrelayctl cursor set v'"
                   % (st["state"], st["last_error"], path))
    cell.others_flow()
    if path not in cell.daemon.proc.stderr():
        raise Fail("the journal does not name the corrupt state file")
    # Reload keeps it failed (and running everything else).
    cell.reload(dict(cell.victim, label="c1-v"))
    if cell.status("v")["state"] != "failed":
        raise Fail("a reload restarted a tenant whose state is corrupt")
    cell.others_flow()
    # cursor set recovers it.
    rc, out, err = cell.ctl("cursor", "set", "v", ms_to_iso(
        int(time.time() * 1000) - 7200 * 1000))
    if rc != 0:
        raise Fail("cursor set on the failed tenant: exit %d %r"
                   % (rc, out + err))
    exp = set(("c1-v", a, rt) for a, rt in ctx.fake.versions("v"))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=cell.daemon, what="v's alerts after cursor set")
    cell.stop()
    cell.exactly_once()
    # A tenant added by a reload with a corrupt state file fails alone.
    cell2 = Cell(ctx, "c2", victim={"name": "w", "tenant_id": "v",
                                    "label": "c2-w"})
    sd = os.path.join(cell2.dk["state_dir"], "tenants")
    os.makedirs(sd, mode=0o700, exist_ok=True)
    with open(os.path.join(sd, "w.state"), "wb") as f:
        f.write(b"\x00garbage{")
    os.chmod(os.path.join(sd, "w.state"), 0o600)
    v = cell2.victim
    cell2.victim = None
    cell2.start()
    cell2.reload(v)
    st = cell2.status("w")
    if st["state"] != "failed" or "w.state" not in (st["last_error"] or ""):
        raise Fail("a tenant added by reload with a corrupt state file: "
                   "%s / %r" % (st["state"], st["last_error"]))
    cell2.others_flow()
    cell2.stop()
    cell2.exactly_once()
    ctx.note("corrupt state: v fails alone at start and on reload, "
             "cursor set recovers it")


# --------------------------------------------------------------------------
# Backfill for a certificate tenant.

def check_backfill_cert(ctx):
    pki = ctx.suite.setup_pki()
    old_ms = int(time.time() * 1000) - 3 * 3600 * 1000
    old = ms_to_iso(old_ms)
    ctx.fake.add_alerts("v", 3, {"lastUpdateTime": old,
                                 "alertCreationTime": old})
    cell = Cell(ctx, "c1", victim={
        "certificate_file": os.path.join(pki, "client.pem"),
        "private_key_file": os.path.join(pki, "client.key")})
    conf = cell.write()
    # No secret for v: drop the secret line the writer adds.
    text = open(conf).read()
    text = re.sub(r'(\[tenant "v"\]\n(?:[^\[\n].*\n)*?)client_secret_file'
                  r' = .*\n', r'\1', text)
    with open(conf, "w") as f:
        f.write(text)
    cell.daemon = Daemon(ctx.suite, ctx.dir, conf, name="c1")
    cell.daemon.start()
    wait_for(lambda: cell.daemon.alive() and os.path.exists(cell.sock) and
             cell.ctl("status")[0] == 0, 15, "the control socket")
    wait_for(lambda: cell.status("v")["polls_ok"] >= 1, 20,
             "the certificate tenant's first catch-up")
    rc, out, err = cell.ctl("backfill", "v", ms_to_iso(old_ms - 60000),
                            ms_to_iso(old_ms + 60000))
    if rc != 0 or "3 forwarded" not in out:
        raise Fail("backfill of a certificate tenant: exit %d:\n%s"
                   % (rc, tail(out + err)))
    cell.stop()
    ctx.note("backfill of a certificate tenant: 3 old alerts forwarded")


# --------------------------------------------------------------------------
# A far-future lastUpdateTime does not blind the tenant.

def check_future_time(ctx):
    ctx.fake.call("POST", "/_control/alerts",
                  {"tenant": "v", "n": 1, "visible": "now"},
                  {"lastUpdateTime": "9999-12-31T23:59:59Z",
                   "id": "da_future_1"})
    if not any(a == "da_future_1" for a, _ in ctx.fake.versions("v")):
        raise Fail("the fake does not show the future-stamped alert")
    cell = Cell(ctx, "c1")
    cell.start()
    exp = set(("c1-v", a, rt) for a, rt in ctx.fake.versions("v"))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=cell.daemon, what="v's alerts incl. the future one")
    cur = cell.ctl("cursor", "show", "v")[1].strip()
    if iso_to_ms(cur) > int(time.time() * 1000) + 6 * 60000:
        raise Fail("the cursor moved to %s (far future)" % cur)
    err = cell.daemon.proc.stderr()
    if not re.search(r"da_future_1.*9999-12-31|9999-12-31.*da_future_1",
                     err):
        raise Fail("no warning naming the alert and its time:\n%s"
                   % tail(err))
    # Later alerts still arrive.
    ctx.fake.add_alerts("v", 2)
    exp = set(("c1-v", a, rt) for a, rt in ctx.fake.versions("v"))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=cell.daemon, what="new alerts after the future one")
    cell.stop()
    compare(exp | expected_versions(ctx.fake, cell.labels()),
            cell.dels() + cell.dels(label="c1-v"))
    ctx.note("cursor stays near now; the future version forwarded, warned")


# --------------------------------------------------------------------------
# The token stays home: a nextLink elsewhere is refused.

def check_nextlink_home(ctx):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.2)
    port = lsock.getsockname()[1]
    got = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(1)
            try:
                got.append(c.recv(65536))
            except OSError:
                got.append(b"(connected)")
            c.close()
    th = threading.Thread(target=listen, daemon=True)
    th.start()
    try:
        ctx.fake.fault("v", "nextlink-to", "127.0.0.1:%d" % port)
        cell = Cell(ctx, "c1")
        cell.start()
        wait_for(lambda: "127.0.0.1:%d" % port in (
            cell.status("v")["last_error"] or ""), 20,
            "a per-tenant error naming the nextLink's host")
        cell.others_flow()
        if got:
            raise Fail("the daemon followed a nextLink to another port: "
                       "%r" % got[0][:200])
        cell.stop()
        cell.exactly_once()
    finally:
        stop.set()
        lsock.close()
    ctx.note("nextLink to 127.0.0.1:%d refused; nothing sent there" % port)


# --------------------------------------------------------------------------

FAKE = ["-t", "v", "-t", "v2", "-t", "o1", "-t", "o2", "--alerts", "4",
        "--spread", "30m"]
ALL = ("disable", "remove", "creds", "routing", "sigterm")


def case(name, doc, check, seed, extra=()):
    return {"name": name, "quick": True, "doc": doc,
            "fake": FAKE + ["--seed", str(seed)] + list(extra),
            "tenants": [], "outputs": [OCTET], "check": check}


CASES = [
    case("life_token", "token request in flight x disable/remove/creds/"
         "routing/SIGTERM: survives, others exactly once, no stale token",
         matrix("token", ALL), 61),
    case("life_alerts", "alerts page in flight x disable/remove/creds/"
         "routing/SIGTERM: survives, others exactly once, no stale page",
         matrix("alerts", ALL), 62),
    case("life_check", "check-tenant in flight x reloads/client vanishing/"
         "SIGTERM: survives, others exactly once",
         matrix("check", ALL + ("vanish",)), 63),
    case("life_backfill", "backfill page in flight x reloads/cancel/"
         "SIGTERM: survives, the backfill ends, others exactly once",
         matrix("backfill", ALL + ("vanish",)), 64),
    case("life_backfill_token", "Ctrl-C of a backfill waiting for the "
         "tenant's token, then the token arrives: no crash",
         check_backfill_token_cancel, 65),
    case("life_bad_state", "a truncated state file fails that tenant "
         "alone (start and reload), cursor set recovers it",
         check_bad_state, 66),
    case("life_backfill_cert", "backfill works for a certificate tenant",
         check_backfill_cert, 67),
    case("life_future_time", "an alert stamped 9999-12-31: forwarded with "
         "a warning, the cursor stays near now, later alerts arrive",
         check_future_time, 68),
    case("life_nextlink", "a nextLink to another port is refused with a "
         "per-tenant error; nothing is sent there",
         check_nextlink_home, 69),
]
