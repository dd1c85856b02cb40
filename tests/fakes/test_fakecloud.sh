#!/bin/sh
# Smoke test of the fake cloud: tokens, alerts, filters, paging, errors,
# faults, rate limits and the control API.  Exits non-zero on a failure.
#
#   tests/fakes/test_fakecloud.sh [PATH-TO-FAKECLOUD]
#
# The default binary is $ALERTRELAY_BUILD/tests/fakes/fakecloud (build/...).

set -eu

fake=${1:-${ALERTRELAY_BUILD:-build}/tests/fakes/fakecloud}
[ -x "$fake" ] || { echo "not executable: $fake" >&2; exit 2; }
tmp=$(mktemp -d)
pids=

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || :; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# start NAME ARGS...: run a fake, wait for its port, set $port.
start() {
	name=$1
	shift
	"$fake" --port-file "$tmp/$name.port" "$@" >"$tmp/$name.out" \
	    2>"$tmp/$name.err" &
	pid=$!
	pids="$pids $pid"
	i=0
	while [ ! -s "$tmp/$name.port" ]; do
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "fakecloud $name did not start" >&2
			cat "$tmp/$name.err" >&2
			exit 1
		fi
		sleep 0.1
	done
	port=$(cat "$tmp/$name.port")
	grep -qx "port=$port" "$tmp/$name.out" || {
		echo "stdout lacks port=$port" >&2; exit 1; }
}

# stop PID NAME: SIGTERM must end it with status 0 (ASan leaks fail it).
stop() {
	kill -TERM "$1"
	if ! wait "$1"; then
		echo "fakecloud $2 did not exit cleanly" >&2
		cat "$tmp/$2.err" >&2
		exit 1
	fi
	pids=$(echo "$pids" | sed "s/ $1//")
}

start main -t contoso -t fabrikam --alerts 120 --seed 42 --nextlink \
    --limit-minute 40
main_pid=$pid
main_port=$port
start short -t t1 --alerts 5 --token-lifetime 1 --rate 20 \
    --late-fraction 0.5 --late-delay 1s --update-rate 2 --no-rate-limit
short_pid=$pid
short_port=$port

python3 - "$main_port" "$short_port" <<'EOF'
import base64, calendar, http.client, json, sys, time, urllib.parse

main_port, short_port = int(sys.argv[1]), int(sys.argv[2])
CLIENT = "00000000-0000-0000-0000-0000000000c1"
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
failures = 0

def check(cond, what):
    global failures
    print(("ok - " if cond else "FAIL - ") + what)
    if not cond:
        failures += 1

def req(port, method, path, body=None, token=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r, data

def jreq(*a, **k):
    st, r, data = req(*a, **k)
    return st, r, json.loads(data)

def token(port, tenant, secret=None, scope=MDE_SCOPE):
    return jreq(port, "POST", "/%s/oauth2/v2.0/token" % tenant,
        {"grant_type": "client_credentials", "client_id": CLIENT,
         "client_secret": secret or "secret-" + tenant, "scope": scope})

def claims(tok):
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))

def q(**params):
    return urllib.parse.urlencode(params)

# Tokens.
st, _, tj = token(main_port, "contoso")
check(st == 200 and tj["token_type"] == "Bearer", "token issued")
check(isinstance(tj["expires_in"], int) and tj["expires_in"] == 3599,
    "expires_in is the number 3599")
tok = tj["access_token"]
c = claims(tok)
check(tok.count(".") == 2 and c["tid"] == "contoso" and
    c["roles"] == ["Alert.Read.All"] and
    c["aud"] == "https://api.securitycenter.microsoft.com" and
    c["exp"] > time.time(), "token is a JWT with tid, roles, aud, exp")
