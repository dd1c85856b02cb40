"""Integration cases for issue 14 ("Ready for Defender XDR"): the
Prefer: include-unknown-enum-members header (newer products keep their
real serviceSource/detectionSource), the $top clamp of alerts_v2 with its
start-up notice, the service_sources filter applied after dedupe, and
secretless sign-in (a federated client_assertion_file re-read for every
token request; certificate_thumbprint = sha256, PS256).  Loaded by
harness.py (every cases_*.py exports CASES)."""

import json
import os
import time
import urllib.parse
import urllib.request

from harness import (CLIENT_ID, Fail, compare, iso_to_ms, wait_delivered,
                     wait_for)
from cases import delivered, fake_tenants, octet_tcp, once, settle
from cases_workflows import make_cert, rewrite_tenants, sign_jwt, with_setup

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PREFER = "include-unknown-enum-members"
ENDPOINT = "microsoftDefenderForEndpoint"


def graph_token(fake, tenant):
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": CLIENT_ID,
        "client_secret": "secret-" + tenant, "scope": GRAPH_SCOPE}).encode()
    with urllib.request.urlopen("%s/%s/oauth2/v2.0/token"
                                % (fake.url, tenant), data=form,
                                timeout=10) as r:
        return json.loads(r.read())["access_token"]


def graph_alerts(fake, tenant, prefer=True):
    """{id: alert} as alerts_v2 serves them now, with or without the
    Prefer header."""
    tok = graph_token(fake, tenant)
    headers = {"Authorization": "Bearer " + tok}
    if prefer:
        headers["Prefer"] = PREFER
    url = "%s/v1.0/security/alerts_v2?%s" % (
        fake.url, urllib.parse.urlencode({"$top": 1000}))
    out = {}
    while url:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as r:
            page = json.loads(r.read())
        for a in page["value"]:
            out[a["id"]] = a
        url = page.get("@odata.nextLink")
    return out


def graph_requests(ctx, tenant):
    """[(status, uri)] of the alerts_v2 requests the fake logged for
    tenant (log lines: TIME TENANT METHOD URI STATUS)."""
    out = []
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "alerts_v2" in f[3]:
            out.append((int(f[-1]), f[3]))
    return out


# --------------------------------------------------------------------------
# graph_prefer_top: page_size 5000 against Graph's $top limit of 1000, and
# the Prefer header, next to an MDE tenant that keeps its page_size.

PT_T = [{"name": "gp", "label": "Graph prefer", "source": "graph",
         "incidents": "yes"},
        {"name": "mp", "label": "MDE tenant"}]


def check_prefer_top(ctx):
    ctx.fake.call("POST", "/_control/incidents", {"tenant": "gp", "n": 60})
    err = once(ctx, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected() | incident_versions(ctx.fake, "gp",
                                               "Graph prefer"), dels)
    itops = set(urllib.parse.parse_qs(urllib.parse.urlsplit(x.split(" ")[3])
                .query).get("$top", ["?"])[0]
                for x in (ctx.fake.log() or "").split("\n")
                if " gp " in x and "/security/incidents" in x)
    if itops != {"50"}:
        raise Fail("incident requests with page_size 5000: $top %s, "
                   "expected 50" % sorted(itops))
    # $top: Graph never asked for more than 1000, so never answered 400.
    reqs = graph_requests(ctx, "gp")
    bad = [r for r in reqs if r[0] != 200]
    if any("/security/incidents" in x and " 400" in x
           for x in (ctx.fake.log() or "").split("\n")):
        raise Fail("an incidents request was answered 400")
    tops = set(urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)
               .get("$top", ["?"])[0] for _, u in reqs)
    if bad or tops != {"1000"}:
        raise Fail("alerts_v2 requests with page_size 5000: $top %s, "
                   "failed answers %s" % (sorted(tops), bad[:3]))
    mde = [x for x in (ctx.fake.log() or "").split("\n")
           if " mp " in x and "/api/alerts" in x]
    if not mde or "top=5000" not in mde[0].replace("%24", "$"):
        raise Fail("the MDE tenant's $top is not page_size 5000: %s"
                   % mde[:2])
    notices = [x for x in err.split("\n") if "$top maximum" in x]
    if len(notices) != 1 or "tenant gp" not in notices[0] or \
            "1000" not in notices[0]:
        raise Fail("expected one start-up notice for tenant gp that its "
                   "$top is clamped to 1000, got %r" % notices)
    # Prefer: the newer product (Defender for Cloud) arrives with its real
    # detectionSource; the fake shows unknownFutureValue without Prefer.
    plain = graph_alerts(ctx.fake, "gp", prefer=False)
    full = graph_alerts(ctx.fake, "gp")
    newer = [i for i, a in full.items()
             if a["serviceSource"] == "microsoftDefenderForCloud"]
    if not newer or any(plain[i]["serviceSource"] != "unknownFutureValue"
                        for i in newer):
        raise Fail("the fake should hide Defender for Cloud alerts as "
                   "unknownFutureValue without Prefer (%d found)"
                   % len(newer))
    got = {d.id: d.ext.get("sourceServiceName") for d in dels
           if d.label == "Graph prefer"}
    wrong = [(i, got.get(i)) for i in newer
             if got.get(i) != full[i]["detectionSource"]]
    if wrong:
        raise Fail("Defender for Cloud alerts forwarded without their "
                   "detectionSource (no Prefer header?): %s" % wrong[:3])
    ctx.note("%d versions; %d alerts_v2 requests at $top=1000; %d newer-"
             "product alerts with their detectionSource"
             % (len(dels), len(reqs), len(newer)))


