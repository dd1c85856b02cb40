"""Integration cases for e-mail notifications ([notify]) beyond the basic
`email` case of cases_workflows.py: which events a section mails
(events = alerts|incidents|both), and SMTP transactions in flight across
a reload and SIGTERM (the lifecycle matrix of issue 12), driven by
fakesmtp's --hold-file.  Loaded by harness.py (every cases_*.py exports
CASES)."""

import os
import re
import signal
import time

from harness import Fail, Proc, compare, tail, wait_delivered, wait_for
from cases import delivered, octet_tcp, settle
from cases_workflows import FakeSmtp, mail_ids, rewrite_tenants

INC_LINK = "https://security.microsoft.com/incidents/%s?tid=%s"


class HoldSmtp(FakeSmtp):
    """fakesmtp with --hold-file: while the file exists, the end of a
    message's DATA is not answered until release() (SIGUSR1); a message
    whose client goes away meanwhile is discarded, never stored."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.dir = os.path.join(ctx.dir, "mail")
        self.fail_file = os.path.join(ctx.dir, "smtp-fail")
        self.hold_file = os.path.join(ctx.dir, "smtp-hold")
        exe = os.path.join(ctx.suite.build, "tests", "fakes", "fakesmtp")
        if not os.access(exe, os.X_OK):
            raise Fail("%s is not built" % exe)
        self.proc = Proc(ctx.suite, "fakesmtp",
                         [exe, "-v", "-d", self.dir, "-p", "0",
                          "--fail-file", self.fail_file,
                          "--hold-file", self.hold_file], cwd=ctx.dir)

        def port():
            m = re.search(r"^port=(\d+)$", self.proc.stdout(), re.M)
            return int(m.group(1)) if m else None
        self.port = wait_for(port, 10, "fakesmtp to print port=")

    def count(self, what):
        return len(re.findall(r"^fakesmtp: info: %s " % what,
                              self.proc.stderr(), re.M))

    def hold(self):
        open(self.hold_file, "w").close()

    def wait_held(self, n, daemon):
        def held():
            daemon.alive()
            return self.count("held") >= n
        wait_for(held, 30, "fakesmtp to hold message %d" % n)

    def release(self):
        """Stop holding and answer every held message."""
        if os.path.exists(self.hold_file):
            os.unlink(self.hold_file)
        os.kill(self.proc.p.pid, signal.SIGUSR1)


def notify_section(name, port, to, extra=""):
    return ('\n[notify "%s"]\nsmtp_url = smtp://127.0.0.1:%d\n'
            'from = relay@mssp.example\nto = %s\nmin_severity = '
            'informational\nmax_per_hour = 1000\n%s'
            % (name, port, to, extra))


def envelope(m):
    return m["X-Envelope-To"]


def incident_mail_ids(m):
    return re.findall(r"/incidents/([^?\s]+)\?tid=", m.get_content())


# --------------------------------------------------------------------------
# notify_events: three [notify] sections on one daemon, one per value of
# events (the first one without the key: the default).

EV_T = [{"name": "n1", "label": "Notify customer", "source": "graph",
         "incidents": "yes"}]


def incident_polls(ctx):
    return len([x for x in (ctx.fake.log() or "").split("\n")
                if "/security/incidents" in x and " 200" in x])


def check_incident_mail(m, iid, label):
    body = m.get_content()
    want = re.compile(r"^\[alertrelay\] (Informational|Low|Medium|High) "
                      r"incident: Multi-stage incident %s on n1 \u2014 %s$"
                      % (iid, label))
    if not want.match(m["Subject"]):
        raise Fail("incident %s: subject %r" % (iid, m["Subject"]))
    sev = want.match(m["Subject"]).group(1)
    for s in ("Incident ID: %s" % iid, "Severity:    %s" % sev,
              "Tenant:      n1", "Customer:    %s" % label,
              "Incident:    Multi-stage incident %s on n1" % iid,
              "Status:", INC_LINK % (iid, "n1")):
        if s not in body:
            raise Fail("incident mail %s lacks %r:\n%s" % (iid, s, body))
    m2 = re.search(r"^Alerts:[ ]+(\d+)\s*$", body, re.M)
    if not m2 or not 1 <= int(m2.group(1)) <= 3:
        raise Fail("incident mail %s: no alert count (1..3):\n%s"
                   % (iid, body))


def check_events(ctx):
    smtp = HoldSmtp(ctx)
    with open(ctx.conf, "a") as f:
        f.write(notify_section("dflt", smtp.port, "alerts@mssp.example"))
        f.write(notify_section("inc", smtp.port, "inc@mssp.example",
                               "events = incidents\n"))
        f.write(notify_section("all", smtp.port, "all@mssp.example",
                               "events = both\n"))
    fake = ctx.fake
    alerts = fake.add_alerts("n1", 2, {"severity": "High"})["ids"]
    incs = fake.call("POST", "/_control/incidents",
                     {"tenant": "n1", "n": 2})["created"]
    d = ctx.daemon
    d.start()
    want = {"alerts@mssp.example": len(alerts),
            "inc@mssp.example": len(incs),
            "all@mssp.example": len(alerts) + len(incs)}

    def arrived():
        d.alive()
        got = [envelope(m) for m in smtp.mails()]
        return all(got.count(k) >= v for k, v in want.items())
    wait_for(arrived, 40, "the mails of the three sections")
    # Two more incident polls: anything else would have come by now.
    n = incident_polls(ctx)
    wait_for(lambda: d.alive() and incident_polls(ctx) >= n + 2, 30,
             "two more incident polls")
    d.stop()
    ms = smtp.mails()
    got = dict((k, [m for m in ms if envelope(m) == k]) for k in want)
    for k, v in want.items():
        if len(got[k]) != v:
            raise Fail("%s got %d mails, expected %d: %s"
                       % (k, len(got[k]), v,
                          [m["Subject"] for m in got[k]]))
    for m in got["alerts@mssp.example"]:
        if incident_mail_ids(m) or len(mail_ids(m)) != 1:
            raise Fail("the default section mailed something other than "
                       "an alert: %r" % m["Subject"])
    if sorted(i for m in got["alerts@mssp.example"]
              for i in mail_ids(m)) != sorted(alerts):
        raise Fail("default section: alerts %s mailed, expected %s"
                   % ([mail_ids(m) for m in got["alerts@mssp.example"]],
                      alerts))
    for k in ("inc@mssp.example", "all@mssp.example"):
        ims = [m for m in got[k] if incident_mail_ids(m)]
        if sorted(i for m in ims for i in incident_mail_ids(m)) != \
                sorted(incs):
            raise Fail("%s: incidents %s mailed, expected %s"
                       % (k, [incident_mail_ids(m) for m in ims], incs))
        for m in ims:
            check_incident_mail(m, incident_mail_ids(m)[0],
                                "Notify customer")
    if any(mail_ids(m) for m in got["inc@mssp.example"]):
        raise Fail("events = incidents mailed an alert")
    if sorted(i for m in got["all@mssp.example"] for i in mail_ids(m)) != \
            sorted(alerts):
        raise Fail("events = both: the alerts were not all mailed once")
    ctx.note("default: %d alert mails; incidents: %d incident mails; "
             "both: %d" % (len(alerts), len(incs), len(alerts) + len(incs)))


# --------------------------------------------------------------------------
# notify_life_*: the lifecycle matrix's SMTP row (issue 12).  A mail's
# SMTP transaction is held by fakesmtp after DATA while (a) a reload
# changes the section's recipients, (b) a reload removes the tenant whose
# alert the mail is about, (c) SIGTERM comes.  Decided and documented in
# alertrelay.conf(5): (a) the held transaction is given up (logged) and
# the mail sent again to the new recipients only; (b) mails already queued
# for a removed tenant are still sent, once; (c) the transaction is given
# up (logged), the daemon exits within 1 s and the next start sends the
# mail, once.  In every cell each alert reaches syslog exactly once.

LIFE_T = [{"name": "v", "label": "Victim customer"},
          {"name": "o", "label": "Other customer"}]
OLD_TO, NEW_TO = "old@mssp.example", "new@mssp.example"


class LifeCell:
    def __init__(self, ctx):
        self.ctx = ctx
        self.smtp = HoldSmtp(ctx)
        with open(ctx.conf, "a") as f:
            f.write(notify_section("soc", self.smtp.port, OLD_TO))
        self.ids = {t["name"]: ctx.fake.add_alerts(
            t["name"], 1, {"severity": "High"})["ids"] for t in LIFE_T}
        self.smtp.hold()
        self.d = ctx.daemon
        self.d.start()
        self.smtp.wait_held(1, self.d)
        # Every alert forwarded (so queued for mail) before the transition.
        snap = ctx.expected()
        wait_delivered(ctx.suite, ctx.sng, "octet", lambda: snap, 30,
                       daemon=self.d, what="both tenants' alerts")

    def all_ids(self):
        return sorted(i for v in self.ids.values() for i in v)

    def reload(self, edit):
        n = self.d.proc.stderr().count("reload applied")
        edit()
        self.d.proc.p.send_signal(signal.SIGHUP)
        wait_for(lambda: self.d.alive() and
                 self.d.proc.stderr().count("reload applied") > n, 20,
                 "the reload to be applied")

    def given_up(self, why):
        """The daemon gave the held transaction up: the fake saw the
        connection go with the message unanswered."""
        wait_for(lambda: self.d.alive() and
                 self.smtp.count("discarded") >= 1, 15, why)

    def wait_mailed(self, ids):
        def done():
            self.d.alive()
            got = [i for m in self.smtp.mails() for i in mail_ids(m)]
            return all(i in got for i in ids)
        wait_for(done, 30, "the mails of %s" % ids)

    def syslog_once(self):
        settle(self.ctx, "octet")
        compare(self.ctx.expected(), delivered(self.ctx, "octet"))

    def mails_once(self, ids, to):
        ms = self.smtp.mails()
        got = sorted(i for m in ms for i in mail_ids(m))
        if got != sorted(ids):
            raise Fail("mailed %s, expected each of %s once" % (got, ids))
        bad = [(m["X-Envelope-To"], m["To"]) for m in ms
               if m["X-Envelope-To"] != to or to not in m["To"]]
        if bad:
            raise Fail("mails went to %s, expected only %s" % (bad, to))


def check_life_reconfig(ctx):
    c = ctx.cell = LifeCell(ctx)

    def new_recipients():
        text = open(ctx.conf).read()
        with open(ctx.conf, "w") as f:
            f.write(text.replace("to = " + OLD_TO, "to = " + NEW_TO))
    c.reload(new_recipients)
    c.given_up("the mail in flight to the old recipients to be given up "
               "after the reload changed them")
    if "sending it again with the new settings" not in c.d.proc.stderr():
        raise Fail("no log line says the mail in flight was given up for "
                   "the new settings:\n%s" % tail(c.d.proc.stderr()))
    c.smtp.wait_held(2, c.d)       # sent again, under the new settings
    c.smtp.release()
    c.wait_mailed(c.all_ids())
    c.syslog_once()
    c.d.stop()
    c.mails_once(c.all_ids(), NEW_TO)
    ctx.note("held mail given up on the reload, sent once to the new "
             "recipients only; syslog exactly once")


def check_life_remove(ctx):
    c = ctx.cell = LifeCell(ctx)
    c.reload(lambda: rewrite_tenants(
        ctx.conf, lambda name, lines: [] if name == "v" else lines))
    c.smtp.release()
    c.wait_mailed(c.all_ids())
    c.syslog_once()
    c.d.stop()
    c.mails_once(c.all_ids(), OLD_TO)
    ctx.note("the mail queued for the removed tenant was sent once; "
             "syslog exactly once")


def check_life_sigterm(ctx):
    c = ctx.cell = LifeCell(ctx)
    settle(ctx, "octet")
    t0 = time.monotonic()
    c.d.stop()
    took = time.monotonic() - t0
    if took > 1.0:
        raise Fail("SIGTERM with an SMTP transaction held took %.1fs "
                   "(more than 1 s)" % took)
    err = c.d.proc.stderr()
    if not re.search(r"notify soc: .*given up: alertrelayd is stopping", err):
        raise Fail("no log line says the mail in flight was given up on "
                   "SIGTERM:\n%s" % tail(err))
    wait_for(lambda: c.smtp.count("discarded") >= 1, 10,
             "fakesmtp to see the held transaction go")
    c.smtp.release()
    if c.smtp.mails():
        raise Fail("a mail given up on SIGTERM was stored")
    c.d.start()
    c.wait_mailed(c.all_ids())
    c.syslog_once()
    c.d.stop()
    c.mails_once(c.all_ids(), OLD_TO)
    ctx.note("SIGTERM in %.2fs with an SMTP transaction held; the mail "
             "sent once after the restart; syslog exactly once" % took)


CASES = [
    {
        "name": "notify_events",
        "doc": "[notify] events: the default mails alerts only, "
               "events = incidents only incidents (id, title, severity, "
               "status, tenant, link, alert count), events = both both",
        "fake": ["-t", "n1", "--seed", "161"],
        "tenants": EV_T,
        "outputs": [octet_tcp()],
        "check": check_events,
    },
    {
        "name": "notify_life_reconfig",
        "quick": True,
        "doc": "an SMTP transaction held after DATA while a reload changes "
               "the recipients: given up (logged), sent once to the new "
               "recipients only; syslog exactly once",
        "fake": ["-t", "v", "-t", "o"],
        "tenants": LIFE_T,
        "outputs": [octet_tcp()],
        "check": check_life_reconfig,
    },
    {
        "name": "notify_life_remove",
        "quick": True,
        "doc": "an SMTP transaction held while a reload removes the "
               "tenant: the queued mail is still sent, once",
        "fake": ["-t", "v", "-t", "o"],
        "tenants": LIFE_T,
        "outputs": [octet_tcp()],
        "check": check_life_remove,
    },
    {
        "name": "notify_life_sigterm",
        "quick": True,
        "doc": "an SMTP transaction held at SIGTERM: exit within 1 s, "
               "given up with a log line, sent once after the restart",
        "fake": ["-t", "v", "-t", "o"],
        "tenants": LIFE_T,
        "outputs": [octet_tcp()],
        "check": check_life_sigterm,
    },
]