st, _, e = token(main_port, "contoso", secret="wrong")
check(st == 401 and e["error"] == "invalid_client" and
    e["error_codes"] == [7000215] and
    e["error_description"].startswith("AADSTS7000215:") and
    all(k in e for k in ("trace_id", "correlation_id", "timestamp")),
    "wrong secret: 401 invalid_client AADSTS7000215")
st, _, e = token(main_port, "nosuch", secret="x")
check(st == 400 and e["error_codes"] == [90002], "unknown tenant: 90002")
st, _, e = token(main_port, "contoso", scope="https://api.securitycenter.microsoft.com")
check(st == 400 and e["error"] == "invalid_scope", "scope without /.default")

# Listing.
st, _, e = jreq(main_port, "GET", "/api/alerts")
check(st == 401 and e["error"]["code"] == "Unauthorized" and
    len(e["error"]["target"]) == 36, "no token: 401 Unauthorized with target")
st, _, d = jreq(main_port, "GET", "/api/alerts", token=tok)
v = d["value"]
check(st == 200 and d["@odata.context"].endswith("/api/$metadata#Alerts") and
    "@odata.nextLink" not in d and len(v) == 120, "120 alerts, one page")
keys = ["id", "incidentId", "investigationId", "assignedTo", "severity",
    "status", "classification", "determination", "investigationState",
    "detectionSource", "detectorId", "category", "threatFamilyName",
    "title", "description", "alertCreationTime", "firstEventTime",
    "lastEventTime", "lastUpdateTime", "resolvedTime", "machineId",
    "computerDnsName", "rbacGroupName", "aadTenantId", "threatName",
    "mitreTechniques", "relatedUser", "comments", "evidence"]
check(all(list(a) == keys for a in v), "every alert has the sample's keys")
check(all(a["evidence"] == [] and a["aadTenantId"] == "contoso" for a in v),
    "no evidence without $expand")

def ticks(s):
    frac = s[20:-1] if "." in s else ""
    t = calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))
    return int(t) * 10**7 + int((frac + "0000000")[:7])

luts = [ticks(a["lastUpdateTime"]) for a in v]
check(luts == sorted(luts), "ordered by lastUpdateTime asc")
digits = {len(a["lastUpdateTime"]) for a in v}
check(len(digits) > 3, "lastUpdateTime with varying fractional digits")
st, _, d = jreq(main_port, "GET", "/api/alerts?$top=2&$expand=evidence",
    token=tok)
ev = d["value"][0]["evidence"]
check(len(ev) == 3 and all(len(x) == 25 for x in ev),
    "$expand=evidence: 3 entries of 25 keys")

pivot = v[60]["lastUpdateTime"]
st, _, d = jreq(main_port, "GET", "/api/alerts?" +
    q(**{"$filter": "lastUpdateTime ge " + pivot}), token=tok)
check(len(d["value"]) == sum(1 for t in luts if t >= ticks(pivot)),
    "$filter lastUpdateTime ge (%20)")
st, _, d = jreq(main_port, "GET", "/api/alerts?$filter=lastUpdateTime+gt+" +
    pivot + "+and+lastUpdateTime+lt+" + v[90]["lastUpdateTime"], token=tok)
check(len(d["value"]) == sum(1 for t in luts
    if ticks(pivot) < t < ticks(v[90]["lastUpdateTime"])),
    "$filter gt ... and lt ... ('+' spaces)")
st, _, d = jreq(main_port, "GET", "/api/alerts?$orderby=lastUpdateTime+desc"
    "&$top=5&$skip=1", token=tok)
check([a["id"] for a in d["value"]] == [a["id"] for a in v[::-1][1:6]],
    "$orderby desc with $top and $skip")

ids, url, pages = [], "/api/alerts?$top=50", 0
while url:
    st, _, d = jreq(main_port, "GET", url, token=tok)
    pages += 1
    ids += [a["id"] for a in d["value"]]
    url = d.get("@odata.nextLink")
    if url:
        url = url[url.index("/api/"):]
check(pages == 3 and ids == [a["id"] for a in v], "--nextlink paging")

