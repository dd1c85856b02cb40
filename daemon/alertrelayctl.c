/*
 * alertrelayctl: the operator's client for alertrelayd's control socket
 * (the protocol is described at the top of ctl.c).
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_SOCKET	"/run/alertrelay/control.sock"
#define EXIT_FAILED	1
#define EXIT_USAGE	64
#define EXIT_UNAVAIL	69
#define MAX_REQUEST	4096

static const char *progname = "alertrelayctl";

static void
usage(FILE *f)
{
	fprintf(f, "usage: %s [-s SOCKET] command\n"
	    "commands:\n"
	    "  status [--json]          tenants, outputs and counters\n"
	    "  reload                   re-read the configuration\n"
	    "  check-tenant NAME        test the tenant's credentials and "
	    "permissions\n"
	    "  cursor show NAME         print the tenant's cursor\n"
	    "  cursor set NAME TIME     move the cursor (ISO 8601 UTC)\n"
	    "  backfill NAME FROM TO    replay [FROM, TO) without moving the "
	    "cursor\n"
	    "default socket: %s\n", progname, DEFAULT_SOCKET);
}

/* Check the command's words; 0 when they make a valid request. */
static int
check_command(int argc, char **argv)
{
	const char	*c = argv[0];

	if (strcmp(c, "status") == 0)
		return argc == 1 || (argc == 2 &&
		    strcmp(argv[1], "--json") == 0) ? 0 : -1;
	if (strcmp(c, "reload") == 0)
		return argc == 1 ? 0 : -1;
	if (strcmp(c, "check-tenant") == 0)
		return argc == 2 ? 0 : -1;
	if (strcmp(c, "cursor") == 0)
		return (argc == 3 && strcmp(argv[1], "show") == 0) ||
		    (argc == 4 && strcmp(argv[1], "set") == 0) ? 0 : -1;
	if (strcmp(c, "backfill") == 0)
		return argc == 4 ? 0 : -1;
	return -1;
}

/* The request line; words must not hold blanks or control characters. */
static int
build_request(int argc, char **argv, struct buf *req)
{
	const char	*p;
	int		 i;

	for (i = 0; i < argc; i++) {
		if (argv[i][0] == '\0')
			return -1;
		for (p = argv[i]; *p != '\0'; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f)
				return -1;
		buf_addf(req, "%s%s", i ? " " : "", argv[i]);
	}
	buf_addc(req, '\n');
	return req->len > MAX_REQUEST ? -1 : 0;
}

static int
connect_socket(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "%s: socket path %s is too long\n", progname,
		    path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fprintf(stderr, "%s: socket: %s\n", progname, strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno == EACCES || errno == EPERM)
			fprintf(stderr, "%s: cannot connect to %s: %s; run as "
			    "root or as alertrelayd's user\n", progname, path,
			    strerror(errno));
		else
			fprintf(stderr, "%s: cannot connect to %s: %s; is "
			    "alertrelayd running?\n", progname, path,
			    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct reader {
	bool	 tty;		/* stdout is a terminal */
	bool	 progress;	/* a progress line is showing */
	int	 status;	/* from the "x" line, -1 until then */
};

/* Handle one "TAG TEXT" line from the daemon. */
static void
handle_line(struct reader *rd, char *line)
{
	char	 tag = line[0];
	char	*text = line[1] == ' ' ? line + 2 : line + 1;

	if (rd->progress && tag != 'p') {
		fputs("\n", stdout);
		rd->progress = false;
	}
	switch (tag) {
	case 'o':
		printf("%s\n", text);
		break;
	case 'e':
		fflush(stdout);
		fprintf(stderr, "%s\n", text);
		break;
	case 'p':
		if (rd->tty) {
			printf("\r\033[K%s", text);
			rd->progress = true;
		} else
			printf("%s\n", text);
		break;
	case 'x':
		rd->status = atoi(text);
		break;
	default:
		break;		/* a newer daemon's tag */
	}
	fflush(stdout);
}

/* Read and show the answer; returns the exit status. */
static int
read_answer(int fd)
{
	struct reader	 rd = { isatty(STDOUT_FILENO), false, -1 };
	struct buf	 in;
	char		 chunk[8192], *nl, *start;
	ssize_t		 n;
	size_t		 off;

	buf_init(&in);
	for (;;) {
		if ((n = read(fd, chunk, sizeof(chunk))) == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "%s: reading the answer: %s\n",
			    progname, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		buf_add(&in, chunk, (size_t)n);
		off = 0;
		while ((nl = memchr(in.data + off, '\n', in.len - off)) !=
		    NULL) {
			start = in.data + off;
			*nl = '\0';
			handle_line(&rd, start);
			off = (size_t)(nl - in.data) + 1;
		}
		memmove(in.data, in.data + off, in.len - off);
		buf_truncate(&in, in.len - off);
		if (rd.status != -1)
			break;
	}
	buf_clear(&in);
	if (rd.progress)
		fputs("\n", stdout);
	if (rd.status == -1) {
		fprintf(stderr, "%s: alertrelayd closed the connection before "
		    "the answer was complete\n", progname);
		return EXIT_FAILED;
	}
	return rd.status;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char	*path = DEFAULT_SOCKET;
	struct buf	 req;
	int		 ch, fd, rc;

	while ((ch = getopt_long(argc, argv, "+s:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("alertrelayctl %s\n", AR_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	buf_init(&req);
	if (argc == 0 || check_command(argc, argv) == -1 ||
	    build_request(argc, argv, &req) == -1) {
		usage(stderr);
		buf_clear(&req);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((fd = connect_socket(path)) == -1) {
		buf_clear(&req);
		return EXIT_UNAVAIL;
	}
	/* A refused request may be answered before it is fully sent. */
	if (write_all(fd, req.data, req.len) == -1 && errno != EPIPE &&
	    errno != ECONNRESET) {
		fprintf(stderr, "%s: sending the request to %s: %s\n",
		    progname, path, strerror(errno));
		close(fd);
		buf_clear(&req);
		return EXIT_FAILED;
	}
	buf_clear(&req);
	rc = read_answer(fd);
	close(fd);
	return rc;
}
