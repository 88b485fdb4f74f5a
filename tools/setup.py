"""make setup: from nothing to a working page, in one command. Wires PagerDuty, AWS and
Guance, idempotently, and proves the result with a test page and its recovery.

Steps, each printed as created, found, changed or unchanged (never a secret):
  1. PagerDuty: the service's Events API v2 integration (found by name, else added); its
     integration key is the routing key. Or ROUTING_KEY given: used as it is.
  2. AWS: the function deployed (DEPLOYER=sam: sam build + sam deploy of template.yaml;
     DEPLOYER=cargo-lambda: cargo lambda build + deploy, the direct-mode quick start).
  3. The function's secret: routing key, webhook token (kept, or generated), the bridge's
     PagerDuty REST key and the Guance workspace's key, in one update that keeps the rest.
  4. Two-way (default on when GUANCE_API_KEY is given): the PagerDuty webhook subscription
     for incident.resolved to the function URL + /pagerduty/webhook, its signing secret
     stored the moment PagerDuty shows it (tools/pagerduty_webhook.py).
  5. Guance: the webhook notification object (found by name, else created) with the
     function's URL, attached to GUANCE_ALERT_POLICY for GUANCE_LEVELS when one is named.
  6. Proof (unless --no-test): a labelled test alert and its recovery through the function
     URL, and the PagerDuty incident read back: opened, then resolved.

A second run changes nothing and says so. --dry-run prints the plan and writes nothing.
A failure names the step, what to fix, and that running again resumes: every step finds
what an earlier run made.

Environment:
  PAGERDUTY_API_TOKEN     a PagerDuty REST API key that may add integrations and webhooks
  PAGERDUTY_SERVICE_ID    the service to page (else ROUTING_KEY, and two-way's webhook
                          subscription covers the whole account)
  ROUTING_KEY             an Events API v2 integration key, instead of finding or adding one
  PAGERDUTY_READ_TOKEN    a read-only REST key for the function (better: the function only
                          reads); else PAGERDUTY_API_TOKEN is stored for it
  PAGERDUTY_API_URL       default https://api.pagerduty.com (EU: https://api.eu.pagerduty.com)
  DEPLOYER                sam (default) or cargo-lambda
  STACK_NAME              default guance-pagerduty (the SAM stack, or the cargo lambda function)
  SAM_PARAMETERS          more sam deploy parameter overrides, e.g. "DeliveryMode=direct"
  LAMBDA_BINARY_PATH      cargo-lambda: a bootstrap already built (skips cargo lambda build)
  FUNCTION_URL            the URL Guance and PagerDuty call, instead of the deployed one
                          (a local run behind a tunnel, or a test)
  GUANCE_API_KEY          a Guance workspace's API key (DF-API-KEY); turns two-way on
  GUANCE_WORKSPACE_UUID   that workspace's uuid (wksp_...)
  GUANCE_SITE or GUANCE_OPENAPI_URL   the workspace's site (us1, eu1, cn1, ...) or OpenAPI host
  GUANCE_ALERT_POLICY     an alert policy to attach the notification object to
  GUANCE_LEVELS           the levels that page, default critical,error,warning,nodata
  GUANCE_NOTIFY_NAME      the notification object's name, default guance-pagerduty
  TWO_WAY                 0 to leave two-way off even with a Guance key
Needs AWS credentials and a region (AWS_REGION), as the AWS CLI does.
"""

import argparse
import hashlib
import json
import os
import re
import secrets as random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

import guance_workspace
import pagerduty_webhook
import secret_fields

ROOT = Path(__file__).resolve().parent.parent
NAME = "setup"
TIMEOUT = 20
INTEGRATION_NAME = "guance-pagerduty"
LEVELS = ("critical", "error", "warning", "nodata", "info")
# The tag the function carries: its bootstrap's SHA-256, to deploy only a changed build.
BUILD_TAG = "guance-pagerduty:bootstrap-sha256"


class Failure(Exception):
    """A step that could not be done: what to fix, and that a new run resumes."""


