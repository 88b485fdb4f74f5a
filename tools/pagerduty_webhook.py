"""make pagerduty-webhook: subscribes the function to PagerDuty's v3 webhooks
(`incident.resolved`) through PagerDuty's REST API, and stores the signing secret PagerDuty
returns (shown only once) in the function's secret, field `pagerduty_webhook_secrets` (a
list: appended to, so a rotation keeps the old one until removed). With
PAGERDUTY_READ_TOKEN it also stores `pagerduty_api_token`, the key the function reads
alerts with. Every other field of the secret is kept. Idempotent: a subscription with
the same delivery URL and filter is found, not made twice.

Environment:
  PAGERDUTY_API_TOKEN    (required) a REST API key allowed to create webhook subscriptions
  PAGERDUTY_SERVICE_IDS  comma-separated service ids: one subscription per service;
                         none: one subscription for the whole account
  PAGERDUTY_READ_TOKEN   a (read-only) REST API key for the function, stored in the secret
  PAGERDUTY_API_URL      default https://api.pagerduty.com (EU: https://api.eu.pagerduty.com)
  FUNCTION_URL           else the stack's FunctionUrl output (STACK_NAME, default guance-pagerduty)
  SECRET_ID              else the stack's SecretArn output
Needs AWS credentials and a region, as the AWS CLI does. Prints no secret and no token.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

import secret_fields

NAME = "pagerduty-webhook"
ACCEPT = "application/vnd.pagerduty+json;version=2"
TIMEOUT = 20  # seconds, every HTTP call
EVENTS = ["incident.resolved"]
WEBHOOK_PATH = "/pagerduty/webhook"
DESCRIPTION = "guance-pagerduty: recovers the Guance event when a person resolves its incident"


class Failure(Exception):
    """A one-line error for the user."""


def say(message):
    print(f"{NAME}: {message}")


def pagerduty(api, token, method, path, body=None):
    """One REST call; the decoded JSON answer (None when empty). Raises Failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api}{path}", data=data, method=method)
    request.add_header("Accept", ACCEPT)
    request.add_header("Authorization", f"Token token={token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            text = answer.read().decode()
    except urllib.error.HTTPError as error:
        raise Failure(refusal(error, method, path)) from None
    except urllib.error.URLError as error:
        raise Failure(f"cannot reach PagerDuty at {api} ({error.reason}): check PAGERDUTY_API_URL "
                      "and the network") from None
    except TimeoutError:
        raise Failure(f"PagerDuty at {api} did not answer {method} {path} within {TIMEOUT} s; "
                      "try again") from None
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise Failure(f"PagerDuty's answer to {method} {path} is not JSON: is PAGERDUTY_API_URL "
                      f"({api}) PagerDuty's REST API?") from None


def refusal(error, method, path):
    """What to fix, from PagerDuty's error answer (its message and details, never a token)."""
    try:
        detail = json.loads(error.read().decode() or "{}").get("error", {})
    except (ValueError, AttributeError):
        detail = {}
    said = detail.get("message") if isinstance(detail, dict) else None
    errors = detail.get("errors") if isinstance(detail, dict) else None
    why = "; ".join(str(e) for e in errors) if isinstance(errors, list) and errors else said
    why = f": {why}" if why else ""
    if error.code == 401:
        return ("PagerDuty refused PAGERDUTY_API_TOKEN (401 Authentication failed): set it to a "
                "valid REST API key (PagerDuty: Integrations > API Access Keys)")
    if error.code == 403:
        return (f"PagerDuty forbids {method} {path} to this key (403{why}): PAGERDUTY_API_TOKEN "
                "must be a full-access (not read-only) REST API key")
    if error.code == 404:
        return f"PagerDuty answered 404 to {method} {path}{why}: check PAGERDUTY_API_URL and PAGERDUTY_SERVICE_IDS"
    if error.code == 429:
        return "PagerDuty is rate limiting this key (429): wait a minute and run again"
    if error.code >= 500:
        return f"PagerDuty failed ({error.code}) on {method} {path}; run again later"
    return f"PagerDuty refused {method} {path} ({error.code}{why}); check PAGERDUTY_SERVICE_IDS and FUNCTION_URL"


def subscriptions(api, token):
    """Every webhook subscription of the account, page by page."""
    found, offset = [], 0
    while True:
        page = pagerduty(api, token, "GET", f"/webhook_subscriptions?limit=100&offset={offset}") or {}
        batch = page.get("webhook_subscriptions") or []
        found.extend(batch)
        if not page.get("more") or not batch:
            return found
        offset += len(batch)


def same(subscription, url, wanted):
    method = subscription.get("delivery_method") or {}
    have = subscription.get("filter") or {}
    return (method.get("url") == url and have.get("type") == wanted["type"]
            and (wanted["type"] == "account_reference" or have.get("id") == wanted.get("id")))


def describe(wanted):
    if wanted["type"] == "account_reference":
        return "the whole account"
    return f"service {wanted['id']}"


def stored_secrets(fields):
    value = fields.get("pagerduty_webhook_secrets")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def stack_outputs(session, stack):
    try:
        described = session.client("cloudformation").describe_stacks(StackName=stack)
    except ClientError as error:
        raise Failure(f"cannot read stack {stack!r} ({error.response['Error'].get('Message', error)}): "
                      "set FUNCTION_URL and SECRET_ID, or STACK_NAME to the deployed stack") from None
    return {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0].get("Outputs", [])}


