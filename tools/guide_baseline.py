"""The approach of Guance's own PagerDuty guide (CONTRACT.md section 4), driven over the
same PagerDuty stand-in with the same events, for `make bench` to compare against.

For every event: build the guide's dict (df_title as summary, df_status unchanged as
severity, a fixed source, no dedup_key, always "trigger"), then one `requests.post` with
a new connection, no retry and no timeout, and print the status and body.

Usage: python tools/guide_baseline.py EVENTS_URL ROUTING_KEY COUNT GUANCE_EVENT_JSON...
Prints one JSON object with the measurements on the last line.
"""

import json
import resource
import sys
import time

started = time.perf_counter()
import requests  # noqa: E402  (its import is part of the guide's start-up cost)

url, routing_key, count, *files = sys.argv[1:]
events = [json.load(open(f)) for f in files]


def guide_payload(event):
    # As the guide builds it.
    return {
        "payload": {
            "summary": event.get("df_title"),
            "severity": event.get("df_status"),
            "source": "Guance",
            "custom_details": {
                "message": event.get("df_message"),
                "workspace_name": event.get("workspace_name"),
                "Result": event.get("Result"),
                "date": event.get("date"),
            },
        },
        "routing_key": routing_key,
        "event_action": "trigger",
        "client": "Guance",
        "client_url": event.get("df_event_link"),
    }


sink = open("/dev/null", "w")
latencies = []
statuses = {}
first_done = None
for i in range(int(count)):
    event = events[i % len(events)]
    t0 = time.perf_counter()
    response = requests.post(url, headers={"Content-Type": "application/json"}, data=json.dumps(guide_payload(event)))
    print(response.status_code, response.text, file=sink)
    t1 = time.perf_counter()
    if first_done is None:
        first_done = t1 - started
    latencies.append(t1 - t0)
    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

print(json.dumps({
    "latencies_s": latencies,
    "first_event_done_s": first_done,
    "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "statuses": statuses,
}))
