"""make pagerduty-webhook: subscribes the function to PagerDuty's v3 webhooks
(`incident.resolved`) through PagerDuty's REST API, and stores the signing secret PagerDuty
returns (shown only once) in the function's secret, field `pagerduty_webhook_secrets` (a
list: appended to, so a rotation keeps the old one until removed), and in the same write
the subscription it belongs to, field `pagerduty_webhook_subscriptions` (an object:
subscription id -> delivery URL). With PAGERDUTY_READ_TOKEN it also stores
`pagerduty_api_token`, the key the function reads alerts with. Every other field of the
secret is kept. Idempotent: a subscription with the same delivery URL and filter is found,
not made twice.

A matching subscription the secret does not record (its signing secret was never stored:
an earlier run failed or was stopped after PagerDuty made it; or a secret stored before
`pagerduty_webhook_subscriptions` existed) would have its deliveries refused (401) and be
disabled by PagerDuty: the tool stops and says so, changing nothing, unless
PAGERDUTY_REPLACE_UNRECORDED=1, which deletes it and creates one whose secret is stored.
When the signing secret cannot be stored, the subscription just created is deleted again.

Environment:
  PAGERDUTY_API_TOKEN    (required) a REST API key allowed to create webhook subscriptions
  PAGERDUTY_SERVICE_IDS  comma-separated service ids: one subscription per service;
                         none: one subscription for the whole account
  PAGERDUTY_READ_TOKEN   a (read-only) REST API key for the function, stored in the secret
  PAGERDUTY_API_URL      default https://api.pagerduty.com (EU: https://api.eu.pagerduty.com)
  PAGERDUTY_REPLACE_UNRECORDED  1: delete matching subscriptions the secret does not record
                         and create new ones (default: stop and say which)
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
from botocore.exceptions import (BotoCoreError, ClientError, NoCredentialsError, NoRegionError,
                                 ParamValidationError)

import secret_fields

NAME = "pagerduty-webhook"
ACCEPT = "application/vnd.pagerduty+json;version=2"
TIMEOUT = 20  # seconds, every HTTP call
EVENTS = ["incident.resolved"]
WEBHOOK_PATH = "/pagerduty/webhook"
DESCRIPTION = "guance-pagerduty: recovers the Guance event when a person resolves its incident"
SECRETS_FIELD = "pagerduty_webhook_secrets"
RECORD_FIELD = "pagerduty_webhook_subscriptions"
REPLACE = "PAGERDUTY_REPLACE_UNRECORDED"
WHERE = "Integrations > Generic Webhooks (v3)"


class Failure(Exception):
    """A one-line error for the user; `status` is PagerDuty's HTTP status, if it answered."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


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
        raise Failure(refusal(error, method, path), error.code) from None
    except urllib.error.URLError as error:
        raise Failure(f"cannot reach PagerDuty at {api} ({error.reason}): check PAGERDUTY_API_URL "
                      "and the network") from None
    except TimeoutError:
        maybe = ("" if method == "GET" else
                 " (it may have acted anyway; a subscription it made without an answer is "
                 "reported by the next run, with what to do)")
        raise Failure(f"PagerDuty at {api} did not answer {method} {path} within {TIMEOUT} s{maybe}; "
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
    value = fields.get(SECRETS_FIELD)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def recorded(fields):
    """The secret's subscription id -> delivery URL, or None when it has no such field."""
    value = fields.get(RECORD_FIELD)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Failure(f"the secret's {RECORD_FIELD} is not an object of subscription id -> "
                      "delivery URL; fix or remove it, then run again")
    return value


def unrecorded(found, secret_id, url, legacy):
    """What to do about matching subscriptions whose signing secret the secret may not hold:
    found is [(subscription, filter)]."""
    ids = ", ".join(str(s.get("id")) for s, _ in found)
    which = ", ".join(f"{s.get('id')} for {describe(w)}" for s, w in found)
    one = len(found) == 1
    if legacy:
        why = (f"the secret {secret_id} holds signing secrets but no {RECORD_FIELD} saying which "
               "subscription each belongs to: it may be a secret stored before this field "
               "existed, and whether it holds the signing secret of "
               f"{'this subscription' if one else 'these subscriptions'} cannot be told")
    else:
        why = (f"the secret {secret_id} does not record {'it' if one else 'them'} in "
               f"{RECORD_FIELD}, so {'its' if one else 'their'} signing secret (shown only when "
               "PagerDuty creates a subscription) was never stored there: an earlier run failed "
               "or was stopped after PagerDuty created it")
    return (f"subscription{'' if one else 's'} {which} already deliver{'s' if one else ''} to "
            f"{url}, but {why}; the function would refuse {'its' if one else 'their'} deliveries "
            "(401) and PagerDuty would disable "
            f"{'it' if one else 'them'}. Delete subscription{'' if one else 's'} {ids} in "
            f"PagerDuty ({WHERE}) and run again, or run again with {REPLACE}=1 to have this tool "
            f"delete {'it' if one else 'them'} and create one whose signing secret is stored. "
            "Nothing was changed")


def withdraw(api, token, ident):
    """Deletes a subscription: None when it is gone, else why not."""
    try:
        pagerduty(api, token, "DELETE", f"/webhook_subscriptions/{urllib.parse.quote(ident, safe='')}")
    except Failure as failure:
        return None if failure.status == 404 else str(failure)
    return None


def why_not(error):
    """An AWS or other error, in words that carry no value of the secret."""
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code')}: {detail.get('Message')}"
    if isinstance(error, ParamValidationError):
        return "ParamValidationError"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, (BotoCoreError, ValueError)):
        return str(error)
    return type(error).__name__