# Every secret value this run knows, masked in whatever it prints (its own lines, the
# tools it runs, error messages built from API answers).
SECRETS = []


def conceal(value):
    if value and len(value) >= 6 and value not in SECRETS:
        SECRETS.append(value)
    return value


def scrub(text):
    for value in SECRETS:
        text = text.replace(value, "<secret>")
    return text


class Report:
    """What each step found, made or would make, printed as it goes. The one in use is
    `Report.current`, so a failure can name its step."""

    current = None

    def __init__(self, dry_run):
        self.dry_run = dry_run
        self.changes = 0
        self.step = "start"
        Report.current = self

    def begin(self, step):
        self.step = step
        print(scrub(f"{NAME}: [{step}]"))

    def say(self, what, changed=False):
        if changed:
            self.changes += 1
        verb = "  would " if self.dry_run and changed else "  "
        print(scrub(f"{verb}{what}"))


def env(name, default=""):
    return os.environ.get(name, "").strip() or default


def http(method, url, headers, body=None, what="the call"):
    """One HTTP call; (status, decoded JSON or None). Raises Failure when unreachable."""
    data = None if body is None else json.dumps(body).encode()
    try:
        request = urllib.request.Request(url, data=data, method=method)
    except ValueError:
        raise Failure(f"{what} is not an http(s) URL") from None
    for key, value in headers.items():
        request.add_header(key, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError) as error:
        raise Failure(f"cannot reach {what} ({getattr(error, 'reason', error)})") from None
    except (ValueError, OSError) as error:
        # Never the URL: it may carry the webhook token.
        raise Failure(f"cannot call {what} ({type(error).__name__})") from None
    try:
        return status, (json.loads(text) if text else None)
    except ValueError:
        return status, None


# --- 1. PagerDuty -------------------------------------------------------------------------


def pagerduty(api, token, method, path, body=None):
    """pagerduty_webhook's REST call, its failures as this tool's."""
    try:
        return pagerduty_webhook.pagerduty(api, token, method, path, body)
    except pagerduty_webhook.Failure as failure:
        raise Failure(str(failure)) from None


def routing_key(report, api, token, service):
    """The service's Events API v2 integration key, found by name or added."""
    given = env("ROUTING_KEY")
    if given:
        if not given.isalnum():
            raise Failure("ROUTING_KEY must be an Events API v2 integration key (letters and digits)")
        report.say("ROUTING_KEY given: used as the routing key")
        return given
    if not (token and service):
        raise Failure("set PAGERDUTY_API_TOKEN and PAGERDUTY_SERVICE_ID (the service to page, from its "
                      "URL: .../service-directory/PXXXXXX), or ROUTING_KEY")
    quoted = urllib.parse.quote(service, safe="")
    found = (pagerduty(api, token, "GET", f"/services/{quoted}?include%5B%5D=integrations") or {}).get("service") or {}
    for integration in found.get("integrations") or []:
        if (integration.get("type") == "events_api_v2_inbound_integration"
                and integration.get("name") == INTEGRATION_NAME and integration.get("integration_key")):
            report.say(f"found integration {integration.get('id')} ({INTEGRATION_NAME}, Events API v2) "
                       f"on service {service}")
            return integration["integration_key"]
    if report.dry_run:
        report.say(f"add an Events API v2 integration named {INTEGRATION_NAME} to service {service}", True)
        return "DRYRUN0000000000000000000000000"
    body = {"integration": {"type": "events_api_v2_inbound_integration", "name": INTEGRATION_NAME}}
    made = (pagerduty(api, token, "POST", f"/services/{quoted}/integrations", body) or {}).get("integration") or {}
    key = made.get("integration_key")
    if not isinstance(key, str) or not key.isalnum():
        raise Failure(f"PagerDuty added integration {made.get('id')} to service {service} but gave no "
                      "integration key; run again (it is found by name)")
    report.say(f"added integration {made.get('id')} ({INTEGRATION_NAME}, Events API v2) to service {service}",
               True)
    return key


# --- 2. AWS -------------------------------------------------------------------------------


