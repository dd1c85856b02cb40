/* Unit tests for the Graph policy helpers: $top maxima, service_sources. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alert.h"
#include "graph.h"

#define S(x)	(x), sizeof(x) - 1

/* page_size is clamped per endpoint; what fits stays as it is. */
static void
test_top_clamp(void **state)
{
	assert_int_equal(graph_top_max(GRAPH_INCIDENTS), 50);
	assert_int_equal(graph_top_max(GRAPH_ALERTS_V2), 1000);
	assert_int_equal(graph_top_clamp(GRAPH_INCIDENTS, 1000), 50);
	assert_int_equal(graph_top_clamp(GRAPH_INCIDENTS, 51), 50);
	assert_int_equal(graph_top_clamp(GRAPH_INCIDENTS, 50), 50);
	assert_int_equal(graph_top_clamp(GRAPH_INCIDENTS, 10), 10);
	assert_int_equal(graph_top_clamp(GRAPH_INCIDENTS, 0), 50);
	assert_int_equal(graph_top_clamp(GRAPH_ALERTS_V2, 10000), 1000);
	assert_int_equal(graph_top_clamp(GRAPH_ALERTS_V2, 1000), 1000);
	assert_int_equal(graph_top_clamp(GRAPH_ALERTS_V2, 1), 1);
	assert_string_equal(graph_path(GRAPH_INCIDENTS),
	    "/v1.0/security/incidents");
	assert_string_equal(graph_path(GRAPH_ALERTS_V2),
	    "/v1.0/security/alerts_v2");
}

static void
test_source_pass(void **state)
{
	const char	*ep = "microsoftDefenderForEndpoint";

	/* No list, or an empty one: everything passes. */
	assert_true(graph_source_pass(NULL, S("dataLossPrevention")));
	assert_true(graph_source_pass("", S("dataLossPrevention")));
	assert_true(graph_source_pass(" , ", NULL, 0));

	assert_true(graph_source_pass(ep, S("microsoftDefenderForEndpoint")));
	assert_true(graph_source_pass(ep, S("MicrosoftDefenderForEndpoint")));
	assert_false(graph_source_pass(ep, S("microsoftDefenderForIdentity")));
	assert_false(graph_source_pass(ep, S("microsoftDefenderForEndpoin")));
	assert_false(graph_source_pass(ep, S("microsoftDefenderForEndpointX")));
	assert_false(graph_source_pass(ep, "microsoftDefenderForEndpoint\0",
	    29));
	assert_false(graph_source_pass(ep, NULL, 0));

	assert_true(graph_source_pass(" microsoftDefenderForIdentity ,\t"
	    "microsoftDefenderForEndpoint\t", S("microsoftDefenderForEndpoint")));
	assert_true(graph_source_pass("microsoftDefenderForIdentity,"
	    "microsoftDefenderForEndpoint", S("microsoftDefenderForIdentity")));
	assert_false(graph_source_pass("microsoftDefenderForIdentity,"
	    "microsoftDefenderForEndpoint", S("microsoftDefenderForOffice365")));
	/* Alerts without serviceSource count as "unknown". */
	assert_true(graph_source_pass("unknown", NULL, 0));
	assert_true(graph_source_pass("Unknown", S("")));
	assert_true(graph_source_pass("unknown", S("unknown")));
}

/* alerts_v2 alerts keep serviceSource for the filter (MDE ones have none). */
static void
test_alert_source(void **state)
{
	static const char json[] = "{\"id\":\"a1\",\"lastUpdateDateTime\":"
	    "\"2024-01-01T00:00:00Z\",\"serviceSource\":"
	    "\"microsoftDefenderForOffice365\",\"detectionSource\":"
	    "\"microsoftDefenderForOffice365\"}";
	struct alert	 a;
	char		 err[128];

	alert_init(&a);
	assert_int_equal(alert_parse(&a, SRC_GRAPH, json, sizeof(json) - 1,
	    err, sizeof(err)), 0);
	assert_int_equal(a.service_source.len, 29);
	assert_false(graph_source_pass("microsoftDefenderForEndpoint",
	    a.service_source.p, a.service_source.len));
	assert_true(graph_source_pass("microsoftDefenderForOffice365",
	    a.service_source.p, a.service_source.len));
	alert_clear(&a);
}

static void
test_source_known(void **state)
{
	assert_true(graph_source_known("microsoftDefenderForEndpoint"));
	assert_true(graph_source_known("dataLossPrevention"));
	assert_true(graph_source_known("azureadidentityprotection"));
	assert_true(graph_source_known("microsoftDefenderForCloud"));
	assert_false(graph_source_known("microsoftDefenderForEndpoints"));
	assert_false(graph_source_known("antivirus"));	/* a detectionSource */
	assert_false(graph_source_known(""));
}

/* One alerts URL for the poller and check-tenant. */
static void
test_alerts_url(void **state)
{
	struct buf	 b;

	buf_init(&b);
	graph_alerts_url(&b, "https://api.example", false);
	assert_string_equal(b.data, "https://api.example/api/alerts");
	buf_reset(&b);
	graph_alerts_url(&b, "https://graph.example", true);
	assert_string_equal(b.data,
	    "https://graph.example/v1.0/security/alerts_v2");
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_top_clamp),
		cmocka_unit_test(test_source_pass),
		cmocka_unit_test(test_alert_source),
		cmocka_unit_test(test_source_known),
		cmocka_unit_test(test_alerts_url),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