# --------------------------------------------------------------------------
# graph_service_sources: an Endpoint-only feed (service_sources) next to an
# unfiltered tenant; status changes of Endpoint alerts still arrive, those
# of other products never do.

SS_T = [{"name": "ge", "label": "Endpoint only", "source": "graph",
         "service_sources": "%s, microsoftDefenderForToasters" % ENDPOINT},
        {"name": "ga", "label": "All products", "source": "graph"}]


def endpoint_ids(ctx, tenant):
    return set(i for i, a in graph_alerts(ctx.fake, tenant).items()
               if a["serviceSource"] == ENDPOINT)


def expected_ss(ctx):
    ep = endpoint_ids(ctx, "ge")
    exp = set(("Endpoint only", i, rt) for i, rt in ctx.fake.versions("ge")
              if i in ep)
    exp |= set(("All products", i, rt) for i, rt in ctx.fake.versions("ga"))
    return exp


def check_service_sources(ctx):
    fake, sng = ctx.fake, ctx.sng
    ctx.daemon.start()
    snap = expected_ss(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="the initial backlog")
    # Status changes: three Endpoint alerts and three of other products.
    alerts = graph_alerts(fake, "ge")
    ep = sorted(i for i, a in alerts.items()
                if a["serviceSource"] == ENDPOINT)[:3]
    other = sorted(i for i, a in alerts.items()
                   if a["serviceSource"] != ENDPOINT)[:3]
    if len(ep) < 3 or len(other) < 3:
        raise Fail("the fake made too few alerts of each kind: %d "
                   "Endpoint, %d other" % (len(ep), len(other)))
    for aid in ep + other:
        fake.update("ge", aid)
    fake.add_alerts("ge", 6)
    snap2 = expected_ss(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap2, 30,
                   daemon=ctx.daemon, what="the Endpoint updates")
    # Two more polls: anything held back would have come by now.
    polls = len(graph_requests(ctx, "ge"))
    deadline = time.monotonic() + 15
    while len(graph_requests(ctx, "ge")) < polls + 2:
        if time.monotonic() > deadline:
            raise Fail("tenant ge stopped polling")
        ctx.daemon.alive()
        time.sleep(0.2)
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(expected_ss(ctx), dels)
    for aid in ep:
        if not any(d.id == aid and d.act == "updated" and
                   d.label == "Endpoint only" for d in dels):
            raise Fail("the status change of Endpoint alert %s was not "
                       "forwarded" % aid)
    err = ctx.daemon.proc.stderr()
    if "microsoftDefenderForToasters" not in err or \
            "not a serviceSource value" not in err:
        raise Fail("no warning for the undocumented service_sources value")
    held = sum(1 for i, _ in fake.versions("ge") if i not in
               endpoint_ids(ctx, "ge"))
    ctx.note("%d versions forwarded; %d versions of other products held "
             "back by service_sources; %d Endpoint updates forwarded"
             % (len(dels), held, len(ep)))