def run(report, command, what, env_extra=None, shown=None):
    """Runs a command (printed as `shown`), or only prints it. What it prints passes
    through with every secret masked (sam prints its parameters)."""
    report.say(f"$ {shown or shlex.join(command)}")
    if report.dry_run:
        return
    done = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env_extra or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in done.stdout:
        print(scrub(line), end="")
    if done.wait() != 0:
        raise Failure(f"{what} failed (exit {done.returncode}); fix what it printed and run again")


def deploy_sam(report, session, stack, key):
    """sam build + sam deploy, non-interactive. The routing key goes in a parameter file
    readable only by this user, never on a command line; and only when the stack is new:
    the template generates the secret from it, so a changed key would make CloudFormation
    generate the secret anew and lose every field written since (step 3 writes the key)."""
    outputs = stack_outputs(session, stack)
    run(report, ["sam", "build"], "sam build")
    overrides = [f"PagerDutyRegion={region_of(env('PAGERDUTY_API_URL'))}", *shlex.split(env("SAM_PARAMETERS"))]
    if outputs:
        report.say(f"stack {stack} exists: sam deploy updates it (no change set when nothing changed; "
                   "the routing key is kept in the secret, not passed to the stack again)")
    else:
        overrides.insert(0, f"PagerDutyRoutingKey={key}")
    command = ["sam", "deploy", "--config-file", "<parameter file>", "--stack-name", stack,
               "--capabilities", "CAPABILITY_IAM", "--resolve-s3", "--no-confirm-changeset",
               "--no-fail-on-empty-changeset"]
    shown = shlex.join(command) + "   # parameters: " + " ".join(
        "PagerDutyRoutingKey=<routing key>" if o.startswith("PagerDutyRoutingKey=") else o for o in overrides)
    if report.dry_run:
        run(report, command, "sam deploy", shown=shown)
        return (outputs.get("FunctionUrl"), outputs.get("SecretArn")) if outputs else (None, None)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder, "samconfig.toml")
        config.touch(mode=0o600)
        # A TOML list: each entry one Key=Value, as SAM CLI reads parameter_overrides.
        config.write_text(sam_config_text(overrides))
        command[command.index("<parameter file>")] = str(config)
        run(report, command, "sam deploy", shown=shown)
    outputs = stack_outputs(session, stack)
    try:
        return outputs["FunctionUrl"], outputs["SecretArn"]
    except KeyError as missing:
        raise Failure(f"stack {stack} has no {missing} output: was it deployed from this template.yaml?") from None


def sam_config_text(overrides):
    """A SAM CLI config file holding only the deploy parameters: a TOML list, each entry
    one Key=Value, as SAM CLI reads parameter_overrides (a quoted string of pairs keeps
    the quotes in the keys, and every parameter is then silently left as it was)."""
    return ("version = 0.1\n[default.deploy.parameters]\nparameter_overrides = "
            + json.dumps(overrides) + "\n")


def region_of(api):
    return "EU" if ".eu." in api else "US"


def stack_outputs(session, stack):
    try:
        described = session.client("cloudformation").describe_stacks(StackName=stack)
    except ClientError:
        return {}
    return {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0].get("Outputs", [])}


def deploy_cargo_lambda(report, session, function):
    """cargo lambda build + deploy (a public function URL, direct mode); the secret is the
    Cargo.toml default, guance-pagerduty, created in step 3. The function is tagged with
    its binary's SHA-256, so a run with the same build deploys nothing."""
    binary = env("LAMBDA_BINARY_PATH")
    lam = session.client("lambda")
    try:
        arn = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
        deployed = lam.list_tags(Resource=arn).get("Tags", {}).get(BUILD_TAG)
    except ClientError:
        arn, deployed = None, None
    if not binary:
        run(report, ["cargo", "lambda", "build", "--release", "--arm64"], "cargo lambda build")
    built = ROOT / (binary or "target/lambda/bootstrap/bootstrap")
    digest = hashlib.sha256(built.read_bytes()).hexdigest() if built.is_file() else None
    if arn and digest and digest == deployed:
        report.say(f"function {function} already runs this build: not deployed again")
    else:
        command = ["cargo", "lambda", "deploy", "--enable-function-url"]
        command += ["--binary-path", binary] if binary else ["--binary-name", "bootstrap"]
        run(report, [*command, function], "cargo lambda deploy")
        what = "deployed new code to" if arn else "deployed"
        report.say(f"{what} function {function} with a public function URL", True)
        if not report.dry_run and digest:
            arn = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
            lam.tag_resource(Resource=arn, Tags={BUILD_TAG: digest})
    if report.dry_run:
        return None, None
    config = lam.get_function_configuration(FunctionName=function)
    secret_id = config.get("Environment", {}).get("Variables", {}).get("PAGERDUTY_SECRET_ID", "guance-pagerduty")
    url = lam.get_function_url_config(FunctionName=function)["FunctionUrl"]
    return url, secret_id


