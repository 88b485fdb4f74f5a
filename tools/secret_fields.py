"""Changes some fields of the function's secret and keeps every other one: what
`make pagerduty-webhook`, `make guance-workspace` (and later `make setup`) share.

The secret is JSON (`routing_key`, `webhook_token`, `routes`, and for two-way
`pagerduty_webhook_secrets`, `pagerduty_webhook_subscriptions` (which subscription each
signing secret belongs to: id -> delivery URL; the function ignores it),
`pagerduty_api_token`, `guance_workspaces`). A bare routing
key (the oldest form) is read as `{"routing_key": ...}`. Nothing here prints a value.
"""

import json


def read(client, secret_id):
    """The secret's fields as a dict."""
    value = client.get_secret_value(SecretId=secret_id)["SecretString"].strip()
    if not value.startswith("{"):
        return {"routing_key": value}
    fields = json.loads(value)
    if not isinstance(fields, dict):
        raise ValueError("the secret is JSON but not an object")
    return fields


def update(client, secret_id, change):
    """Reads the secret, lets `change(fields)` edit the dict in place, and writes it back
    as one new version when anything changed. Returns whether it wrote."""
    fields = read(client, secret_id)
    before = json.dumps(fields, sort_keys=True)
    change(fields)
    if json.dumps(fields, sort_keys=True) == before:
        return False
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(fields))
    return True
