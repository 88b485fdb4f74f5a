"""Checks the deployed shape of template.yaml: the SAM template transformed offline with
aws-sam-translator (what CloudFormation would receive), and the bootstrap `sam build` made.

Usage: python tests/check_template.py [path/to/built/bootstrap]
Prints one line per check and closes with 'N passed, N failed'.
"""

import json
import os
import re
import sys
from pathlib import Path

# The translator asks boto for a region; offline, it is this fixed one.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


class NoManagedPolicies:
    """The template uses no SAM policy templates; nothing is looked up in IAM."""

    def load(self):
        return {}


def resources_of(cfn, kind):
    return {k: r for k, r in cfn["Resources"].items() if r["Type"] == kind}


def mentions(value, logical_id):
    """Does this CloudFormation value refer to the given resource?"""
    text = json.dumps(value)
    return re.search(r'"(Ref|Fn::GetAtt)": \[?"%s[".]' % re.escape(logical_id), text) or (
        "${%s" % logical_id in text
    )


def main():
    sam = yaml_parse(Path(os.environ.get("TEMPLATE", ROOT / "template.yaml")).read_text())
    # As `sam package` would leave it: the code is in S3 by then.
    packaged = json.loads(json.dumps(sam))
    for r in packaged["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/guance-pagerduty.zip"
    cfn = transform(
        packaged,
        {"PagerDutyRoutingKey": "0" * 32, "AWS::Region": "us-east-1", "AWS::Partition": "aws"},
        NoManagedPolicies(),
    )
    res = cfn["Resources"]

    # The function.
    functions = resources_of(cfn, "AWS::Lambda::Function")
    check("one function", len(functions) == 1, str(list(functions)))
    fn_id, fn = next(iter(functions.items()))
    p = fn["Properties"]
    check("runtime provided.al2023", p.get("Runtime") == "provided.al2023", p.get("Runtime"))
    check("arm64", p.get("Architectures") == ["arm64"], str(p.get("Architectures")))
    check("handler bootstrap", p.get("Handler") == "bootstrap")
    check("128 MB", p.get("MemorySize") == 128, str(p.get("MemorySize")))
    # One 5 s attempt plus the 1 s margin must fit; retries fill the rest.
    check("timeout fits the retry budget", 6 < p.get("Timeout", 3) <= 60, str(p.get("Timeout")))
    env = p.get("Environment", {}).get("Variables", {})
    check("PAGERDUTY_SECRET_ID is the stack's secret", mentions(env.get("PAGERDUTY_SECRET_ID"), "WebhookSecret"))
    check("no secret in the environment", "PAGERDUTY_ROUTING_KEY" not in env and "WEBHOOK_TOKEN" not in env)
    for name in ("PAGERDUTY_EVENTS_URL", "NODATA_SEVERITY", "INFO_EVENTS"):
        check(f"{name} configured from parameters", name in env)
    logging = p.get("LoggingConfig", {})
    check("logs go to the stack's log group", mentions(logging.get("LogGroup"), "WebhookLogGroup"))

    # The public function URL and both permissions AWS requires since October 2025.
    urls = resources_of(cfn, "AWS::Lambda::Url")
    check("a function URL with AuthType NONE",
          len(urls) == 1 and next(iter(urls.values()))["Properties"]["AuthType"] == "NONE")
    perms = [r["Properties"] for r in resources_of(cfn, "AWS::Lambda::Permission").values()]
    url_perm = [q for q in perms if q.get("Action") == "lambda:InvokeFunctionUrl"
                and q.get("FunctionUrlAuthType") == "NONE" and q.get("Principal") == "*"
                and mentions(q.get("FunctionName"), fn_id)]
    invoke_perm = [q for q in perms if q.get("Action") == "lambda:InvokeFunction"
                   and q.get("InvokedViaFunctionUrl") is True and q.get("Principal") == "*"
                   and mentions(q.get("FunctionName"), fn_id)]
    check("lambda:InvokeFunctionUrl for everyone", len(url_perm) == 1, json.dumps(perms))
    check("lambda:InvokeFunction with InvokedViaFunctionUrl", len(invoke_perm) == 1, json.dumps(perms))
    check("no other invoke permission", len(perms) == 2, json.dumps(perms))

    # Least privilege: read the one secret, write its own logs.
    role_ref = p.get("Role")
    roles = resources_of(cfn, "AWS::IAM::Role")
    check("one role, the function's", len(roles) == 1 and mentions(role_ref, next(iter(roles))), str(role_ref))
    role = next(iter(roles.values()))["Properties"]
    check("no managed policies", not role.get("ManagedPolicyArns"), str(role.get("ManagedPolicyArns")))
    statements = [s for pol in role.get("Policies", []) for s in pol["PolicyDocument"]["Statement"]]
    allowed = {}
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for a in actions:
            allowed.setdefault(a, []).append(s["Resource"])
        check(f"statement {actions} is an Allow on named resources",
              s["Effect"] == "Allow" and "*" != s["Resource"] and s["Resource"] != ["*"], json.dumps(s))
    check("actions are exactly these three",
          set(allowed) == {"secretsmanager:GetSecretValue", "logs:CreateLogStream", "logs:PutLogEvents"},
          str(sorted(allowed)))
    check("GetSecretValue only on the stack's secret",
          all(mentions(r, "WebhookSecret") for r in allowed.get("secretsmanager:GetSecretValue", [None])))
    check("logs only into the stack's log group",
          all(mentions(r, "WebhookLogGroup") for a in ("logs:CreateLogStream", "logs:PutLogEvents")
              for r in allowed.get(a, [None])))

    # The secret: routing key from a NoEcho parameter, token generated.
    check("routing key parameter is NoEcho", sam["Parameters"]["PagerDutyRoutingKey"].get("NoEcho") is True)
    secrets = resources_of(cfn, "AWS::SecretsManager::Secret")
    gen = next(iter(secrets.values()))["Properties"].get("GenerateSecretString", {}) if secrets else {}
    check("one secret whose webhook_token is generated",
          len(secrets) == 1 and gen.get("GenerateStringKey") == "webhook_token"
          and gen.get("PasswordLength", 0) >= 32 and gen.get("ExcludePunctuation") is True, json.dumps(gen))
    check("the secret template carries the routing key parameter",
          "PagerDutyRoutingKey" in json.dumps(gen.get("SecretStringTemplate")))

    # Logs kept for a while, and alarms.
    groups = resources_of(cfn, "AWS::Logs::LogGroup")
    check("log group with a retention period",
          len(groups) == 1 and next(iter(groups.values()))["Properties"].get("RetentionInDays"))
    alarms = [a["Properties"] for a in resources_of(cfn, "AWS::CloudWatch::Alarm").values()]
    for metric in ("Errors", "Throttles"):
        check(f"an alarm on the function's {metric}",
              any(a.get("Namespace") == "AWS/Lambda" and a.get("MetricName") == metric
                  and any(mentions(d.get("Value"), fn_id) for d in a.get("Dimensions", [])) for a in alarms))
    check("an alarm on undelivered events", any(a.get("Namespace") == "guance-pagerduty" for a in alarms))

    outputs = cfn.get("Outputs", {})
    for name in ("FunctionUrl", "SecretArn", "WebhookUrlCommand"):
        check(f"output {name}", name in outputs)
    check("WebhookUrlCommand prints the URL with its token",
          "?token=" in json.dumps(outputs.get("WebhookUrlCommand")) and "webhook_token" in json.dumps(outputs.get("WebhookUrlCommand")))

    # The artefact sam build made.
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        head = path.read_bytes()[:20] if path.exists() else b""
        check("sam build made bootstrap", path.exists(), str(path))
        # ELF, 64-bit, little-endian, e_machine 0xB7 = AArch64.
        check("bootstrap is an arm64 ELF executable",
              head[:4] == b"\x7fELF" and head[4] == 2 and head[18:20] == b"\xb7\x00", head.hex())

    passed, failed = results.count(True), results.count(False)
    print(f"template: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