def grant_secret(report, session, function, arn):
    """cargo lambda's role may read the secret (SAM's template grants it itself)."""
    iam, lam = session.client("iam"), session.client("lambda")
    role = lam.get_function_configuration(FunctionName=function)["Role"].rsplit("/", 1)[-1]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]})
    try:
        current = iam.get_role_policy(RoleName=role, PolicyName="read-guance-pagerduty-secret")["PolicyDocument"]
        current = current if isinstance(current, dict) else json.loads(urllib.parse.unquote(current))
        if current == json.loads(policy):
            report.say(f"role {role} may read the secret already")
            return
    except ClientError:
        pass
    iam.put_role_policy(RoleName=role, PolicyName="read-guance-pagerduty-secret", PolicyDocument=policy)
    report.say(f"let role {role} read the secret", True)


# --- 3. The secret ------------------------------------------------------------------------


def write_secret(report, sm, secret_id, key, read_token, guance):
    """One update of every field this tool owns, keeping the rest; creates the secret (the
    cargo lambda path) when missing. Returns the webhook token and the secret's ARN."""
    said = []

    def change(fields):
        if fields.get("routing_key") != key:
            said.append("routing key set")
            fields["routing_key"] = key
        token = fields.get("webhook_token")
        if not token or (isinstance(token, list) and not token):
            fields["webhook_token"] = random.token_hex(24)
            said.append("webhook token generated")
        if read_token and fields.get("pagerduty_api_token") != read_token:
            fields["pagerduty_api_token"] = read_token
            said.append("pagerduty_api_token set")
        if guance:
            workspaces = fields.get("guance_workspaces") if isinstance(fields.get("guance_workspaces"), dict) else {}
            entry = {"api_key": guance["api_key"], "openapi_url": guance["openapi_url"]}
            if workspaces.get(guance["uuid"]) != entry:
                workspaces[guance["uuid"]] = entry
                fields["guance_workspaces"] = workspaces
                said.append(f"guance workspace {guance['uuid']} set")

    try:
        current = secret_fields.read(sm, secret_id)
        exists = True
    except ClientError as error:
        if error.response["Error"].get("Code") != "ResourceNotFoundException":
            raise
        current, exists = {}, False
    preview = json.loads(json.dumps(current))
    change(preview)
    if not said:
        report.say(f"secret {secret_id} already holds every field (token kept)")
    elif report.dry_run:
        report.say(f"{'update' if exists else 'create'} secret {secret_id}: {', '.join(said)}", True)
    elif exists:
        said.clear()
        secret_fields.update(sm, secret_id, change)
        report.say(f"updated secret {secret_id} in one write: {', '.join(said)} (other fields kept)", True)
    else:
        created = sm.create_secret(Name=secret_id, SecretString=json.dumps(preview),
                                   Description="guance-pagerduty: routing key, webhook token, two-way keys")
        report.say(f"created secret {secret_id}: {', '.join(said)}", True)
        return preview["webhook_token"], created["ARN"]
    if report.dry_run:
        return preview.get("webhook_token"), None
    stored = secret_fields.read(sm, secret_id)
    arn = sm.describe_secret(SecretId=secret_id)["ARN"]
    return stored["webhook_token"], arn


