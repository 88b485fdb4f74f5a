"""make guance-workspace: adds or replaces one Guance workspace in the function's secret
field `guance_workspaces` (the key and OpenAPI host two-way uses to recover a Guance event
when its PagerDuty incident is resolved), keeping every other field and workspace:

    "guance_workspaces": {"<df_workspace_uuid>": {"api_key": "<DF-API-KEY>",
                                                   "openapi_url": "https://openapi.guance.com"}}

GUANCE_WORKSPACE_UUID (required: the df_workspace_uuid of the workspace's alerts),
GUANCE_API_KEY (required: an API key of that workspace; a key decides its workspace),
GUANCE_SITE (cn1 ... cn6, us1, eu1, ap1) or GUANCE_OPENAPI_URL (https; http only on
loopback), SECRET_ID (default: the SecretArn output of stack STACK_NAME, default
guance-pagerduty). GUANCE_CHECK=0 skips the stricter shape checks of the uuid (wksp_ and
32 hex digits) and the key (for a private deployment with other forms); the function's own
rules always hold: a uuid of 1 to 128 ASCII letters, digits, '_' or '-' (the function skips
any other workspace name), and the URL rule. Guance documents no call that checks a key
without side effects, so nothing is sent to Guance. Re-running with the same values writes
nothing. Never prints the key. Needs AWS credentials and a region, as the AWS CLI does;
AWS_ENDPOINT_URL is honoured (moto)."""

import ipaddress
import os
import re
import sys
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

import secret_fields

NAME = "guance-workspace"
FIELD = "guance_workspaces"

# CONTRACT.md section 6: Guance's OpenAPI host per site.
SITES = {
    "cn1": "https://openapi.guance.com",
    "cn2": "https://aws-openapi.guance.com",
    "cn4": "https://cn4-openapi.guance.com",
    "cn5": "https://cn5-openapi.guance.com",
    "cn6": "https://cn6-openapi.guance.one",
    "us1": "https://us1-openapi.guance.com",
    "eu1": "https://eu1-openapi.guance.one",
    "ap1": "https://ap1-openapi.guance.one",
}
LOOPBACK_HOSTS = {"localhost"}


def fail(message):
    sys.exit(f"{NAME}: {message}")


def site_url(site):
    """`cn1`, `CN1`, `china1`, `China 1`, `china-1`, `us1`, `US 1`, ... → the host."""
    name = re.sub(r"[\s_-]+", "", site.strip().lower())
    name = re.sub(r"^china", "cn", name)
    if name not in SITES:
        fail(f"GUANCE_SITE={site.strip()!r} is not a Guance site; use one of "
             f"{', '.join(SITES)} (or GUANCE_OPENAPI_URL for a private deployment).")
    return SITES[name]


