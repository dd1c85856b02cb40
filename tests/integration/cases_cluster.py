"""Cluster mode ([cluster], issue 8): three collectors share the tenants
through a real 3-member etcd cluster started on loopback, with the fake
cloud and a real syslog-ng.  Who polled what comes from the fake's request
log (each collector has its own User-Agent, GET /_control/log?ua=1), who
owns what from etcd itself, what arrived from syslog-ng.

Short by default (fewer tenants, short load phases); with --long every
case uses 300 tenants and longer phases.  Needs etcd (Debian
etcd-server)."""

import json
import os
import signal
import statistics
import subprocess
import threading
import time
import urllib.request

from cases import delivered, settle
from harness import (Daemon, Fail, compare, expected_versions, iso_to_ms,
                     tail, wait_delivered, wait_for)
from etcd import EtcdCluster
from etcdproxy import EtcdProxy, b64

LONG = os.environ.get("ALERTRELAY_LONG") == "1"
TTL = 4                         # lease_ttl, seconds
POLL = 2                        # poll_interval, seconds
PREFIX = "/alertrelay-it/"
ELECTION = 1                    # etcd --election-timeout, seconds
MEMBERS = ("m1", "m2", "m3")
N_STEADY = 300
N_FAULT = 300 if LONG else 90
LOAD_S = 40 if LONG else 8      # extra load time around each fault


def names(n):
    return ["tenant-%04d" % i for i in range(1, n + 1)]


def now_ms():
    return int(time.time() * 1000)


def octet_tcp():
    return {"name": "siem", "transport": "tcp", "framing": "octet-counting",
            "format": "cef", "sink": "octet"}


class Load(threading.Thread):
    """Until stopped, every period: a new alert for every tenant, and an
    update of a few alerts, each updated once: some that existed before
    the load began, and some it made UPDATE_AFTER rounds before.  A
    version superseded before any poll could see it cannot be forwarded,
    so updates leave every version visible longer than a failover, a
    quorum loss or a restart can keep a tenant unpolled."""

    UPDATE_AFTER = 30

    def __init__(self, fake, tenants, period=1.0):
        super().__init__(daemon=True)
        self.fake = fake
        self.period = period
        self.halt = threading.Event()
        self.error = None
        self.made = []
        self.old = []
        for t in tenants[::10]:
            self.old += [(t, aid) for aid, rt in fake.versions(t)]

    def run(self):
        rounds = 0
        while not self.halt.wait(self.period):
            try:
                r = self.fake.add_alerts("*", 1) or {}
                self.made.append(r.get("ids", []))
                todo = []
                if len(self.made) > self.UPDATE_AFTER:
                    todo += [("*", aid) for aid in self.made.pop(0)[::7]]
                if rounds >= 3:
                    todo += self.old[:5]
                    del self.old[:5]
                for t, aid in todo:
                    self.fake.update(t, aid)
                rounds += 1
            except Fail as e:
                self.error = e
                return

    def stop(self):
        self.halt.set()
        self.join(15)
        if self.error is not None:
            raise self.error