def first_token(token):
    return token[0] if isinstance(token, list) else token


# --- 4. Two-way's webhook subscription ------------------------------------------------------


def subscribe(report, api, token, service, function_url, secret_id):
    """tools/pagerduty_webhook.py, whose signing secret is stored the moment PagerDuty
    shows it (a second write, on purpose: it cannot wait for the others)."""
    url = function_url.rstrip("/") + pagerduty_webhook.WEBHOOK_PATH
    if report.dry_run:
        wanted = ({"type": "service_reference", "id": service} if service else {"type": "account_reference"})
        existing = [s for s in pagerduty_webhook.subscriptions(api, token) if pagerduty_webhook.same(s, url, wanted)]
        if existing:
            report.say(f"found webhook subscription {existing[0].get('id')} to {url}")
        else:
            report.say(f"create a webhook subscription (incident.resolved) to {url} and store its signing secret", True)
        return
    extra = {"PAGERDUTY_API_TOKEN": token, "PAGERDUTY_API_URL": api, "FUNCTION_URL": function_url,
             "SECRET_ID": secret_id, "PAGERDUTY_SERVICE_IDS": service or ""}
    environment = {k: v for k, v in os.environ.items() if k != "PAGERDUTY_READ_TOKEN"}
    done = subprocess.run([sys.executable, str(ROOT / "tools/pagerduty_webhook.py")], cwd=ROOT,
                          env={**environment, **extra}, capture_output=True, text=True)
    for line in (done.stdout + done.stderr).splitlines():
        line = line.removeprefix("pagerduty-webhook: ")
        report.say(line, changed=line.startswith(("created", "stored", "deleted")))
    if done.returncode != 0:
        raise Failure("the webhook subscription could not be set up (above)")


# --- 5. Guance ----------------------------------------------------------------------------


def guance_call(openapi, key, method, path, body=None):
    status, answer = http(method, f"{openapi}{path}", {"DF-API-KEY": key, "Accept": "application/json"},
                          body, what=f"Guance's OpenAPI at {openapi}")
    answer = answer if isinstance(answer, dict) else {}
    if status >= 400 or answer.get("success") is False:
        code = answer.get("errorCode") or ""
        if code == "ft.InvalidAPIKey" or status == 403:
            raise Failure("Guance refused GUANCE_API_KEY (ft.InvalidAPIKey): set it to a key of the workspace")
        if "CurrentLimiting" in code:
            raise Failure("Guance's rate limit (20 requests a minute per key): wait a minute and run again")
        raise Failure(f"Guance answered {method} {path} with HTTP {status} {code} {answer.get('message') or ''}".strip())
    return answer.get("content")


def listed(content):
    """The items of a Guance list answer, whatever its paging wrapper."""
    if isinstance(content, list):
        return content
    if isinstance(content, dict):
        for name in ("data", "list", "items"):
            if isinstance(content.get(name), list):
                return content[name]
    return []


def find_by_name(openapi, key, kind, name):
    """The items of Guance's `kind` list (notify_object, alert_policy) named exactly
    `name`: `search` matches parts of names."""
    query = urllib.parse.urlencode({"search": name, "pageIndex": 1, "pageSize": 100})
    return [item for item in listed(guance_call(openapi, key, "GET", f"/api/v1/{kind}/list?{query}"))
            if item.get("name") == name]