def main():
    token = os.environ.get("PAGERDUTY_API_TOKEN", "").strip()
    if not token:
        raise Failure("set PAGERDUTY_API_TOKEN to a PagerDuty REST API key that may create webhook "
                      "subscriptions (PagerDuty: Integrations > API Access Keys)")
    api = (os.environ.get("PAGERDUTY_API_URL", "").strip() or "https://api.pagerduty.com").rstrip("/")
    if not api.startswith(("https://", "http://")):
        raise Failure(f"PAGERDUTY_API_URL must be an http(s) URL, not {api!r}")
    services = [s.strip() for s in os.environ.get("PAGERDUTY_SERVICE_IDS", "").split(",") if s.strip()]
    read_token = os.environ.get("PAGERDUTY_READ_TOKEN", "").strip()
    function_url = os.environ.get("FUNCTION_URL", "").strip()
    secret_id = os.environ.get("SECRET_ID", "").strip()
    stack = os.environ.get("STACK_NAME", "").strip() or "guance-pagerduty"

    # AWS_REGION, as the AWS CLI and SDKs read it (this botocore reads only AWS_DEFAULT_REGION).
    session = boto3.session.Session(region_name=os.environ.get("AWS_REGION", "").strip() or None)
    if session.get_credentials() is None:
        raise NoCredentialsError()
    if not function_url or not secret_id:
        outputs = stack_outputs(session, stack)
        try:
            function_url = function_url or outputs["FunctionUrl"]
            secret_id = secret_id or outputs["SecretArn"]
        except KeyError as missing:
            raise Failure(f"stack {stack!r} has no {missing} output: set FUNCTION_URL and SECRET_ID") from None
    if not function_url.startswith(("https://", "http://")):
        raise Failure(f"FUNCTION_URL must be the function's http(s) URL, not {function_url!r}")
    url = function_url.rstrip("/") + WEBHOOK_PATH
    secrets = session.client("secretsmanager")
    # Read the secret first: a subscription whose signing secret cannot be stored is lost.
    try:
        fields = secret_fields.read(secrets, secret_id)
    except ClientError as error:
        raise Failure(f"cannot read the secret {secret_id} ({error.response['Error'].get('Code')}): "
                      "set SECRET_ID to the function's secret, with read and write access") from None
    except ValueError as error:
        raise Failure(f"the secret {secret_id} is not usable: {error}") from None

    wanted_filters = ([{"type": "service_reference", "id": s} for s in services]
                      or [{"type": "account_reference"}])
    existing = subscriptions(api, token)
    for wanted in wanted_filters:
        found = next((s for s in existing if same(s, url, wanted)), None)
        if found is not None:
            say(f"subscription {found.get('id')} for {describe(wanted)} already delivers to {url}; "
                "not creating another")
            if not stored_secrets(fields):
                say(f"warning: the secret {secret_id} holds no signing secret, and PagerDuty shows a "
                    f"subscription's only when creating it: delete subscription {found.get('id')} "
                    "(PagerDuty: Integrations > Generic Webhooks (v3)) and run again, or rotate it")
            continue
        body = {"webhook_subscription": {
            "type": "webhook_subscription",
            "delivery_method": {"type": "http_delivery_method", "url": url, "custom_headers": []},
            "events": EVENTS,
            "filter": wanted,
            "description": DESCRIPTION,
        }}
        created = (pagerduty(api, token, "POST", "/webhook_subscriptions", body) or {}).get("webhook_subscription") or {}
        signing = (created.get("delivery_method") or {}).get("secret")
        ident = created.get("id", "?")
        if not signing:
            raise Failure(f"PagerDuty created subscription {ident} but returned no signing secret: "
                          "delete it in PagerDuty and run again")
        say(f"created subscription {ident} for {describe(wanted)}: {', '.join(EVENTS)} -> {url}")

        def add(fields, signing=signing):
            kept = stored_secrets(fields)
            if signing not in kept:
                kept.append(signing)
            fields["pagerduty_webhook_secrets"] = kept

        try:
            secret_fields.update(secrets, secret_id, add)
        except (ClientError, BotoCoreError) as error:
            raise Failure(f"subscription {ident} was created but its signing secret could not be stored "
                          f"in {secret_id} ({error}): delete the subscription in PagerDuty, fix access "
                          "to the secret and run again") from None
        fields = secret_fields.read(secrets, secret_id)
        say(f"stored its signing secret in {secret_id} "
            f"(pagerduty_webhook_secrets now holds {len(stored_secrets(fields))})")

    if read_token:
        def set_token(fields):
            fields["pagerduty_api_token"] = read_token

        if secret_fields.update(secrets, secret_id, set_token):
            say(f"stored PAGERDUTY_READ_TOKEN as pagerduty_api_token in {secret_id}")
        else:
            say(f"pagerduty_api_token in {secret_id} already holds PAGERDUTY_READ_TOKEN")


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        sys.exit(f"{NAME}: {failure}")
    except NoCredentialsError:
        sys.exit(f"{NAME}: no AWS credentials found. Configure them (aws configure, AWS_PROFILE or "
                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the account of the function, then run again.")
    except NoRegionError:
        sys.exit(f"{NAME}: no AWS region set. Set AWS_REGION (or AWS_DEFAULT_REGION) to the function's region.")
    except (ClientError, BotoCoreError) as error:
        sys.exit(f"{NAME}: {error}")