# --------------------------------------------------------------------------
# secretless: a federated tenant (client_assertion_file, the external JWT
# signed by an "issuer" key the fake trusts) and a certificate tenant with
# certificate_thumbprint = sha256 against a fake that accepts only PS256.

FED_ISS = "https://issuer.example/cluster-1"
FED_SUB = "system:serviceaccount:alertrelay:relay"
SL_T = [{"name": "f1", "label": "Federated", "source": "graph"},
        {"name": "p1", "label": "PS256 cert"}]


def fed_jwt(ctx, exp_in, sub=FED_SUB):
    now = int(time.time())
    return sign_jwt(ctx.dir, ctx.case["_idp_key"],
                    {"alg": "RS256", "typ": "JWT", "kid": "k1"},
                    {"iss": FED_ISS, "sub": sub,
                     "aud": "api://AzureADTokenExchange",
                     "iat": now - 5, "nbf": now - 5, "exp": now + exp_in},
                    False)


def put_assertion(ctx, jwt, mode=0o600):
    """Replace the assertion file the way an issuer's agent does."""
    path = os.path.join(ctx.dir, "assertion.jwt")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (jwt + "\n").encode())
    os.close(fd)
    os.chmod(tmp, mode)
    os.rename(tmp, path)
    return path


def setup_secretless(ctx):
    pem, key = make_cert(ctx.dir, "app")
    idp, idp_key = make_cert(ctx.dir, "idp")
    ctx.case["_idp_key"] = idp_key
    first = fed_jwt(ctx, 3600)
    ctx.case["_jwts"] = [first]
    path = put_assertion(ctx, first)
    ctx.fake_args = ["--client-cert", pem, "--require-alg", "PS256",
                     "--federated", "%s,%s" % (FED_ISS, FED_SUB),
                     "--federated-cert", idp]

    def fix(name, lines):
        lines = [x for x in lines if not x.startswith("client_secret_file")]
        if name == "f1":
            return lines + ["client_assertion_file = %s" % path]
        return lines + ["certificate_file = %s" % pem,
                        "private_key_file = %s" % key,
                        "certificate_thumbprint = sha256"]
    rewrite_tenants(ctx.conf, fix)


def check_secretless(ctx):
    fake, sng = ctx.fake, ctx.sng
    # A group-readable assertion file is a configuration error.
    path = put_assertion(ctx, ctx.case["_jwts"][0], 0o640)
    rc, out, err = ctx.daemon.run("--check-config")
    if rc != 78 or "client_assertion_file" not in err or \
            "readable by group or others" not in err:
        raise Fail("--check-config with a 0640 client_assertion_file: "
                   "exit %d, stderr %r" % (rc, err[-400:]))
    os.chmod(path, 0o600)
    ctx.daemon.start()
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="both tenants' backlog")
    # The issuer's token expires on disk; the API then refuses the cached
    # access token once (401), so the daemon asks for a new one.
    expired = fed_jwt(ctx, -60)
    ctx.case["_jwts"].append(expired)
    put_assertion(ctx, expired)
    fake.fault("f1", "401")
    fake.add_alerts("f1", 4)
    fake.add_alerts("p1", 2)

    def refused():
        ctx.daemon.alive()
        e = ctx.daemon.proc.stderr()
        return "AADSTS700024" in e and "federated assertion" in e and \
            "expired at" in e
    wait_for(refused, 30, "the expired assertion to be read, warned "
             "about and refused (AADSTS700024)")
    # The issuer writes a fresh one: read without a reload.
    fresh = fed_jwt(ctx, 3600)
    ctx.case["_jwts"].append(fresh)
    put_assertion(ctx, fresh)
    snap2 = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap2, 60,
                   daemon=ctx.daemon, what="alerts after the assertion "
                   "was renewed on disk")
    ctx.daemon.stop()
    settle(ctx, "octet")
    compare(ctx.expected(), delivered(ctx, "octet"))
    err = ctx.daemon.proc.stderr()
    for j in ctx.case["_jwts"]:
        if j in err or j.split(".")[2] in err:
            raise Fail("a federated assertion appeared in the log")
    grants = [x for x in (fake.log() or "").split("\n")
              if "/oauth2/" in x and " 200" in x]
    ctx.note("%d versions; federated sign-in refused while the assertion "
             "was expired, resumed once renewed on disk; PS256 accepted "
             "(%d tokens granted)" % (len(snap2), len(grants)))


