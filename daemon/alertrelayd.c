/*
 * alertrelayd: main.  Arguments, --check-config, the signals, and the
 * services around the relay core (relay.c): control socket, metrics,
 * systemd notify and cluster mode, started and stopped here and told of
 * reloads and stops through the relay's hooks.
 */
#include <sys/prctl.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-daemon.h>

#include "alertrelayd.h"

#define DEFAULT_CONFIG	"/etc/alertrelay/alertrelay.conf"
#define EXIT_USAGE	64
#define EXIT_CONFIG	78

struct options {
	const char	*config;
	bool		 check;
	bool		 once;
	enum log_target	 target;
	int		 verbose;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: alertrelayd [-c FILE] [--check-config] [--once] "
	    "[--log-target auto|journal|stderr] [-v] [--version] [--help]\n");
}

static int
parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "once", no_argument, NULL, 'o' },
		{ "log-target", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	 ch;

	o->config = DEFAULT_CONFIG;
	o->target = LOG_TARGET_AUTO;
	while ((ch = getopt_long(argc, argv, "c:v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'C':
			o->check = true;
			break;
		case 'o':
			o->once = true;
			break;
		case 'l':
			if (log_target_parse(optarg, &o->target) == -1) {
				fprintf(stderr, "alertrelayd: --log-target: "
				    "\"%s\" is not one of auto, journal, "
				    "stderr\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'v':
			o->verbose++;
			break;
		case 'V':
			printf("alertrelayd %s\n", AR_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "alertrelayd: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	return 0;
}

static struct config *
load_config(const char *path)
{
	struct conf_errors	 errs = { NULL, 0 };
	struct config		*conf;
	size_t			 i;

	if ((conf = conf_load(path, &errs)) != NULL)
		return conf;
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	fprintf(stderr, "alertrelayd: %zu configuration error%s in %s\n",
	    errs.n, errs.n == 1 ? "" : "s", path);
	conf_errors_clear(&errs);
	return NULL;
}

static bool
str_changed(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/* Move the control socket or metrics listener if their address changed. */
static void
reload_services(struct relay *r, const struct config *old)
{
	char	 err[512];

	if (str_changed(old->daemon.control_socket,
	    r->conf->daemon.control_socket) &&
	    ctl_start(r, err, sizeof(err)) == -1)
		log_warnx("control socket: %s", err);
	if (str_changed(old->daemon.metrics_listen,
	    r->conf->daemon.metrics_listen) &&
	    metrics_start(r, err, sizeof(err)) == -1)
		log_warnx("metrics: %s", err);
}

static void
main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct relay	*r = arg;

	if (sig == SIGHUP) {
		relay_reload(r);
		return;
	}
	if (r->stopping) {
		log_info("second signal: exiting now; spooled alerts are "
		    "kept on disk");
		event_base_loopbreak(r->base);
		return;
	}
	log_info("signal %d: stopping; delivering what is queued to connected "
	    "outputs for up to %ds (a second signal exits at once)", (int)sig,
	    STOP_DEADLINE_S);
	relay_stop(r);
}

/* The services' side of a reload and a stop (struct relay_hooks). */
static void
main_reloading(struct relay *r)
{
	sd_reloading(r);
}

static void
main_reload_applied(struct relay *r, const struct config *old)
{
	reload_services(r, old);
	if (r->cluster != NULL)
		cluster_reconcile(r);
}

static const struct relay_hooks main_hooks = {
	.reloading = main_reloading,
	.applied = main_reload_applied,
	.ready = sd_ready,
	.stopping = sd_stopping,
};

/* The control socket, metrics and the signals, once the relay is set up. */
static int
main_services(struct relay *r, struct event **sigs)
{
	static const int signo[3] = { SIGTERM, SIGINT, SIGHUP };
	char	 err[512];
	size_t	 i;

	if (ctl_start(r, err, sizeof(err)) == -1 ||
	    metrics_start(r, err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		return 1;
	}
	for (i = 0; i < nitems(signo); i++) {
		sigs[i] = evsignal_new(r->base, signo[i], main_signal_cb, r);
		evsignal_add(sigs[i], NULL);
	}
	return 0;
}

static int
main_run(struct relay *r)
{
	char	 err[512];

	relay_start(r);
	if (r->conf->cluster.enabled && !r->once &&
	    cluster_start(r, err, sizeof(err)) == -1) {
		log_warnx("cluster: %s", err);
		return 1;
	}
	sd_start(r);
	sd_ready(r);
	log_info("alertrelayd %s started: %zu tenants, %zu outputs",
	    AR_VERSION, r->ntenants, r->nsinks);
	event_base_dispatch(r->base);
	sd_stop(r);
	if (r->once) {
		log_info("--once: %llu alerts forwarded, %u tenant%s failed",
		    (unsigned long long)r->forwarded, r->once_failed,
		    r->once_failed == 1 ? "" : "s");
		return r->once_failed > 0 ? 1 : 0;
	}
	return 0;
}

/* Services first, then the relay and all it owns. */
static void
main_free(struct relay *r, struct event **sigs)
{
	size_t	 i;

	ctl_stop(r);
	metrics_stop(r);
	if (r->cluster != NULL)
		cluster_stop(r);
	for (i = 0; i < 3; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	relay_free(r);
}

/*
 * --check-config on a valid configuration: a short line per section
 * (SPEC: a one-line summary per section), then the verdict; with -v the
 * whole effective configuration instead (secrets redacted).
 */
static void
check_config_report(const struct config *conf, int verbose)
{
	conf_summary(conf, stdout, verbose > 0);
	printf("%s: configuration OK: %zu tenant%s, %zu output%s, %zu "
	    "notify section%s%s\n", conf->path, conf->ntenants,
	    conf->ntenants == 1 ? "" : "s", conf->noutputs,
	    conf->noutputs == 1 ? "" : "s", conf->nnotifies,
	    conf->nnotifies == 1 ? "" : "s",
	    conf->cluster.enabled ? ", cluster mode" : "");
}

int
main(int argc, char **argv)
{
	struct options	 o;
	struct config	*conf;
	struct relay	 r;
	struct event	*sigs[3] = { NULL, NULL, NULL };
	int		 rc;

	/* Secrets are read from here on: no core file may hold them. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&o, 0, sizeof(o));
	if ((rc = parse_args(argc, argv, &o)) != 0)
		return rc;
	log_init(o.target, o.verbose, "alertrelayd");
	signal(SIGPIPE, SIG_IGN);
	if ((conf = load_config(o.config)) == NULL)
		return EXIT_CONFIG;
	if (o.check) {
		check_config_report(conf, o.verbose);
		conf_free(conf);
		return 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		fatalx("curl_global_init failed");
	memset(&r, 0, sizeof(r));
	r.hooks = &main_hooks;
	if ((rc = relay_setup(&r, conf, o.once)) == 0 &&
	    (rc = main_services(&r, sigs)) == 0)
		rc = main_run(&r);
	else
		sd_notifyf(0, "STATUS=failed to start; see the log");
	main_free(&r, sigs);
	encode_cleanup();
	curl_global_cleanup();
	return rc;
}
