"""Integration cases for Microsoft Graph done right (issue 14): the
Prefer: include-unknown-enum-members header (newer products keep their
real serviceSource/detectionSource), the $top clamp of alerts_v2 with its
start-up notice, and the service_sources filter applied after dedupe.
Loaded by harness.py (every cases_*.py exports CASES)."""

import json
import time
import urllib.parse
import urllib.request

from harness import (CLIENT_ID, Fail, compare, wait_delivered)
from cases import delivered, octet_tcp, once, settle

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

PT_T = [{"name": "gp", "label": "Graph prefer", "source": "graph"},
        {"name": "mp", "label": "MDE tenant"}]


def check_prefer_top(ctx):
    err = once(ctx, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    # $top: Graph never asked for more than 1000, so never answered 400.
    reqs = graph_requests(ctx, "gp")
    bad = [r for r in reqs if r[0] != 200]
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


CASES = [
    {
        "name": "graph_prefer_top",
        "doc": "source = graph with page_size 5000: $top clamped to 1000 "
               "(one notice, no 400), MDE keeps 5000; Prefer header gives "
               "Defender for Cloud alerts their real detectionSource",
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
]
