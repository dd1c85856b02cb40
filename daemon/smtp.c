/* smtp: one mail submission over SMTP with libcurl, on a worker thread. */
/*
 * libcurl waits for the reply to the end of DATA, and to QUIT, in a
 * blocking loop even under the multi interface (curl issue 8555, "More
 * non-blocking" in its TODO): on the relay's multi handle a mail server
 * that takes its time stalled every tenant, reloads and SIGTERM for up to
 * the transfer timeout.  So each submission runs curl_easy_perform on a
 * thread of its own, with every signal blocked, and reports to the loop
 * through a pipe.  The thread touches nothing but its job; smtp_cancel
 * shuts the job's socket down (the thread's poll returns at once), joins
 * the thread and frees the job without calling back.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"
#include "smtp.h"
#include "util.h"

struct smtp_job {
	CURL			*easy;
	struct curl_slist	*rcpt;
	char			*url, *mail_from, *username, *password;
	char			*ca_file;
	char			*body;
	size_t			 body_len, off;
	int64_t			 timeout_ms;
	char			 errbuf[CURL_ERROR_SIZE];
	pthread_t		 thread;
	pthread_mutex_t		 mtx;		/* sock and cancelled */
	curl_socket_t		 sock;		/* CURL_SOCKET_BAD: none */
	bool			 cancelled;
	int			 pipe[2];
	struct event		*ev;
	CURLcode		 rc;		/* set by the thread */
	long			 status;
	int64_t			 started_ms;
	smtp_done_cb		 done_cb;
	void			*arg;
};

static size_t
smtp_read_cb(char *p, size_t sz, size_t n, void *arg)
{
	struct smtp_job	*j = arg;
	size_t		 len = sz * n, left = j->body_len - j->off;

	if (len > left)
		len = left;
	memcpy(p, j->body + j->off, len);
	j->off += len;
	return len;
}

/* Open the job's socket, remembered so smtp_cancel can shut it down. */
static curl_socket_t
smtp_open_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct smtp_job	*j = arg;
	curl_socket_t	 fd;

	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (fd == -1)
		return CURL_SOCKET_BAD;
	pthread_mutex_lock(&j->mtx);
	if (j->cancelled) {
		close(fd);
		fd = CURL_SOCKET_BAD;
	} else
		j->sock = fd;
	pthread_mutex_unlock(&j->mtx);
	return fd;
}

static int
smtp_close_cb(void *arg, curl_socket_t fd)
{
	struct smtp_job	*j = arg;

	pthread_mutex_lock(&j->mtx);
	if (j->sock == fd)
		j->sock = CURL_SOCKET_BAD;
	pthread_mutex_unlock(&j->mtx);
	return close(fd);
}

/* Called while libcurl waits, also in its blocking loops: cancelled? */
static int
smtp_progress_cb(void *arg, curl_off_t a, curl_off_t b, curl_off_t c,
    curl_off_t d)
{
	struct smtp_job	*j = arg;
	bool		 stop;

	pthread_mutex_lock(&j->mtx);
	stop = j->cancelled;
	pthread_mutex_unlock(&j->mtx);
	return stop;
}

/* Is the URL's host 127.0.0.0/8, ::1 or localhost? */
static int
smtp_loopback_url(const char *url)
{
	CURLU	*u = curl_url();
	char	*host = NULL;
	int	 lo = 0;

	if (u != NULL && curl_url_set(u, CURLUPART_URL, url,
	    CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		lo = host_is_loopback(host);
	curl_free(host);
	curl_url_cleanup(u);
	return lo;
}

static void
smtp_setup(struct smtp_job *j)
{
	CURL		*e = j->easy;

	curl_easy_setopt(e, CURLOPT_URL, j->url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e, CURLOPT_MAIL_FROM, j->mail_from);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, j->rcpt);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, smtp_read_cb);
	curl_easy_setopt(e, CURLOPT_READDATA, j);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->body_len);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, smtp_open_cb);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, j);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, smtp_close_cb);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, j);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, smtp_progress_cb);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, j);
	curl_easy_setopt(e, CURLOPT_USE_SSL, smtp_loopback_url(j->url) ?
	    (long)CURLUSESSL_TRY : (long)CURLUSESSL_ALL);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	if (j->ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, j->ca_file);
	if (j->username != NULL) {
		curl_easy_setopt(e, CURLOPT_USERNAME, j->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, j->password);
	}
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
	/* A peer trickling under 1 KiB/s for 30 s is given up on. */
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(j->timeout_ms < 15000 ? j->timeout_ms : 15000));
}