# --------------------------------------------------------------------------
# graph_incidents: incidents = yes next to the tenant's alerts, in one
# output: 35 incidents in pages of 10 (page_size 10) with nextLink,
# updates, a merge, then a restart with more updates: every incident
# version exactly once, alerts too.

INC_T = [{"name": "i1", "label": "Incident customer", "source": "graph",
          "incidents": "yes"}]


def incident_versions(fake, tenant, label):
    v = fake.call("GET", "/_control/incident-versions", {"tenant": tenant})
    return set((label, i, iso_to_ms(lut)) for i, lut in v)


def incident_expected(ctx):
    return ctx.expected() | incident_versions(ctx.fake, "i1",
                                              "Incident customer")


def check_incidents(ctx):
    fake, sng = ctx.fake, ctx.sng
    fake.call("POST", "/_control/incidents", {"tenant": "i1", "n": 35})
    ctx.daemon.start()
    snap = incident_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 40,
                   daemon=ctx.daemon, what="alerts and 35 incidents")
    for i in (3, 9, 17, 30, 35):
        fake.call("POST", "/_control/incident-update",
                  {"tenant": "i1", "id": i})
    fake.call("POST", "/_control/incident-update",
              {"tenant": "i1", "id": 7, "into": 8})
    fake.update("i1", sorted(i for i, _ in fake.versions("i1"))[0])
    snap = incident_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 40,
                   daemon=ctx.daemon, what="incident updates and a merge")
    ctx.daemon.stop()
    # While it is down: more updates and new incidents.
    for i in (3, 12):
        fake.call("POST", "/_control/incident-update",
                  {"tenant": "i1", "id": i})
    fake.call("POST", "/_control/incidents", {"tenant": "i1", "n": 2})
    # Graph's $expand=alerts failing: the daemon lists alerts per incident.
    fake.fault("i1", "expand-500", 1)
    ctx.daemon.start()
    snap = incident_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 40,
                   daemon=ctx.daemon, what="versions made while stopped")
    # Two more polls: a duplicate would have come by now.
    n = len([x for x in (fake.log() or "").split("\n")
             if "/security/incidents" in x])
    wait_for(lambda: len([x for x in (fake.log() or "").split("\n")
                          if "/security/incidents" in x]) >= n + 2,
             20, "two more incident polls")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(incident_expected(ctx), dels)
    inc_ids = set(i for _, i, _ in incident_versions(fake, "i1", ""))
    incs = [d for d in dels if d.id in inc_ids]
    bad = []
    for d in incs:
        if d.ext.get("flexString1", "").find("/incidents/%s?" % d.id) < 0:
            bad.append("%s: flexString1 %r" % (d.id,
                                               d.ext.get("flexString1")))
    merged = [d for d in incs if d.id == "7" and d.ext.get("cs6") == "8"]
    if len(merged) != 1 or merged[0].act != "updated":
        bad.append("merged incident 7: %r" % [(d.act, d.ext.get("cs6"))
                                              for d in incs if d.id == "7"])
    acts = {}
    for d in sorted(incs, key=lambda d: d.rt):
        acts.setdefault(d.id, []).append(d.act)
    wrong = {i: a for i, a in acts.items()
             if a[0] != "created" or any(x != "updated" for x in a[1:])}
    if wrong:
        bad.append("act not created-then-updated: %s"
                   % list(wrong.items())[:3])
    if bad:
        raise Fail("; ".join(bad[:5]))
    # The incidents read without $expand carry the same alert ids.
    tok = graph_token(fake, "i1")
    for i in ("36", "37", "12"):
        req = urllib.request.Request(
            "%s/v1.0/security/incidents/%s/alerts" % (fake.url, i),
            headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=10) as r:
            ids = [a["id"] for a in json.loads(r.read())["value"]]
        last = max((d for d in incs if d.id == i), key=lambda d: d.rt)
        if last.ext.get("cs5") != ",".join(ids) or \
                last.ext.get("cn1") != str(len(ids)):
            raise Fail("incident %s read after the $expand failure: cs5=%r "
                       "cn1=%r, expected %r" % (i, last.ext.get("cs5"),
                                                last.ext.get("cn1"), ids))
    log = (fake.log() or "").split("\n")
    if not any("/security/incidents" in x and " 500" in x for x in log) or \
            not any("/security/incidents/36/alerts" in x for x in log):
        raise Fail("expected a 500 for $expand=alerts and then "
                   "/incidents/36/alerts in the fake's log")
    pages = [x for x in (fake.log() or "").split("\n")
             if "/security/incidents" in x and "/alerts " not in x]
    if any("top=10" not in x.replace("%24", "$") and "skiptoken" not in x
           for x in pages):
        raise Fail("incident requests without $top=10: %s" % pages[:3])
    ctx.note("%d incident versions (37 incidents, updates, a merge, a "
             "restart) and %d alert versions, each exactly once"
             % (len(incs), len(dels) - len(incs)))