st, _, e = jreq(main_port, "GET", "/api/alerts?$top=10001", token=tok)
check(st == 400 and e["error"]["code"] == "ODataError", "$top over 10000")
st, _, e = jreq(main_port, "GET", "/api/alerts?$select=id", token=tok)
check(st == 400 and e["error"]["code"] == "ODataError", "unknown parameter")
st, _, e = jreq(main_port, "GET", "/api/alerts?$filter=lastUpdateTime+ge+"
    "2024-01-01T00:00:00.12345678Z", token=tok)
check(st == 400, "8 fractional digits rejected")

ftok = token(main_port, "fabrikam")[2]["access_token"]
st, _, d = jreq(main_port, "GET", "/api/alerts?$top=3", token=ftok)
check(all(a["aadTenantId"] == "fabrikam" for a in d["value"]) and
    not set(a["id"] for a in d["value"]) & set(ids),
    "the token's tenant decides whose alerts")

# Control: hostile strings go out exactly as they came in.
hostile = (b'{"title":"x\\u0000y \\ud800 a|b=c\\\\d\\ne","description":'
    b'"CEF:0|Evil|","computerDnsName":"h\xc3\xa9\\u2028st","zzExtra":[1,{}]}')
st, _, r = jreq(main_port, "POST", "/_control/alerts?tenant=contoso&n=1",
    body=hostile)
hid = r["ids"][0]
check(st == 200 and r["added"] == 1, "control: alert added")
st, _, raw = req(main_port, "GET", "/api/alerts/" + hid, token=tok)
check(st == 200 and b'"title":"x\\u0000y \\ud800 a|b=c\\\\d\\ne"' in raw and
    b'"computerDnsName":"h\xc3\xa9\\u2028st"' in raw and
    b'"zzExtra":[1,{}]' in raw, "hostile values re-emitted raw")
st, _, r = jreq(main_port, "POST", "/_control/update?tenant=contoso&id=" + hid)
new_lut = r["updated"][0][1]
st, _, vers = jreq(main_port, "GET", "/_control/versions?tenant=contoso")
mine = [x for x in vers if x[0] == hid]
check(len(vers) == 122 and len(mine) == 2 and mine[1][1] == new_lut and
    ticks(mine[1][1]) > ticks(mine[0][1]), "update makes a second version")
st, _, d = jreq(main_port, "GET", "/api/alerts?$orderby=lastUpdateTime+desc"
    "&$top=1", token=tok)
check(d["value"][0]["id"] == hid and d["value"][0]["status"] == "InProgress",
    "updated alert is newest, status InProgress")

# Faults.
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=429&arg=2")
st, r, e = jreq(main_port, "GET", "/api/alerts?$top=1", token=tok)
check(st == 429 and r.getheader("Retry-After") == "2" and
    e["error"]["code"] == "TooManyRequests", "429 with Retry-After: 2")
time.sleep(2.1)
st, _, _ = req(main_port, "GET", "/api/alerts?$top=1", token=tok)
check(st == 200, "200 after Retry-After")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=500&arg=2")
codes = [req(main_port, "GET", "/api/alerts?$top=1", token=tok)[0]
    for _ in range(3)]
check(codes == [500, 500, 200], "500 for the next 2 requests")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=badjson")
st, _, raw = req(main_port, "GET", "/api/alerts?$top=3", token=tok)
try:
    json.loads(raw)
    bad = False
except ValueError:
    bad = True
check(st == 200 and bad, "badjson: truncated body")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=string-expiry")
st, _, tj = token(main_port, "contoso")
check(tj["expires_in"] == "3599", "string-expiry: expires_in is a string")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=no-roles")
nr = token(main_port, "contoso")[2]["access_token"]
st, _, e = jreq(main_port, "GET", "/api/alerts", token=nr)
check("roles" not in claims(nr) and st == 403, "no-roles: token lacks roles, 403")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=unconsented")
st, _, e = token(main_port, "contoso")
check(st == 400 and e["error"] == "unauthorized_client" and
    e["error_codes"] == [700016], "unconsented: AADSTS700016")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=expired-secret&arg=1")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=unconsented&arg=0")