def notify_object(report, openapi, key, name, url):
    """The webhook notification object, found by name or created; its uuid
    (docs.guance.com open-api notify-object: create, list, modify)."""
    found = find_by_name(openapi, key, "notify_object", name)
    if found:
        current = found[0]
        uuid = current.get("uuid")
        if (current.get("optSet") or {}).get("url") == url:
            report.say(f"found notification object {uuid} ({name}) with the webhook URL")
            return uuid
        if report.dry_run:
            report.say(f"change notification object {uuid} ({name}) to the webhook URL", True)
            return uuid
        guance_call(openapi, key, "POST", "/api/v1/notify_object/modify",
                    {"notifyObjectUUID": uuid, "name": name, "optSet": {"url": url}})
        report.say(f"changed notification object {uuid} ({name}) to the webhook URL", True)
        return uuid
    if report.dry_run:
        report.say(f"create notification object {name} (HTTPRequest) with the webhook URL", True)
        return None
    created = guance_call(openapi, key, "POST", "/api/v1/notify_object/create",
                          {"type": "HTTPRequest", "name": name, "optSet": {"url": url}})
    uuid = created.get("uuid") if isinstance(created, dict) else None
    if not uuid:
        # No answer body is documented for create: find it again by name.
        found = find_by_name(openapi, key, "notify_object", name)
        uuid = found[0].get("uuid") if found else None
    if not uuid:
        raise Failure(f"Guance took notification object {name} but does not list it; run again")
    report.say(f"created notification object {uuid} ({name}, HTTPRequest)", True)
    return uuid


def attach(report, openapi, key, policy_name, notify_uuid, levels):
    """The notification object as a target of the alert policy for `levels`
    (docs.guance.com open-api alert-policy: list, get, modify-v2; alertOpt is replaced
    whole, so every target already there is sent back)."""
    found = find_by_name(openapi, key, "alert_policy", policy_name)
    if not found:
        raise Failure(f"no alert policy named {policy_name!r} in the workspace: create it in Guance "
                      "(Monitoring > Alert Strategies) or fix GUANCE_ALERT_POLICY, then run again")
    uuid = found[0].get("uuid")
    policy = guance_call(openapi, key, "GET", f"/api/v1/alert_policy/{urllib.parse.quote(uuid, safe='')}/get")
    policy = policy if isinstance(policy, dict) else {}
    opt = json.loads(json.dumps(policy.get("alertOpt") or {}))
    if opt.get("alertType") == "member":
        raise Failure(f"alert policy {policy_name} notifies by member, not by level: add the notification "
                      f"object to it by hand in Guance, then unset GUANCE_ALERT_POLICY (or name a "
                      "policy that notifies by level)")
    entries = opt.setdefault("alertTarget", [])
    covered = {level for entry in entries for target in entry.get("targets") or []
               if notify_uuid and notify_uuid in (target.get("to") or [])
               for level in str(target.get("status", "")).split(",")}
    missing = [level for level in levels if level not in covered]
    if not missing:
        report.say(f"alert policy {policy_name} already sends {', '.join(levels)} to the notification object")
        return
    if report.dry_run or notify_uuid is None:
        report.say(f"add the notification object to alert policy {policy_name} for {', '.join(missing)}", True)
        return
    ours = next((e for e in entries if e.get("name") == INTEGRATION_NAME), None)
    if ours is None:
        ours = {"name": INTEGRATION_NAME, "targets": []}
        entries.append(ours)
    ours.setdefault("targets", []).extend({"status": level, "to": [notify_uuid]} for level in missing)
    opt.setdefault("aggInterval", 0)
    body = {"name": policy.get("name") or policy_name, "ruleTimezone": policy.get("ruleTimezone") or "UTC",
            "alertOpt": opt}
    # Sent back as they are, so the policy's monitors and permissions stay as they were.
    for kept in ("desc", "checkerUUIDs", "securityRuleUUIDs", "openPermissionSet", "permissionSet"):
        if kept in policy and policy[kept] is not None:
            body[kept] = policy[kept]
    guance_call(openapi, key, "POST", f"/api/v1/alert_policy/{urllib.parse.quote(uuid, safe='')}/modify_v2", body)
    report.say(f"added the notification object to alert policy {policy_name} for {', '.join(missing)}", True)


# --- 6. Proof -----------------------------------------------------------------------------