def incident_alert_ids(fake, tenant, inc):
    """Every alert id of an incident, following the fake's nextLinks."""
    tok = graph_token(fake, tenant)
    url = "%s/v1.0/security/incidents/%s/alerts" % (fake.url, inc)
    ids = []
    while url:
        req = urllib.request.Request(
            url, headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=10) as r:
            page = json.loads(r.read())
        ids += [a["id"] for a in page["value"]]
        url = page.get("@odata.nextLink")
    return ids


def check_incident_alerts_paged(ctx):
    """$expand=alerts always answers 500, and /incidents/{id}/alerts comes
    in pages of one alert chained by @odata.nextLink: every incident event
    still names all of its alerts (cs5) and counts them (cn1)."""
    fake, sng = ctx.fake, ctx.sng
    fake.call("POST", "/_control/incidents", {"tenant": "i1", "n": 8})
    fake.fault("i1", "expand-500", 1000)
    ctx.daemon.start()
    snap = incident_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 40,
                   daemon=ctx.daemon, what="alerts and 8 incidents")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(incident_expected(ctx), dels)
    inc_ids = set(i for _, i, _ in incident_versions(fake, "i1", ""))
    incs = [d for d in dels if d.id in inc_ids]
    multi = 0
    for d in incs:
        ids = incident_alert_ids(fake, "i1", d.id)
        multi += len(ids) > 1
        if d.ext.get("cs5") != ",".join(ids) or \
                d.ext.get("cn1") != str(len(ids)):
            raise Fail("incident %s (alerts listed in pages of one): cs5=%r "
                       "cn1=%r, expected %r" % (d.id, d.ext.get("cs5"),
                                                d.ext.get("cn1"), ids))
    if multi == 0:
        raise Fail("no incident has more than one alert: nothing was paged")
    log = (fake.log() or "").split("\n")
    if not any("/alerts" in x and "skip=1" in x.replace("%24", "$")
               for x in log):
        raise Fail("the daemon never followed an alerts list's nextLink")
    ctx.note("%d incidents (%d with several alerts, listed one per page "
             "after $expand failed): every alert id and count right"
             % (len(incs), multi))


# --------------------------------------------------------------------------
# graph_switch: a tenant moved from source = mde to source = graph by a
# reload while an MDE page is in flight and alerts keep coming: the
# cursor and the dedupe set carry over (ids are equal), 0 lost, 0 dup.

SW_T = [{"name": "s1", "label": "Switching customer"},
        {"name": "s2", "label": "Staying customer"}]