st, _, e = token(main_port, "contoso")
check(st == 401 and e["error_codes"] == [7000222], "expired secret: 7000222")
jreq(main_port, "POST", "/_control/fault?tenant=contoso&kind=clear")

# Documented rate limit (here --limit-minute 40): fabrikam has used 1 call.
codes = [req(main_port, "GET", "/api/alerts?$top=1", token=ftok)[0]
    for _ in range(40)]
st, r, _ = req(main_port, "GET", "/api/alerts?$top=1", token=ftok)
check(codes.count(200) == 39 and codes[-1] == 429 and st == 429 and
    int(r.getheader("Retry-After")) > 0, "per-tenant calls/minute limit")

# Graph.
gtok = token(main_port, "contoso", scope=GRAPH_SCOPE)[2]["access_token"]
gids, url, pages = [], "/v1.0/security/alerts_v2?" + q(**{"$top": 50,
    "$filter": "lastUpdateDateTime ge 2000-01-01T00:00:00Z"}), 0
while url:
    st, _, d = jreq(main_port, "GET", url, token=gtok)
    pages += 1
    gids += [a["id"] for a in d["value"]]
    url = d.get("@odata.nextLink")
    if url:
        url = url[url.index("/v1.0/"):]
check(pages == 3 and sorted(gids) == sorted(set(ids) | {hid}),
    "alerts_v2 nextLink paging covers every alert once")
check(d["value"][0]["@odata.type"] == "#microsoft.graph.security.alert" and
    d["value"][0]["status"] in ("new", "inProgress", "resolved") and
    isinstance(d["value"][0]["incidentId"], str), "Graph-shaped alert")
st, _, e = jreq(main_port, "GET", "/v1.0/security/alerts_v2", token=tok)
check(st == 401, "MDE token on Graph: 401")

# Stats and log.
st, _, s = jreq(main_port, "GET", "/_control/stats")
check(s["alerts_total"] == 241 and s["versions_total"] == 242 and
    s["tenants"]["contoso"]["versions"] == 122 and s["token_requests"] >= 10,
    "stats")
st, _, log = req(main_port, "GET", "/_control/log")
lines = log.decode().splitlines()
check(len(lines) == s["requests"] and
    any(l.split()[1:] == ["contoso", "GET", "/api/alerts?$top=1", "429"]
    for l in lines), "request log")

# Short-lived tokens, generated and late alerts.
st, _, tj = token(short_port, "t1")
stok = tj["access_token"]
check(tj["expires_in"] == 1, "--token-lifetime 1")
time.sleep(2.2)
st, _, e = jreq(short_port, "GET", "/api/alerts", token=stok)
check(st == 401 and "expired" in e["error"]["message"],
    "expired token: 401")
time.sleep(1)
st, _, s = jreq(short_port, "GET", "/_control/stats")
check(s["generated"] >= 40 and s["updated"] >= 2 and s["versions_total"] >=
    s["alerts_total"], "--rate and --update-rate generate and update")
st, _, vers = jreq(short_port, "GET", "/_control/versions?tenant=t1")
late = sum(1 for i in range(1, len(vers))
    if ticks(vers[i][1]) < ticks(vers[i - 1][1]))
check(late > 0, "late alerts become visible with older lastUpdateTime")
st, _, cur = jreq(short_port, "GET", "/_control/versions?tenant=t1&current=1")
check(len(cur) == s["alerts_total"] and set(map(tuple, cur)) <=
    set(map(tuple, vers)), "current versions are a subset of all versions")

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
EOF

stop "$main_pid" main
stop "$short_pid" short
echo "fakecloud smoke test passed"