def prove(report, function_url, webhook_token, api, token):
    """A labelled test alert and its recovery through the function URL; the incident read
    back from PagerDuty, opened then resolved."""
    ref = f"guance-pagerduty-setup-test-{int(time.time())}"
    url = f"{function_url.rstrip('/')}/?{urllib.parse.urlencode({'token': webhook_token})}"
    event = {"df_title": "[guance-pagerduty setup] test alert: safe to ignore, resolves itself",
             "df_monitor_checker_event_ref": ref, "df_event_id": f"{ref}-alert",
             "df_message": "Sent by make setup to prove the wiring; its recovery follows at once."}
    for status, what in (("critical", "opened"), ("ok", "resolved")):
        answer, _ = http("POST", url, {}, {**event, "df_status": status, "df_event_id": f"{ref}-{status}"},
                         what="the function URL")
        if answer not in (200, 202):
            raise Failure(f"the function answered the test {'alert' if status == 'critical' else 'recovery'} "
                          f"with HTTP {answer}; see its log (CloudWatch Logs)")
        incident = wait_for_incident(api, token, ref, what)
        report.say(f"test page {what}: incident {incident.get('id')} {incident.get('status')} "
                   f"{incident.get('html_url') or ''}".rstrip())


def wait_for_incident(api, token, ref, want):
    quoted = urllib.parse.urlencode({"incident_key": ref})
    deadline = time.monotonic() + 90
    while True:
        found = (pagerduty(api, token, "GET", f"/incidents?{quoted}") or {}).get("incidents") or []
        if found and (want == "opened" or found[0].get("status") == "resolved"):
            return found[0]
        if time.monotonic() > deadline:
            raise Failure(f"no {'incident' if want == 'opened' else 'resolve'} in PagerDuty for the test page "
                          f"({ref}) after 90 s: check the function's log and the routing key")
        time.sleep(1)