def check_switch(ctx):
    from cases_lifecycle import hold, release, wait_held, ctl
    fake, sng = ctx.fake, ctx.sng
    ctx.daemon.start()
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="the backlog over MDE")
    ids = sorted(set(i for i, _ in fake.versions("s1")))
    for aid in ids[:5]:
        fake.update("s1", aid)
    fake.add_alerts("s1", 10)
    fake.add_alerts("s2", 3)
    base = hold(ctx, "s1", "alerts")
    wait_held(ctx, base, "s1", "alerts", daemon=ctx.daemon)

    def to_graph(name, lines):
        return lines + ["source = graph"] if name == "s1" else lines
    rewrite_tenants(ctx.conf, to_graph)
    rc, out, err = ctl(ctx, "reload", sock=os.path.join(ctx.dir, "ctl.sock"))
    if rc != 0 or "reload applied" not in out:
        raise Fail("reload to source = graph: exit %d %r" % (rc, out + err))
    release(ctx, "s1")
    for aid in ids[5:8]:
        fake.update("s1", aid)
    fake.add_alerts("s1", 6)

    def graph_polled():
        ctx.daemon.alive()
        return len(graph_requests(ctx, "s1")) >= 2
    wait_for(graph_polled, 20, "tenant s1 to poll alerts_v2")
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="every version after the move")
    polls = len(graph_requests(ctx, "s1"))
    wait_for(lambda: len(graph_requests(ctx, "s1")) >= polls + 2, 20,
             "two more alerts_v2 polls")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    # The fake sends Deprecation and Sunset on s1's answers: one warning
    # (a day), with both dates; none for s2.
    err = ctx.daemon.proc.stderr()
    warns = [x for x in err.split("\n") if "going away" in x]
    if len(warns) != 1 or "tenant s1" not in warns[0] or \
            "2027-01-01" not in warns[0] or \
            "01 Feb 2027" not in warns[0]:
        raise Fail("expected one Deprecation/Sunset warning for s1 with "
                   "both dates, got %r" % warns)
    mde_after = [x for x in (fake.log() or "").split("\n")
                 if " s1 " in x and "/api/alerts" in x]
    ctx.note("%d versions exactly once across the move (%d MDE requests, "
             "%d alerts_v2 requests for s1)"
             % (len(dels), len(mde_after), len(graph_requests(ctx, "s1"))))


# --------------------------------------------------------------------------
# graph_incidents_life: the incident reader under the ownership rule: its
# page held by the fake while a reload turns incidents off (the request is
# given up, the other tenant carries on), back on (every version once),
# and SIGTERM while a page is held (clean exit); a restart sends nothing
# twice.

IL_T = [{"name": "j1", "label": "Incidents life", "source": "graph",
         "incidents": "yes"},
        {"name": "o1", "label": "Other tenant", "source": "graph"}]


def il_expected(ctx):
    return ctx.expected() | incident_versions(ctx.fake, "j1",
                                              "Incidents life")


def il_set(ctx, on):
    def fix(name, lines):
        lines = [x for x in lines if not x.startswith("incidents")]
        return lines + ["incidents = %s" % ("yes" if on else "no")] \
            if name == "j1" else lines
    rewrite_tenants(ctx.conf, fix)
    rc, out, err = il_ctl(ctx, "reload")
    if rc != 0 or "reload applied" not in out:
        raise Fail("reload (incidents = %s): exit %d %r" % (on, rc,
                                                            out + err))


def il_ctl(ctx, *args):
    from cases_lifecycle import ctl
    return ctl(ctx, *args, sock=os.path.join(ctx.dir, "ctl.sock"))


def check_incidents_life(ctx):
    from cases_lifecycle import hold, release, wait_held
    fake, sng = ctx.fake, ctx.sng
    fake.call("POST", "/_control/incidents", {"tenant": "j1", "n": 12})
    base = hold(ctx, "j1", "alerts", match="security/incidents")
    ctx.daemon.start()
    i = wait_held(ctx, base, "j1", "alerts", daemon=ctx.daemon)
    il_set(ctx, False)
    wait_held(ctx, i, "j1", "alerts", daemon=ctx.daemon, state="cancelled")
    release(ctx, "j1")
    fake.add_alerts("o1", 3)
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="alerts while incidents are off")
    il_set(ctx, True)
    snap = il_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="incidents after turning on")
    fake.call("POST", "/_control/incident-update", {"tenant": "j1", "id": 4})
    snap = il_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="an incident update")
    base = hold(ctx, "j1", "alerts", match="security/incidents")
    fake.call("POST", "/_control/incident-update", {"tenant": "j1", "id": 5})
    wait_held(ctx, base, "j1", "alerts", daemon=ctx.daemon)
    ctx.daemon.stop()		# SIGTERM with the page held: exit 0
    release(ctx, "j1")
    fake.call("POST", "/_control/incidents", {"tenant": "j1", "n": 2})
    ctx.daemon.start()
    snap = il_expected(ctx)
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="incidents after the restart")
    n = len([x for x in (fake.log() or "").split("\n")
             if " j1 " in x and "/security/incidents" in x])
    wait_for(lambda: len([x for x in (fake.log() or "").split("\n")
                          if " j1 " in x and "/security/incidents" in x])
             >= n + 2, 20, "two more incident polls")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(il_expected(ctx), dels)
    ctx.note("%d versions exactly once over a held page cut by a reload "
             "and by SIGTERM" % len(dels))