/* The worker: the whole transaction, QUIT included, then one byte. */
static void *
smtp_thread(void *arg)
{
	struct smtp_job	*j = arg;
	ssize_t		 n;

	j->rc = curl_easy_perform(j->easy);
	curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
	curl_easy_cleanup(j->easy);
	j->easy = NULL;
	do
		n = write(j->pipe[1], "", 1);
	while (n == -1 && errno == EINTR);
	return NULL;
}

static void
smtp_job_free(struct smtp_job *j)
{
	if (j->ev != NULL)
		event_free(j->ev);
	close(j->pipe[0]);
	close(j->pipe[1]);
	pthread_mutex_destroy(&j->mtx);
	curl_slist_free_all(j->rcpt);
	secret_free(j->password);
	free(j->username);
	free(j->ca_file);
	free(j->mail_from);
	free(j->url);
	free(j->body);
	free(j);
}

/* The thread is done: join it and report from the loop. */
static void
smtp_finished_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_job		*j = arg;
	struct smtp_result	 res;

	pthread_join(j->thread, NULL);
	memset(&res, 0, sizeof(res));
	res.status = (int)j->status;
	res.failed = j->rc != CURLE_OK;
	res.error = j->rc == CURLE_OK ? NULL : j->errbuf[0] != '\0' ?
	    j->errbuf : curl_easy_strerror(j->rc);
	res.elapsed_ms = mono_ms() - j->started_ms;
	j->done_cb(&res, j->arg);
	smtp_job_free(j);
}

/* Copy what the transaction needs into a new job. */
static struct smtp_job *
smtp_job_new(const struct smtp_opts *o)
{
	struct smtp_job	*j = xcalloc(1, sizeof(*j));
	char		*to;
	size_t		 i;

	j->url = xstrdup(o->url);
	xasprintf(&j->mail_from, "<%s>", o->mail_from);
	for (i = 0; i < o->nrcpt; i++) {
		xasprintf(&to, "<%s>", o->rcpt[i]);
		j->rcpt = curl_slist_append(j->rcpt, to);
		free(to);
	}
	if (o->username != NULL) {
		j->username = xstrdup(o->username);
		j->password = xstrdup(o->password != NULL ? o->password : "");
	}
	if (o->ca_file != NULL)
		j->ca_file = xstrdup(o->ca_file);
	j->body = xmalloc(o->body_len + 1);
	memcpy(j->body, o->body, o->body_len);
	j->body_len = o->body_len;
	j->timeout_ms = o->timeout_ms;
	j->done_cb = o->done_cb;
	j->arg = o->arg;
	j->sock = CURL_SOCKET_BAD;
	pthread_mutex_init(&j->mtx, NULL);
	return j;
}

struct smtp_job *
smtp_submit(struct event_base *base, const struct smtp_opts *o)
{
	struct smtp_job	*j = smtp_job_new(o);
	sigset_t	 all, old;
	int		 rc;

	if (pipe2(j->pipe, O_CLOEXEC) == -1)
		fatal("pipe2");
	if ((j->easy = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	smtp_setup(j);
	j->ev = event_new(base, j->pipe[0], EV_READ, smtp_finished_cb, j);
	event_add(j->ev, NULL);
	j->started_ms = mono_ms();
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&j->thread, NULL, smtp_thread, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		fatal("pthread_create");
	}
	return j;
}

void
smtp_cancel(struct smtp_job *j)
{
	if (j == NULL)
		return;
	pthread_mutex_lock(&j->mtx);
	j->cancelled = true;
	if (j->sock != CURL_SOCKET_BAD)
		shutdown(j->sock, SHUT_RDWR);
	pthread_mutex_unlock(&j->mtx);
	pthread_join(j->thread, NULL);
	smtp_job_free(j);
}