# --- The run ------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(prog="make setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--no-test", action="store_true", help="skip the test page and its recovery")
    args = parser.parse_args(os.environ.get("SETUP_ARGS", "").split() + sys.argv[1:])
    report = Report(args.dry_run)

    api = env("PAGERDUTY_API_URL", "https://api.pagerduty.com").rstrip("/")
    token = env("PAGERDUTY_API_TOKEN")
    service = env("PAGERDUTY_SERVICE_ID")
    read_token = env("PAGERDUTY_READ_TOKEN") or token
    deployer = env("DEPLOYER", "sam")
    stack = env("STACK_NAME", "guance-pagerduty")
    guance_key = conceal(env("GUANCE_API_KEY"))
    conceal(token)
    conceal(read_token)
    conceal(env("ROUTING_KEY"))
    given_function_url = env("FUNCTION_URL")
    if given_function_url and not given_function_url.startswith(("https://", "http://")):
        raise Failure("FUNCTION_URL must be the function's URL with its scheme, https://...")
    two_way = bool(guance_key) and env("TWO_WAY", "1") not in ("0", "false", "no", "off")
    if deployer not in ("sam", "cargo-lambda"):
        raise Failure("DEPLOYER must be sam or cargo-lambda")
    guance = None
    if guance_key:
        uuid = env("GUANCE_WORKSPACE_UUID")
        # The function's rule for a workspace name (src/adapters/secret.rs).
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", uuid):
            raise Failure("set GUANCE_WORKSPACE_UUID to the workspace's uuid (wksp_..., its events' df_workspace_uuid)")
        site, given_url = env("GUANCE_SITE"), env("GUANCE_OPENAPI_URL")
        if bool(site) == bool(given_url):
            raise Failure("set GUANCE_SITE (us1, eu1, cn1, ...) or GUANCE_OPENAPI_URL, one of them")
        try:
            openapi = guance_workspace.site_url(site) if site else guance_workspace.checked_url(given_url)
        except SystemExit as refused:
            raise Failure(str(refused).removeprefix("guance-workspace: ")) from None
        guance = {"uuid": uuid, "api_key": guance_key, "openapi_url": openapi}
    levels = [lvl.strip().lower() for lvl in env("GUANCE_LEVELS", "critical,error,warning,nodata").split(",") if lvl.strip()]
    if any(level not in LEVELS for level in levels):
        raise Failure(f"GUANCE_LEVELS takes {', '.join(LEVELS)} (there is no ok level: Guance sends the "
                      "recovery by itself to the targets that got the alert)")
    if two_way and not token:
        raise Failure("two-way needs PAGERDUTY_API_TOKEN (to create the webhook subscription)")

    session = boto3.session.Session(region_name=env("AWS_REGION") or None)
    if session.get_credentials() is None:
        raise NoCredentialsError()
    if args.dry_run:
        print(f"{NAME}: dry run: nothing is written")

    report.begin("1/6 PagerDuty: the routing key")
    key = conceal(routing_key(report, api, token, service))

    report.begin(f"2/6 AWS: deploy ({deployer})")
    if deployer == "sam":
        function_url, secret_id = deploy_sam(report, session, stack, key)
    else:
        function_url, secret_id = deploy_cargo_lambda(report, session, stack)
    function_url = env("FUNCTION_URL") or function_url
    secret_id = env("SECRET_ID") or secret_id or "guance-pagerduty"

    report.begin("3/6 AWS: the function's secret")
    sm = session.client("secretsmanager")
    webhook_token, arn = write_secret(report, sm, secret_id, key, read_token if two_way else None,
                                      guance if two_way else None)
    for token_value in webhook_token if isinstance(webhook_token, list) else [webhook_token]:
        conceal(token_value)
    if deployer == "cargo-lambda" and arn:
        grant_secret(report, session, stack, arn)

    report.begin("4/6 PagerDuty: two-way's webhook subscription")
    if not two_way:
        report.say("two-way off (no GUANCE_API_KEY, or TWO_WAY=0): skipped")
    elif not function_url:
        report.say("the function URL is known once deployed: created then")
    else:
        subscribe(report, api, token, service, function_url, secret_id)

    report.begin("5/6 Guance: the notification object and the alert policy")
    webhook_url = (f"{function_url.rstrip('/')}/?{urllib.parse.urlencode({'token': first_token(webhook_token)})}"
                   if function_url and webhook_token else None)
    if not guance:
        report.say("no GUANCE_API_KEY: skipped; paste the webhook URL into Guance by hand (make webhook-url)")
    elif not webhook_url:
        report.say("the webhook URL is known once deployed: created then")
    else:
        name = env("GUANCE_NOTIFY_NAME", INTEGRATION_NAME)
        notify = notify_object(report, guance["openapi_url"], guance_key, name, webhook_url)
        policy = env("GUANCE_ALERT_POLICY")
        if policy:
            attach(report, guance["openapi_url"], guance_key, policy, notify, levels)
        else:
            report.say("no GUANCE_ALERT_POLICY: add the notification object to your alert policy in Guance")

    report.begin("6/6 Proof: a test page and its recovery")
    if args.no_test or args.dry_run:
        report.say("skipped (--no-test)" if args.no_test else "skipped (dry run)")
    elif not token:
        report.say("skipped: reading the incident back needs PAGERDUTY_API_TOKEN")
    else:
        prove(report, function_url, first_token(webhook_token), api, token)

    if report.dry_run:
        print(f"{NAME}: dry run: {report.changes} change(s) would be made; nothing was written")
    elif report.changes:
        print(f"{NAME}: done, {report.changes} change(s) made")
    else:
        print(f"{NAME}: done, nothing changed: everything was already set up")


def failed_step():
    return Report.current.step if Report.current else "start"


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        sys.exit(scrub(f"{NAME}: failed at [{failed_step()}]: {failure}. The steps before it are done "
                       "and kept; run make setup again to resume (each step finds what an earlier run "
                       "made)."))
    except NoCredentialsError:
        sys.exit(f"{NAME}: no AWS credentials found (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID).")
    except NoRegionError:
        sys.exit(f"{NAME}: no AWS region set: set AWS_REGION.")
    except (ClientError, BotoCoreError) as error:
        sys.exit(scrub(f"{NAME}: failed at [{failed_step()}]: AWS: {pagerduty_webhook.why_not(error)}. "
                       "Run make setup again to resume."))
    except Exception as error:  # noqa: BLE001 - never a traceback: it may quote a secret
        sys.exit(f"{NAME}: failed at [{failed_step()}]: an unexpected {type(error).__name__}; "
                 "run make setup again to resume, and report it if it stays.")