class Cluster:
    """The etcd cluster and three collectors, each with its own state
    directory, control socket, User-Agent and (optionally) only its own
    etcd endpoint."""

    def __init__(self, ctx, ntenants, own_endpoint=False, ttl=TTL,
                 members=MEMBERS, netcd=3, tls=None, keys=None,
                 tenant_keys=None):
        self.ctx = ctx
        self.ttl = ttl
        self.names = names(ntenants)
        self.ever = list(self.names)    # configured at some point
        self.tenant_keys = tenant_keys or {}    # more keys of every tenant
        self.tenants = self.tenant_conf()
        self.etcd = EtcdCluster(ctx.suite, ctx.dir, n=netcd, tls=tls)
        self.etcd.start()
        self.daemons = {}
        self.confargs = {}
        for i, m in enumerate(members):
            d = os.path.join(ctx.dir, m)
            os.makedirs(d, exist_ok=True)
            eps = self.etcd.endpoints([i] if own_endpoint else None)
            extra = ("\n[cluster]\netcd_endpoints = %s\nmember_name = %s\n"
                     "lease_ttl = %ds\nprefix = %s\n"
                     % (eps, m, ttl, PREFIX))
            extra += "".join("%s = %s\n" % kv
                             for kv in (keys or {}).get(m, {}).items())
            self.confargs[m] = dict(
                name="%s.conf" % m, extra=extra,
                daemon={"state_dir": os.path.join(d, "state"),
                        "control_socket": os.path.join(d, "ctl.sock"),
                        "user_agent": "alertrelay-it-" + m,
                        "poll_interval": "%ds" % POLL})
            conf = ctx.make_config(tenants=self.tenants, **self.confargs[m])
            self.daemons[m] = Daemon(ctx.suite, d, conf,
                                     name="alertrelayd-" + m)

    def reload(self, tenant_names):
        """Rewrite every member's configuration with these tenants and
        send SIGHUP."""
        self.names = list(tenant_names)
        self.ever += [n for n in self.names if n not in self.ever]
        self.tenants = self.tenant_conf()
        for m in self.daemons:      # all first: they share secret files
            self.ctx.make_config(tenants=self.tenants, **self.confargs[m])
        for d in self.daemons.values():
            os.kill(d.proc.pid, signal.SIGHUP)

    def set_endpoints(self, m, eps):
        """Point member m at other etcd endpoints (written at the next
        make_config: reload, or before start)."""
        ex = self.confargs[m]["extra"].split("\n")
        ex = ["etcd_endpoints = %s" % eps if x.startswith("etcd_endpoints")
              else x for x in ex]
        self.confargs[m]["extra"] = "\n".join(ex)

    def write_configs(self, tenant_names):
        """Every member's configuration with these tenants (no signal)."""
        self.names = list(tenant_names)
        self.ever += [n for n in self.names if n not in self.ever]
        self.tenants = self.tenant_conf()
        for m in self.daemons:
            self.daemons[m].conf = self.ctx.make_config(
                tenants=self.tenants, **self.confargs[m])

    def ctl_reload(self, m):
        """alertrelayctl reload on m: returns once the reload applied."""
        exe = os.path.join(self.ctx.suite.build, "alertrelayctl")
        sock = os.path.join(self.daemons[m].dir, "ctl.sock")
        r = subprocess.run([exe, "-s", sock, "reload"],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            raise Fail("alertrelayctl reload on %s exited %d: %s"
                       % (m, r.returncode,
                          r.stderr.decode(errors="replace")))

    def tenant_conf(self):
        return [dict({"name": n, "label": n}, **self.tenant_keys)
                for n in self.names]

    def start(self, members=None):
        for m in members or self.daemons:
            self.daemons[m].start()

    def alive(self, members=None):
        for m in members or self.daemons:
            d = self.daemons[m]
            if d.proc is not None:
                d.alive()

    # etcd's view
    def owners(self):
        p = PREFIX + "owners/"
        return {k[len(p):]: v for k, (v, _) in
                self.etcd.get_prefix(p).items()}

    def members(self):
        p = PREFIX + "members/"
        return set(k[len(p):] for k in self.etcd.get_prefix(p))

    def wait_converged(self, members, timeout=None, what="convergence"):
        """Until exactly these members are registered, every tenant has
        an owner among them, and that stayed so for one read interval.
        Returns the owners."""
        members = set(members)
        last = {}

        def ok():
            self.alive(members)
            if self.members() != members:
                return None
            own = self.owners()
            if set(own) != set(self.names) or \
                    not set(own.values()) <= members or \
                    set(own.values()) != members:
                last.clear()
                return None
            if own != last.get("own"):
                last["own"] = own
                last["since"] = time.monotonic()
                return None
            if time.monotonic() - last["since"] < self.ttl / 2:
                return None
            return own
        return wait_for(ok, timeout or 6 * self.ttl + 20,
                        "%s (members %s)" % (what, sorted(members)),
                        interval=0.3)

    # the fake's view
    def polls(self, since=0):
        """[(ms, tenant, member)] of API requests (not token requests),
        oldest first."""
        text = self.ctx.fake.call("GET", "/_control/log", {"ua": "1"}) or ""
        out = []
        for line in text.split("\n"):
            f = line.split(" ")
            if len(f) < 6 or "/oauth2/" in f[3] or f[1] == "-":
                continue
            ua = f[5]
            if not ua.startswith("alertrelay-it-"):
                continue
            ms = iso_to_ms(f[0])
            if ms >= since:
                out.append((ms, f[1], ua[len("alertrelay-it-"):]))
        return out

    def stop_all(self):
        for m in self.daemons:
            d = self.daemons[m]
            if d.proc is not None and d.proc.running():
                d.stop()


def runs(polls):
    """{tenant: [[member, first_ms, last_ms, n], ...]}: consecutive polls
    by the same member form one run."""
    out = {}
    for ms, t, m in polls:
        rs = out.setdefault(t, [])
        if rs and rs[-1][0] == m:
            rs[-1][2] = ms
            rs[-1][3] += 1
        else:
            rs.append([m, ms, ms, 1])
    return out


def check_runs(rs, max_runs, what):
    """Two members polling one tenant at once interleave their polls
    (A B A B ...); a handoff makes one new run.  More runs than the
    membership changes of the phase allow is double polling."""
    bad = {t: [r[0] for r in v] for t, v in rs.items() if len(v) > max_runs}
    if bad:
        t = sorted(bad)[0]
        raise Fail("%s: %d tenant(s) were polled by alternating members "
                   "(double polling), e.g. %s: %s"
                   % (what, len(bad), t, " ".join(bad[t][:12])))


def deliver_all(ctx, cl, timeout=120):
    """Every version the fake made visible for every tenant arrived;
    returns the number of duplicate messages."""
    exp = expected_versions(ctx.fake, [(n, n) for n in cl.ever])
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, timeout,
                          what="every version (%d) to arrive" % len(exp))
    missing, dups = compare(exp, dels, allow_dups=True)
    return len(exp), sum(dups.values()) - len(dups), len(dups)