CASES = [
    {
        "name": "graph_prefer_top",
        "doc": "source = graph with page_size 5000: $top clamped to 1000 "
               "(one notice, no 400), incidents to 50 (--once, 60 "
               "incidents), MDE keeps 5000; Prefer header gives Defender "
               "for Cloud alerts their real detectionSource",
        "fake": ["-t", "gp", "-t", "mp", "--alerts", "1100", "--seed", "141"],
        "tenants": PT_T,
        "daemon": {"page_size": "5000"},
        "outputs": [octet_tcp()],
        "check": check_prefer_top,
    },
    {
        "name": "graph_service_sources",
        "doc": "service_sources = microsoftDefenderForEndpoint: only "
               "Endpoint alerts, their status changes too, exactly once; "
               "an unfiltered Graph tenant gets every product",
        "fake": ["-t", "ge", "-t", "ga", "--alerts", "30", "--seed", "142"],
        "tenants": SS_T,
        "outputs": [octet_tcp()],
        "check": check_service_sources,
    },
    {
        "name": "graph_secretless",
        "doc": "client_assertion_file (federated JWT verified by the fake: "
               "issuer, subject, audience, expiry, signature) re-read for "
               "every token request, expired one refused then renewed "
               "without reload, 0640 file a config error; "
               "certificate_thumbprint = sha256 against a PS256-only fake",
        "fake": fake_tenants(SL_T) + ["--alerts", "8", "--seed", "143"],
        "tenants": SL_T,
        "outputs": [octet_tcp()],
        "check": with_setup(setup_secretless, check_secretless),
    },
    {
        "name": "graph_incidents",
        "doc": "incidents = yes: 37 incidents in nextLink pages of 10, "
               "updates, a merge (act=updated, cs6), a restart, "
               "$expand=alerts answering 500 (alerts per incident): every "
               "incident and alert version exactly once in one output",
        "fake": ["-t", "i1", "--alerts", "12", "--seed", "144"],
        "tenants": INC_T,
        "daemon": {"page_size": "10"},
        "outputs": [octet_tcp()],
        "check": check_incidents,
    },
    {
        "name": "graph_incident_alerts_paged",
        "doc": "incidents = yes with $expand=alerts failing and each "
               "incident's alert list in nextLink pages of one: every "
               "incident event names all its alerts (cs5) and their count "
               "(cn1)",
        "fake": ["-t", "i1", "--alerts", "12", "--seed", "145",
                 "--link-page", "1"],
        "tenants": INC_T,
        "outputs": [octet_tcp()],
        "check": check_incident_alerts_paged,
    },
    {
        "name": "graph_switch",
        "doc": "source mde -> graph by a reload while an MDE page is held "
               "and alerts and updates keep coming: 0 lost, 0 duplicate "
               "versions (cursor and dedupe set kept); Deprecation/Sunset "
               "answers warned about once, with the dates",
        "fake": fake_tenants(SW_T) + ["--alerts", "30", "--seed", "145",
                                      "--fault", "s1:deprecated"],
        "tenants": SW_T,
        "outputs": [octet_tcp()],
        "check": check_switch,
    },
    {
        "name": "graph_incidents_life",
        "doc": "incident page held by the fake while a reload turns "
               "incidents off (request given up, other tenant flows), on "
               "again, and SIGTERM: clean exit, every version once",
        "fake": fake_tenants(IL_T) + ["--alerts", "6", "--seed", "146"],
        "tenants": IL_T,
        "outputs": [octet_tcp()],
        "check": check_incidents_life,
    },
]