def holds(secrets, secret_id, ident, signing):
    """Whether the secret records subscription ident with its signing secret (a write that
    failed may have landed anyway)."""
    try:
        fields = secret_fields.read(secrets, secret_id)
        return ident in (recorded(fields) or {}) and signing in stored_secrets(fields)
    except Exception:  # noqa: BLE001 - any doubt is "not stored"
        return False


def create(api, token, secrets, secret_id, url, wanted):
    """Creates one subscription and stores its signing secret and id in one write; deletes
    it again when they cannot be stored."""
    body = {"webhook_subscription": {
        "type": "webhook_subscription",
        "delivery_method": {"type": "http_delivery_method", "url": url, "custom_headers": []},
        "events": EVENTS,
        "filter": wanted,
        "description": DESCRIPTION,
    }}
    created = (pagerduty(api, token, "POST", "/webhook_subscriptions", body) or {}).get("webhook_subscription") or {}
    ident = created.get("id")
    if not isinstance(ident, str) or not ident:
        raise Failure(f"PagerDuty answered POST /webhook_subscriptions without a subscription id: "
                      f"delete any subscription to {url} for {describe(wanted)} in PagerDuty "
                      f"({WHERE}) and run again")
    signing = (created.get("delivery_method") or {}).get("secret")
    if not isinstance(signing, str) or not signing:
        abandon(api, token, ident, wanted, "PagerDuty returned no signing secret for it")
    say(f"created subscription {ident} for {describe(wanted)}: {', '.join(EVENTS)} -> {url}")

    count = {}

    def store(fields):
        kept = stored_secrets(fields)
        if signing not in kept:
            kept.append(signing)
        fields[SECRETS_FIELD] = kept
        fields[RECORD_FIELD] = {**(recorded(fields) or {}), ident: url}
        count["secrets"] = len(kept)

    try:
        secret_fields.update(secrets, secret_id, store)
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - whatever it was, undo
        if not holds(secrets, secret_id, ident, signing):
            abandon(api, token, ident, wanted,
                    f"its signing secret could not be stored in {secret_id} ({why_not(error)})",
                    "make the secret writable with these AWS credentials (SECRET_ID: the "
                    "function's secret, in its primary region)")
        if isinstance(error, KeyboardInterrupt):
            raise Failure(f"interrupted; subscription {ident} and its signing secret are stored in "
                          f"{secret_id}: run again for the rest") from None
        say(f"stored its signing secret and id in {secret_id} (the write reported "
            f"{why_not(error)}, but it is there)")
        return
    say(f"stored its signing secret and id in {secret_id} "
        f"({SECRETS_FIELD} now holds {count['secrets']}; {RECORD_FIELD} records {ident})")


def abandon(api, token, ident, wanted, what, fix=None):
    """Deletes the subscription just created, which cannot work, and fails saying so."""
    then = f"{fix} and run again" if fix else "run again"
    problem = withdraw(api, token, ident)
    if problem:
        raise Failure(f"PagerDuty created subscription {ident} for {describe(wanted)} but {what}; "
                      f"deleting it failed too ({problem}): delete subscription {ident} by hand "
                      f"in PagerDuty ({WHERE}), {then}")
    raise Failure(f"PagerDuty created subscription {ident} for {describe(wanted)} but {what}, so "
                  f"it was deleted again: {then}")


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

    record = recorded(fields)
    legacy = record is None and bool(stored_secrets(fields))
    record = record or {}
    replace = os.environ.get(REPLACE, "").strip().lower() in ("1", "true", "yes", "on")

    wanted_filters = ([{"type": "service_reference", "id": s} for s in services]
                      or [{"type": "account_reference"}])
    existing = subscriptions(api, token)
    # Decide everything before changing anything.
    plan = []
    for wanted in wanted_filters:
        matches = [s for s in existing if same(s, url, wanted)]
        known = [s for s in matches if s.get("id") in record]
        unknown = [s for s in matches if s.get("id") not in record]
        plan.append((wanted, known, unknown))
    lost = [(s, wanted) for wanted, _, unknown in plan for s in unknown]
    if lost and not replace:
        raise Failure(unrecorded(lost, secret_id, url, legacy))

    for wanted, known, unknown in plan:
        for old in unknown:
            problem = withdraw(api, token, str(old.get("id")))
            if problem:
                raise Failure(f"cannot delete subscription {old.get('id')} for {describe(wanted)} "
                              f"({REPLACE}=1): {problem}")
            say(f"deleted subscription {old.get('id')} for {describe(wanted)}: {secret_id} did not "
                f"record it ({REPLACE}=1)")
        if known:
            say(f"subscription {known[0].get('id')} for {describe(wanted)} already delivers to {url}; "
                "not creating another")
            continue
        create(api, token, secrets, secret_id, url, wanted)

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