def ctl_status(ctx, cl, m, *args):
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    sock = os.path.join(cl.daemons[m].dir, "ctl.sock")
    r = subprocess.run([exe, "-s", sock, "status"] + list(args),
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise Fail("alertrelayctl status on %s exited %d: %s"
                   % (m, r.returncode, r.stderr.decode(errors="replace")))
    return r.stdout.decode("utf-8", "replace")


def check_status(ctx, cl, own):
    """alertrelayctl status shows the members, which tenants each owns
    (as etcd has it) and etcd's health."""
    for m in MEMBERS:
        st = json.loads(ctl_status(ctx, cl, m, "--json")).get("cluster")
        if not isinstance(st, dict):
            raise Fail("status --json of %s has no cluster object" % m)
        if st.get("member") != m or not st.get("lease_ok") or \
                not st.get("etcd", {}).get("healthy"):
            raise Fail("status of %s: member %r, lease_ok %r, etcd %r"
                       % (m, st.get("member"), st.get("lease_ok"),
                          st.get("etcd")))
        got = {x["name"]: set(x["tenants"]) for x in st.get("members", [])}
        want = {x: set(t for t, o in own.items() if o == x)
                for x in MEMBERS}
        if got != want:
            raise Fail("status of %s: members and their tenants differ "
                       "from etcd's owner keys: %s"
                       % (m, {k: len(v) for k, v in got.items()}))
        text = ctl_status(ctx, cl, m)
        line = "member %s (this one): %d tenants" % (m, len(want[m]))
        if line not in text:
            raise Fail("status of %s lacks %r:\n%s" % (m, line,
                                                       text[-600:]))


def etcd_requests(cl):
    """Requests all etcd members served so far (gRPC calls, which is what
    every gateway request becomes)."""
    total = 0
    for m in cl.etcd.members:
        if not m.running():
            continue
        with urllib.request.urlopen(m.url + "/metrics", timeout=5) as r:
            for line in r.read().decode().split("\n"):
                if line.startswith("grpc_server_handled_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def keep_evidence(check):
    """On failure, leave the fake's request log (with User-Agents) and
    the phase times in the case directory for the post-mortem."""
    def run(ctx):
        try:
            check(ctx)
        except Fail:
            try:
                text = ctx.fake.call("GET", "/_control/log", {"ua": "1"})
                with open(os.path.join(ctx.dir, "fake-requests.log"),
                          "w") as f:
                    f.write(text or "")
                with open(os.path.join(ctx.dir, "phases.log"), "w") as f:
                    for what, ms in EVENTS:
                        f.write("%d %s\n" % (ms, what))
            except Fail:
                pass
            raise
        finally:
            del EVENTS[:]
    return run


EVENTS = []


def event(what):
    EVENTS.append((what, now_ms()))
    return EVENTS[-1][1]


# --------------------------------------------------------------------------

def check_steady(ctx):
    cl = Cluster(ctx, N_STEADY)
    cl.start()
    own = cl.wait_converged(MEMBERS)
    count = {m: list(own.values()).count(m) for m in MEMBERS}
    if min(count.values()) < N_STEADY // 6:
        raise Fail("rendezvous hashing left a member with too few "
                   "tenants: %s" % count)
    check_status(ctx, cl, own)
    t0 = now_ms()
    r0 = etcd_requests(cl)
    m0 = time.monotonic()
    load = Load(ctx.fake, cl.names)
    load.start()
    time.sleep(3 * POLL + 2 + LOAD_S)
    load.stop()
    minutes = (time.monotonic() - m0) / 60
    r1 = etcd_requests(cl)
    ps = cl.polls(t0)
    by = {}
    for ms, t, m in ps:
        by.setdefault(t, set()).add(m)
    unpolled = sorted(set(cl.names) - set(by))
    if unpolled:
        raise Fail("%d tenants were not polled in %.0fs, e.g. %s"
                   % (len(unpolled), minutes * 60, unpolled[:3]))
    wrong = sorted(t for t, ms in by.items() if ms != {own[t]})
    if wrong:
        raise Fail("%d tenants were polled by a member other than (or "
                   "besides) their owner in etcd, e.g. %s: polled by %s, "
                   "owner %s" % (len(wrong), wrong[0], sorted(by[wrong[0]]),
                                 own[wrong[0]]))
    # From the very first poll: started together, no tenant changed hands.
    check_runs(runs(cl.polls()), 1, "steady state")
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    if dup_msgs:
        raise Fail("steady state: %d versions arrived more than once "
                   "(%d extra messages)" % (dup_versions, dup_msgs))
    per = (r1 - r0) / N_STEADY / minutes
    ctx.note("%d tenants over 3 members %s; %d versions exactly once; "
             "etcd requests %.2f per tenant per minute (lease_ttl %ds)"
             % (N_STEADY, sorted(count.values()), n, per, TTL))
    cl.stop_all()


def check_kill9(ctx):
    cl = Cluster(ctx, N_FAULT)
    cl.start()
    own = cl.wait_converged(MEMBERS)
    load = Load(ctx.fake, cl.names)
    load.start()
    time.sleep(POLL + 1)
    victim = "m2"
    lost = sorted(t for t, m in own.items() if m == victim)
    t_conv = now_ms()
    t_kill = event("kill -9 " + victim)
    cl.daemons[victim].proc.stop(signal.SIGKILL)
    own2 = cl.wait_converged(("m1", "m3"), timeout=4 * TTL + 10,
                             what="the survivors to take over")
    moved = sorted(t for t in own if own[t] != victim and own2[t] != own[t])
    if moved:
        raise Fail("%d tenants of surviving members changed hands, e.g. %s"
                   % (len(moved), moved[:3]))
    time.sleep(POLL + 1 + LOAD_S / 2)
    load.stop()
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    ps = cl.polls()
    first = {}
    for ms, t, m in ps:
        if ms > t_kill and m != victim and t in lost and t not in first:
            first[t] = ms - t_kill
    slow = sorted(t for t in lost if first.get(t, 1e12) > 2 * TTL * 1000)
    if slow:
        raise Fail("%d of %d tenants of the killed member were not polled "
                   "by another within 2 x lease_ttl (%ds), e.g. %s after "
                   "%s ms" % (len(slow), len(lost), 2 * TTL, slow[0],
                              first.get(slow[0], "never")))
    check_runs(runs(cl.polls(t_conv)), 2, "kill -9")
    late = [(ms, t) for ms, t, m in ps if m == victim and ms > t_kill + 200]
    if late:
        raise Fail("the killed member still polled after kill -9: %s"
                   % late[:3])
    ctx.note("kill -9 of 1 of 3: %d tenants taken over in %.1fs median, "
             "%.1fs max (lease_ttl %ds); zero loss of %d versions; "
             "%d duplicate messages (%.2f per moved tenant)"
             % (len(lost), statistics.median(first.values()) / 1000,
                max(first.values()) / 1000, TTL, n, dup_msgs,
                dup_msgs / max(1, len(lost))))
    cl.stop_all()


def check_etcd_loss(ctx):
    cl = Cluster(ctx, N_FAULT, own_endpoint=True)
    cl.start()
    own = cl.wait_converged(MEMBERS)
    load = Load(ctx.fake, cl.names)
    load.start()
    time.sleep(POLL + 1)
    victim = "m1"       # talks only to etcd1
    lost = sorted(t for t, m in own.items() if m == victim)
    t_conv = now_ms()
    t_cut = event("etcd1 killed")
    cl.etcd.members[0].stop(signal.SIGKILL)
    own2 = cl.wait_converged(("m2", "m3"), timeout=4 * TTL + 10,
                             what="the others to take over from the "
                             "member that lost etcd")
    time.sleep(POLL + 1)
    ps = cl.polls(t_conv)
    last = max((ms for ms, t, m in ps if m == victim), default=t_cut)
    if last > t_cut + TTL * 1000:
        raise Fail("the member cut off from etcd still polled %.1fs after "
                   "losing it (lease_ttl %ds)" % ((last - t_cut) / 1000,
                                                  TTL))
    cl.alive()
    first = {}
    for ms, t, m in ps:
        if m != victim and t in lost and t not in first:
            first[t] = ms
    for t in lost:
        if t not in first:
            raise Fail("tenant %s of the cut-off member was not taken "
                       "over" % t)
    double = [(t, ms) for ms, t, m in ps if m == victim and t in lost and
              ms >= first[t]]
    if double:
        raise Fail("double polling: the cut-off member polled %s at %d, "
                   "after %s had taken it over"
                   % (double[0][0], double[0][1], own2[double[0][0]]))
    stopped_after = (last - t_cut) / 1000
    # etcd1 comes back: the member rejoins, its tenants return to it.
    cl.etcd.members[0].start()
    cl.etcd.wait_healthy()
    cl.wait_converged(MEMBERS, what="the member to rejoin after etcd "
                      "returned")
    time.sleep(POLL + 1 + LOAD_S / 2)
    load.stop()
    check_runs(runs(cl.polls(t_conv)), 3, "etcd loss and return")
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    ctx.note("member cut off from etcd stopped polling %.1fs after the "
             "cut (lease_ttl %ds), others took over %d tenants within "
             "%.1fs; zero loss of %d versions, %d duplicate messages "
             "over 2 handoffs" % (stopped_after, TTL, len(lost),
                                  (max(first.values()) - t_cut) / 1000, n,
                                  dup_msgs))
    cl.stop_all()


def check_etcd_quorum(ctx):
    cl = Cluster(ctx, N_FAULT)
    cl.start()
    own = cl.wait_converged(MEMBERS)
    load = Load(ctx.fake, cl.names)
    load.start()
    # One etcd member down: nothing changes, polling goes on.
    t1 = event("etcd3 killed")
    cl.etcd.members[2].stop(signal.SIGKILL)
    time.sleep(2 * TTL + POLL)
    cl.alive()
    t2 = now_ms()
    ps = cl.polls(t1)
    rs = runs(ps)
    check_runs(rs, 1, "one etcd member down")
    quiet = sorted(set(cl.names) - set(t for ms, t, m in ps
                                       if ms > t2 - 2 * POLL * 1000 - 1000))
    if quiet:
        raise Fail("with one etcd member down %d tenants stopped being "
                   "polled, e.g. %s" % (len(quiet), quiet[:3]))
    if cl.owners() != own:
        raise Fail("with one etcd member down, tenants changed owner")
    # Quorum lost: every member stops within lease_ttl of etcd noticing
    # (its leader keeps renewing leases for up to an election timeout).
    t_q = event("etcd2 killed: quorum lost")
    cl.etcd.members[1].stop(signal.SIGKILL)
    time.sleep(TTL + ELECTION + 3)
    t_r = now_ms()
    during = [(ms, t, m) for ms, t, m in
              cl.polls(t_q + (TTL + ELECTION) * 1000) if ms < t_r]
    if during:
        raise Fail("%d polls more than lease_ttl + election timeout after "
                   "etcd lost quorum, e.g. %s by %s at +%.1fs"
                   % (len(during), during[0][1], during[0][2],
                      (during[0][0] - t_q) / 1000))
    paused = max((ms for ms, t, m in cl.polls(t_q)), default=t_q)
    cl.etcd.members[1].start()
    cl.etcd.members[2].start()
    cl.etcd.wait_healthy()
    t_back = event("etcd2, etcd3 back")

    def resumed():
        cl.alive()
        got = set(t for ms, t, m in cl.polls(t_back))
        return got >= set(cl.names)
    wait_for(resumed, 4 * TTL + 20, "every tenant to be polled again after "
             "etcd regained quorum", interval=0.5)
    resume_s = (max(min(ms for ms, t2_, m in cl.polls(t_back) if t2_ == t)
                    for t in cl.names) - t_back) / 1000
    cl.wait_converged(MEMBERS)
    time.sleep(LOAD_S / 2)
    load.stop()
    check_runs(runs(cl.polls(t1)), 3, "quorum loss and return")
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    ctx.note("1 of 3 etcd members down: no effect; quorum lost: last "
             "poll %.1fs after, every tenant polled again %.1fs after "
             "quorum returned; zero loss of %d versions, %d duplicate "
             "messages" % ((paused - t_q) / 1000, resume_s, n, dup_msgs))
    cl.stop_all()


def check_rolling(ctx):
    cl = Cluster(ctx, N_FAULT)
    cl.start()
    cl.wait_converged(MEMBERS)
    load = Load(ctx.fake, cl.names)
    load.start()
    t0 = now_ms()
    for rounds in range(3 if LONG else 1):
        for m in MEMBERS:
            cl.daemons[m].stop()        # SIGTERM: exit 0 expected
            others = [x for x in MEMBERS if x != m]
            cl.wait_converged(others, timeout=4 * TTL + 10,
                              what="the others to take over from %s" % m)
            cl.daemons[m].start()
            cl.wait_converged(MEMBERS, what="%s to rejoin" % m)
    time.sleep(POLL + LOAD_S / 2)
    load.stop()
    check_runs(runs(cl.polls(t0)), 1 + 2 * (3 if LONG else 1),
               "rolling restart")
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    ctx.note("rolling restart of 3 members under load: zero loss of %d "
             "versions, %d duplicate messages (%d handoffs per member)"
             % (n, dup_msgs, 2 * (3 if LONG else 1)))
    cl.stop_all()


def check_reload(ctx):
    """SIGHUP with tenants added and removed on every member: each new
    tenant is polled by exactly one member; a removed one by none, and its
    owner key goes."""
    every = names(N_FAULT + 10)
    cl = Cluster(ctx, N_FAULT)
    cl.start()
    cl.wait_converged(MEMBERS)
    t_add = event("10 tenants added")
    cl.reload(every)
    own = cl.wait_converged(MEMBERS, what="the added tenants to get owners")
    time.sleep(2 * POLL + 1)
    rs = runs(cl.polls(t_add))
    for t in every[-10:]:
        if t not in rs:
            raise Fail("added tenant %s was never polled" % t)
        if [r[0] for r in rs[t]] != [own[t]]:
            raise Fail("added tenant %s: polled by %s, owner in etcd %s"
                       % (t, [r[0] for r in rs[t]], own[t]))
    check_runs(rs, 1, "after adding tenants")
    removed = every[:10]
    event("10 tenants removed")
    cl.reload(every[10:])
    wait_for(lambda: not set(removed) & set(cl.owners()), 3 * TTL + 10,
             "the removed tenants' owner keys to go")
    t_gone = now_ms() + 500
    time.sleep(2 * POLL + 1)
    late = [(t, m) for ms, t, m in cl.polls(t_gone) if t in removed]
    if late:
        raise Fail("removed tenant %s still polled by %s" % late[0])
    cl.wait_converged(MEMBERS)
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    cl.alive()
    ctx.note("reload: 10 tenants added, each polled by its one owner; "
             "10 removed, released in etcd and polled by no one; %d "
             "versions delivered, %d duplicate messages"
             % (n, dup_msgs))
    cl.stop_all()


def check_stop_in_token(ctx):
    """A member that hands a tenant over while the tenant's token request
    is still pending (slow token endpoint) must not poll it when the token
    arrives: that would be two members polling one tenant."""
    cl = Cluster(ctx, 20, members=("m1", "m2"))
    cl.start(("m1",))
    wait_for(lambda: set(cl.owners().values()) == {"m1"} and
             len(cl.owners()) == 20, 20, "m1 to own every tenant")
    event("m2 starts while m1 waits for tokens")
    cl.start(("m2",))
    own = cl.wait_converged(("m1", "m2"))
    handed = set(t for t, m in own.items() if m == "m2")
    wait_for(lambda: set(t for ms, t, m in cl.polls() if m == "m2") ==
             handed, 30, "m2 to poll the tenants it took over")
    time.sleep(POLL + 1)
    stray = [t for ms, t, m in cl.polls() if m == "m1" and t in handed]
    if stray:
        raise Fail("m1 polled %d time(s) tenants it had handed to m2 "
                   "(when their pending token requests completed), e.g. "
                   "%s" % (len(stray), stray[0]))
    check_runs(runs(cl.polls()), 1, "handoff while tokens were pending")
    deliver_all(ctx, cl)
    ctx.note("%d tenants handed over while their tokens were pending: no "
             "poll by the previous owner" % len(handed))
    cl.stop_all()


def check_tls(ctx):
    pki = ctx.suite.pki
    ca, cert, key = (os.path.join(pki, f) for f in
                     ("ca.pem", "client.pem", "client.key"))
    cl = Cluster(ctx, 5, members=("m1", "m2"), netcd=1, tls=pki,
                 keys={"m1": {"ca_file": ca, "cert_file": cert,
                              "key_file": key},
                       "m2": {"ca_file": ca}})
    cl.start()
    own = cl.wait_converged(("m1",), what="the member with a client "
                            "certificate to own every tenant")
    n, dup_msgs, dup_versions = deliver_all(ctx, cl)
    if dup_msgs:
        raise Fail("%d duplicate messages with a single member" % dup_msgs)
    if cl.members() != {"m1"}:
        raise Fail("a collector without a client certificate joined "
                   "etcd: %s" % sorted(cl.members()))
    cl.alive()
    polled = set(m for ms, t, m in cl.polls())
    if polled != {"m1"}:
        raise Fail("polled by %s; only m1 could reach etcd"
                   % sorted(polled))
    err = cl.daemons["m2"].proc.stderr()
    if "cluster: etcd https://127.0.0.1:%d" % cl.etcd.members[0].client_port \
            not in err:
        raise Fail("the collector that etcd refused does not say so:\n%s"
                   % tail(err))
    ctx.note("etcd over TLS with client certificates: %d tenants, %d "
             "versions exactly once by the member with a certificate; the "
             "one without polls nothing" % (len(own), n))
    cl.stop_all()


def incident_versions(fake, tenants):
    """{(label, id, rt_ms)} of every incident version the fake made
    visible (the label is the tenant's name here)."""
    out = set()
    for t in tenants:
        for i, lut in fake.call("GET", "/_control/incident-versions",
                                {"tenant": t}) or []:
            out.add((t, i, iso_to_ms(lut)))
    return out


def incident_polls(cl, member, since):
    """How many incident pages member asked for since (ms)."""
    text = cl.ctx.fake.call("GET", "/_control/log", {"ua": "1"}) or ""
    n = 0
    for line in text.split("\n"):
        f = line.split(" ")
        if len(f) >= 6 and "/security/incidents" in f[3] and \
                "/alerts" not in f[3] and \
                f[5] == "alertrelay-it-" + member and \
                iso_to_ms(f[0]) >= since:
            n += 1
    return n


def more_incidents(fake, tenants, new):
    """An update of incidents 1 and 2 of every tenant, and new ones."""
    for t in tenants:
        for i in (1, 2):
            fake.call("POST", "/_control/incident-update",
                      {"tenant": t, "id": i})
        fake.call("POST", "/_control/incidents", {"tenant": t, "n": new})


def check_incidents(ctx):
    """Tenants with incidents = yes handed from one member to the other
    (SIGTERM): the one that takes over starts from the incidents' cursor
    and dedupe entries the first stored in etcd, so the SIEM sees every
    incident version exactly once (alerts: at least once, as before)."""
    fake, sng = ctx.fake, ctx.sng
    cl = Cluster(ctx, 8, members=("m1", "m2"),
                 tenant_keys={"source": "graph", "incidents": "yes"})
    for t in cl.names:
        fake.call("POST", "/_control/incidents", {"tenant": t, "n": 6})
    cl.start()
    own = cl.wait_converged(("m1", "m2"))
    exp = lambda: incident_versions(fake, cl.names)     # noqa: E731
    wait_delivered(ctx.suite, sng, "octet", exp, 60,
                   what="every incident version before the hand-off")
    more_incidents(fake, cl.names, 2)
    wait_delivered(ctx.suite, sng, "octet", exp, 60,
                   what="incident updates before the hand-off")
    gone = own[cl.names[0]]
    stay = "m2" if gone == "m1" else "m1"
    moved = sorted(t for t, m in own.items() if m == gone)
    t_stop = event("%s stopped (SIGTERM)" % gone)
    cl.daemons[gone].stop()
    cl.wait_converged((stay,), timeout=4 * TTL + 10,
                      what="%s to take over from %s" % (stay, gone))
    more_incidents(fake, cl.names, 1)
    wait_delivered(ctx.suite, sng, "octet", exp, 60,
                   what="incident versions after the hand-off")
    # Every tenant read twice more by the one left: a duplicate (or a
    # re-read from an old cursor) would have arrived by now.
    n = incident_polls(cl, stay, t_stop)
    wait_for(lambda: incident_polls(cl, stay, t_stop) >= n + 2 * len(
             cl.names), 30, "two more incident polls of every tenant")
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    incs = [d for d in dels if d.ext.get("flexString1", "").find(
            "/incidents/") >= 0]
    compare(exp(), incs)
    cl.alive((stay,))
    ctx.note("%d tenants with incidents handed from %s to %s: %d incident "
             "versions, each exactly once" % (len(moved), gone, stay,
                                              len(exp())))
    cl.stop_all()


# --------------------------------------------------------------------------
# Lifecycle matrix cells for etcd (issue 12): an etcd request held by a
# proxy (etcdproxy.py) while a transition happens.

def proxied(ctx, ntenants, members=("m1", "m2")):
    """A one-member etcd and members that each reach it through their own
    holding proxy."""
    cl = Cluster(ctx, ntenants, members=members, netcd=1)
    px = {m: EtcdProxy(cl.etcd.members[0].url) for m in members}
    for m in members:
        cl.set_endpoints(m, px[m].url)
    cl.write_configs(cl.names)
    return cl, px


def owner_key_txn(name):
    """What identifies an acquire or a release of name's owner key."""
    return b64(PREFIX + "owners/" + name)


def held_by(px, holds, timeout, what):
    """The member whose proxy holds its request first."""
    def one():
        for m, h in holds.items():
            if h.held.is_set():
                return m
        return None
    return wait_for(one, timeout, what, interval=0.05)


def check_life_reload(ctx):
    """An acquire of tenant X held in flight while a reload removes X
    from every member and moves the acquiring member to another etcd
    endpoint; then etcd applies it.  That stale acquire must not leave X
    owned (its key bound to the member's lease): the member releases the
    key, nobody polls X, the others deliver every version exactly once."""
    cl, px = proxied(ctx, 12)
    x = cl.names[-1]
    rest = cl.names[:-1]
    cl.write_configs(rest)
    cl.start()
    cl.wait_converged(("m1", "m2"))
    holds = {m: px[m].hold("/v3/kv/txn", "request_put", owner_key_txn(x))
             for m in px}
    cl.reload(rest + [x])
    m = held_by(px, holds, 6 * TTL, "an acquire of %s to be held" % x)
    t_stale = event("%s's acquire of %s held; reload removes it" % (m, x))
    cl.set_endpoints(m, cl.etcd.members[0].url)
    cl.write_configs(rest)
    for d in cl.daemons:
        cl.ctl_reload(d)
    holds[m].release()
    # etcd has applied it (or refused it) before the key is looked for.
    if not holds[m].forwarded.wait(10):
        raise Fail("the held acquire was not forwarded to etcd")
    wait_for(lambda: x not in cl.owners(), 3 * TTL + 10,
             "the owner key of removed tenant %s (acquired by a request "
             "answered after the reload) to go" % x)
    cl.ctx.fake.add_alerts("*", 1)
    exp = expected_versions(ctx.fake, [(n, n) for n in rest])
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 60,
                   what="every version of the other tenants")
    settle(ctx, "octet")
    compare(exp, delivered(ctx, "octet"))
    late = [(t, w) for ms, t, w in cl.polls(t_stale) if t == x]
    if late:
        raise Fail("removed tenant %s polled by %s after the reload"
                   % (x, late[0][1]))
    cl.alive()
    ctx.note("acquire of %s by %s held across a reload that removed it and "
             "changed the member's etcd endpoint: released in etcd, never "
             "polled; %d versions of the other tenants exactly once"
             % (x, m, len(exp)))
    cl.stop_all()
    for p in px.values():
        p.close()


def check_life_sigterm(ctx, hung=False):
    """SIGTERM while a key-value request is held in flight (hung: every
    request of the member, etcd answers nothing, not even the cursors and
    the revoke at exit): the member exits 0 within 1 s, the other takes
    over, the other's own tenants keep delivering every version exactly
    once."""
    cl, px = proxied(ctx, 12)
    cl.start()
    own = cl.wait_converged(("m1", "m2"))
    h = px["m1"].hold("/v3/" if hung else "/v3/kv/txn", every=hung)
    h.wait_held(2 * TTL, "m1's next key-value request")
    d = cl.daemons["m1"]
    t0 = time.monotonic()
    os.kill(d.proc.pid, signal.SIGTERM)
    rc = d.proc.wait(5)
    took = time.monotonic() - t0
    h.release()
    if rc is None:
        raise Fail("m1 still runs 5 s after SIGTERM with an etcd request "
                   "in flight")
    if rc != 0 or took > 1.0:
        raise Fail("m1 with an etcd request in flight: SIGTERM -> exit %s "
                   "after %.2f s (expected 0 within 1 s)" % (rc, took))
    d.proc = None
    cl.wait_converged(("m2",), timeout=4 * TTL + 10,
                      what="m2 to take over from m1")
    ctx.fake.add_alerts("*", 1)
    stay = [t for t, m in own.items() if m == "m2"]
    n, dup_msgs, _ = deliver_all(ctx, cl)
    exp = expected_versions(ctx.fake, [(t, t) for t in stay])
    compare(exp, [x for x in delivered(ctx, "octet") if x.label in stay])
    cl.alive(("m2",))
    ctx.note("SIGTERM with %s: exit 0 in %.2f s; m2 took over; %d "
             "versions of its own tenants exactly once, %d in all"
             % ("etcd hung" if hung else "an etcd request held", took,
                len(exp), n))
    cl.stop_all()
    for p in px.values():
        p.close()


def check_life_handoff(ctx):
    """A hand-off (m2 joins) whose release transaction reaches etcd but
    whose answer is lost: no tenant polled by two members, the tenants
    that stay with m1 exactly once, every version delivered."""
    cl, px = proxied(ctx, 12)
    cl.start(("m1",))
    wait_for(lambda: set(cl.owners().values()) == {"m1"} and
             len(cl.owners()) == 12, 30, "m1 to own every tenant")
    h = px["m1"].hold("/v3/kv/txn", "request_delete_range")
    t0 = event("m2 starts; m1's first release held")
    cl.start(("m2",))
    h.wait_held(6 * TTL, "m1's first release")
    h.release(answer=False)
    own = cl.wait_converged(("m1", "m2"))
    ctx.fake.add_alerts("*", 1)
    n, dup_msgs, _ = deliver_all(ctx, cl)
    check_runs(runs(cl.polls(t0)), 2, "hand-off with a lost release answer")
    stay = [t for t, m in own.items() if m == "m1"]
    exp = expected_versions(ctx.fake, [(t, t) for t in stay])
    compare(exp, [x for x in delivered(ctx, "octet") if x.label in stay])
    cl.alive()
    ctx.note("hand-off with m1's release applied but unanswered: no double "
             "polling, %d versions (%d duplicate messages of moved "
             "tenants), m1's own exactly once" % (n, dup_msgs))
    cl.stop_all()
    for p in px.values():
        p.close()


CASES = [
    {
        "name": "cluster_steady",
        "doc": "3 collectors, 3-member etcd, 300 tenants: each tenant "
               "polled by exactly its etcd owner, every version once",
        "fake": ["--tenants", str(N_STEADY), "--alerts", "3", "--seed",
                 "81"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_steady),
    },
    {
        "name": "cluster_kill9",
        "doc": "kill -9 of a collector: its tenants polled by the others "
               "within 2 x lease_ttl, zero loss, duplicates counted",
        "fake": ["--tenants", str(N_FAULT), "--alerts", "3", "--seed",
                 "82"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_kill9),
    },
    {
        "name": "cluster_etcd_loss",
        "doc": "a collector loses its etcd endpoint: stops within "
               "lease_ttl, others take over, no double polling, rejoins",
        "fake": ["--tenants", str(N_FAULT), "--alerts", "3", "--seed",
                 "83"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_etcd_loss),
    },
    {
        "name": "cluster_quorum",
        "doc": "1 etcd member down: no effect; quorum lost: polling pauses "
               "everywhere and resumes, zero loss",
        "fake": ["--tenants", str(N_FAULT), "--alerts", "3", "--seed",
                 "84"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_etcd_quorum),
    },
    {
        "name": "cluster_rolling",
        "doc": "rolling restart of the three collectors under load: zero "
               "loss, no double polling",
        "fake": ["--tenants", str(N_FAULT), "--alerts", "3", "--seed",
                 "85"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_rolling),
    },
    {
        "name": "cluster_reload",
        "doc": "SIGHUP adding and removing tenants on every member: added "
               "ones polled by one owner, removed ones by none",
        "fake": ["--tenants", str(N_FAULT + 10), "--alerts", "3", "--seed",
                 "87"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_reload),
    },
    {
        "name": "cluster_stop_token",
        "doc": "a member stopped while its token requests are pending "
               "does not poll once they complete",
        "fake": ["--tenants", "20", "--alerts", "3", "--seed", "88",
                 "--fault", "*:token-slow:5000"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_stop_in_token),
    },
    {
        "name": "cluster_incidents",
        "doc": "tenants with incidents = yes handed over by SIGTERM: the "
               "new owner starts from the incidents' checkpoint in etcd, "
               "every incident version exactly once",
        "fake": ["--tenants", "8", "--alerts", "3", "--seed", "89"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_incidents),
    },
    {
        "name": "cluster_life_reload", "quick": True,
        "doc": "an acquire held while a reload removes the tenant and "
               "changes the member's etcd endpoint: the late acquire is "
               "released, nobody polls the tenant, others exactly once",
        "fake": ["--tenants", "12", "--alerts", "3", "--seed", "91"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_life_reload),
    },
    {
        "name": "cluster_life_sigterm", "quick": True,
        "doc": "SIGTERM while an etcd request is held: exit 0 within 1 s, "
               "the other member takes over, its own tenants exactly once",
        "fake": ["--tenants", "12", "--alerts", "3", "--seed", "92"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_life_sigterm),
    },
    {
        "name": "cluster_life_sigterm_hung", "quick": True,
        "doc": "SIGTERM while etcd answers nothing (every request held): "
               "exit 0 within 1 s, the other member takes over after the "
               "lease expires, its own tenants exactly once",
        "fake": ["--tenants", "12", "--alerts", "3", "--seed", "94"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(lambda ctx: check_life_sigterm(ctx, True)),
    },
    {
        "name": "cluster_life_handoff", "quick": True,
        "doc": "a hand-off whose release reaches etcd but loses its "
               "answer: no double polling, every version delivered",
        "fake": ["--tenants", "12", "--alerts", "3", "--seed", "93"],
        "outputs": [octet_tcp()],
        "check": keep_evidence(check_life_handoff),
    },
    {
        "name": "cluster_tls",
        "doc": "etcd over TLS requiring client certificates: the member "
               "with one polls everything, the one without nothing",
        "fake": ["--tenants", "5", "--alerts", "10", "--seed", "86"],
        "outputs": [octet_tcp()],
        "pki": True,
        "check": keep_evidence(check_tls),
    },
]