def is_loopback(host):
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(url):
    """An https URL (http only on loopback), without credentials, query or fragment;
    returned without a trailing slash."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # raises on a bad port
    except ValueError:
        fail(f"GUANCE_OPENAPI_URL={url!r} is not a URL; give it like https://openapi.guance.com.")
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        fail(f"GUANCE_OPENAPI_URL={url!r} is not an http(s) URL with a host; give it like "
             "https://openapi.guance.com.")
    if parts.scheme == "http" and not is_loopback(host):
        fail(f"GUANCE_OPENAPI_URL={url!r} must use https (the API key travels in a header); "
             "http is allowed only for 127.0.0.1, localhost or [::1].")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        fail(f"GUANCE_OPENAPI_URL must be the OpenAPI base URL only, without credentials, "
             "query or fragment; give it like https://openapi.guance.com.")
    return url.rstrip("/")


def required(name, hint):
    value = os.environ.get(name, "").strip()
    if not value:
        fail(f"set {name} to {hint}.")
    return value


def main():
    check = os.environ.get("GUANCE_CHECK", "1").strip().lower() not in ("0", "false", "no", "off")

    workspace = required("GUANCE_WORKSPACE_UUID",
                         "the workspace's df_workspace_uuid (wksp_ followed by 32 hex digits)")
    # The function's own rule (src/adapters/secret.rs): it skips, with a warning, a
    # workspace named otherwise, so its events would never be recovered. Always checked.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", workspace):
        fail("GUANCE_WORKSPACE_UUID must be 1 to 128 ASCII letters, digits, '_' "
             "or '-' (the function skips any other name), like "
             "wksp_968577392a1c4714a464cd2f6ee42a9c.")
    if check and not re.fullmatch(r"wksp_[0-9a-f]{32}", workspace):
        fail(f"GUANCE_WORKSPACE_UUID={workspace!r} does not look like wksp_ followed by 32 "
             "lowercase hex digits (the df_workspace_uuid of the workspace's alerts); "
             "GUANCE_CHECK=0 accepts it as it is.")

    api_key = required("GUANCE_API_KEY", "an API key of that workspace (Guance: Management, API Key)")
    # It goes in an HTTP header: visible ASCII only. Never echoed.
    if not re.fullmatch(r"[\x21-\x7e]{1,512}", api_key):
        fail("GUANCE_API_KEY must be visible ASCII characters without spaces (at most 512); "
             "copy it again from Guance.")
    if check and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", api_key):
        fail("GUANCE_API_KEY does not look like a Guance API key (16 to 128 letters, digits, "
             "'_' or '-'); copy it again from Guance, or GUANCE_CHECK=0 accepts it as it is.")

    site = os.environ.get("GUANCE_SITE", "").strip()
    given_url = os.environ.get("GUANCE_OPENAPI_URL", "").strip()
    if site and given_url:
        fail("set GUANCE_SITE or GUANCE_OPENAPI_URL, not both.")
    if site:
        openapi_url = site_url(site)
    elif given_url:
        openapi_url = checked_url(given_url)
    else:
        fail(f"set GUANCE_SITE to the workspace's site ({', '.join(SITES)}) or "
             "GUANCE_OPENAPI_URL to its OpenAPI URL (private deployments).")

    outcome = {}

    def change(fields):
        workspaces = fields.setdefault(FIELD, {})
        if not isinstance(workspaces, dict):
            fail(f"the secret's {FIELD} is not a JSON object; fix or remove it, then run again.")
        entry = {"api_key": api_key, "openapi_url": openapi_url}
        previous = workspaces.get(workspace)
        outcome["result"] = ("created" if previous is None
                             else "unchanged" if previous == entry else "replaced")
        workspaces[workspace] = entry

    try:
        # botocore reads AWS_DEFAULT_REGION only; the AWS CLI and SDKs also read AWS_REGION.
        session = boto3.session.Session(
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None)
        if session.get_credentials() is None:
            raise NoCredentialsError()
        secret_id = os.environ.get("SECRET_ID", "").strip()
        if not secret_id:
            stack = os.environ.get("STACK_NAME", "").strip() or "guance-pagerduty"
            try:
                stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
            except ClientError as error:
                fail(f"stack {stack!r} not found ({error.response['Error'].get('Message', error)}); "
                     "set STACK_NAME to the deployed stack, or SECRET_ID to the secret.")
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
            if "SecretArn" not in outputs:
                fail(f"stack {stack!r} has no SecretArn output (was it deployed from this "
                     "template.yaml?); set SECRET_ID to the function's secret.")
            secret_id = outputs["SecretArn"]
        client = session.client("secretsmanager")
        try:
            secret_fields.update(client, secret_id, change)
        except client.exceptions.ResourceNotFoundException:
            fail(f"secret {secret_id!r} not found; set SECRET_ID (or STACK_NAME) to the function's secret.")
        except ValueError as error:
            fail(f"the secret {secret_id!r} is not a JSON object ({error}); fix it, then run again.")
    except NoCredentialsError:
        fail("no AWS credentials found. Configure them (aws configure, AWS_PROFILE or "
             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the account of the function, then run again.")
    except NoRegionError:
        fail("no AWS region set. Set AWS_REGION (or AWS_DEFAULT_REGION) to the function's region.")
    except (ClientError, BotoCoreError) as error:
        fail(str(error))

    print(f"{NAME}: {outcome['result']} {workspace} -> {openapi_url} in {secret_id}")


if __name__ == "__main__":
    main()
