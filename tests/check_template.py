"""Checks the deployed shape of template.yaml: the SAM template transformed offline with
aws-sam-translator (what CloudFormation would receive), and the bootstrap `sam build` made.

Usage: python tests/check_template.py [path/to/built/bootstrap]
With METRICS_CATALOG=<file> (written by `cargo test --test metrics`: what the code really
emits), every alarm and dashboard widget on the function's own metrics is checked against
it. Prints one line per check and closes with 'N passed, N failed'.
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


PSEUDO = {"AWS::Region": "us-east-1", "AWS::StackName": "stack", "AWS::Partition": "aws",
          "AWS::AccountId": "123456789012", "AWS::URLSuffix": "amazonaws.com"}


def resolve(value, conditions):
    """A CloudWatch-intrinsic value as text, as CloudFormation would make it: pseudo
    parameters filled in, resources as <LogicalId> or <LogicalId.Attribute>."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(v, conditions) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Fn::Join":
            return arg[0].join(resolve(v, conditions) for v in arg[1])
        if fn == "Fn::If":
            return resolve(arg[1] if conditions[arg[0]] else arg[2], conditions)
        if fn == "Fn::Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return re.sub(r"\$\{([^}!]+)\}",
                          lambda m: resolve(names[m[1]], conditions) if m[1] in names
                          else PSEUDO.get(m[1], f"<{m[1]}>"), text)
        if fn == "Ref":
            return PSEUDO.get(arg, f"<{arg}>")
        if fn == "Fn::GetAtt":
            return "<%s>" % (".".join(arg) if isinstance(arg, list) else arg)
    if isinstance(value, dict):
        return {k: resolve(v, conditions) for k, v in value.items()}
    return value


def dashboard_references(body):
    """Every metric a dashboard body graphs: (namespace, metric, {dimension: value},
    stat), and for SEARCH expressions (namespace, metric, {dimension: None}, stat)."""
    refs = []
    for widget in body.get("widgets", []):
        props = widget.get("properties", {})
        for row in props.get("metrics", []):
            options = row[-1] if row and isinstance(row[-1], dict) else {}
            if "expression" in options and len(row) == 1:
                m = re.search(r"SEARCH\('\{\"?([^\",]+)\"?,([^}]*)\}\s+MetricName=\"([^\"]+)\"', '(\w+)'",
                              options["expression"])
                if m:
                    dims = {d.strip(): None for d in m[2].split(",") if d.strip()}
                    refs.append((props.get("title"), m[1], m[3], dims, m[4]))
                else:
                    refs.append((props.get("title"), None, options["expression"], {}, None))
                continue
            names = [c for c in row if isinstance(c, str)]
            namespace, metric, rest = names[0], names[1], names[2:]
            dims = dict(zip(rest[0::2], rest[1::2]))
            refs.append((props.get("title"), namespace, metric, dims, options.get("stat", props.get("stat"))))
    return refs


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

    # Two functions from one build: the webhook, and in queue mode the dispatcher.
    functions = resources_of(cfn, "AWS::Lambda::Function")
    check("two functions: webhook and dispatcher", set(functions) == {"WebhookFunction", "DispatcherFunction"},
          str(list(functions)))
    check("the dispatcher exists in queue mode only", functions.get("DispatcherFunction", {}).get("Condition") == "IsQueueMode")
    check("queue mode is the default deployment", sam["Parameters"]["DeliveryMode"]["Default"] == "queue")
    for fn_id, fn in functions.items():
        p = fn["Properties"]
        check(f"{fn_id}: runtime provided.al2023", p.get("Runtime") == "provided.al2023", p.get("Runtime"))
        check(f"{fn_id}: arm64", p.get("Architectures") == ["arm64"], str(p.get("Architectures")))
        check(f"{fn_id}: handler bootstrap", p.get("Handler") == "bootstrap")
        check(f"{fn_id}: 128 MB", p.get("MemorySize") == 128, str(p.get("MemorySize")))
        # One 5 s attempt plus the 1 s margin must fit; retries fill the rest.
        check(f"{fn_id}: timeout fits the retry budget", 6 < p.get("Timeout", 3) <= 60, str(p.get("Timeout")))
        env = p.get("Environment", {}).get("Variables", {})
        check(f"{fn_id}: PAGERDUTY_SECRET_ID is the stack's secret", mentions(env.get("PAGERDUTY_SECRET_ID"), "WebhookSecret"))
        check(f"{fn_id}: no secret in the environment", "PAGERDUTY_ROUTING_KEY" not in env and "WEBHOOK_TOKEN" not in env)
        for name in ("PAGERDUTY_EVENTS_URL", "NODATA_SEVERITY", "INFO_EVENTS"):
            check(f"{fn_id}: {name} configured from parameters", name in env)
        check(f"{fn_id}: DELIVERY_QUEUE_URL is the stack's queue", mentions(env.get("DELIVERY_QUEUE_URL"), "DeliveryQueue"))
    webhook = functions["WebhookFunction"]["Properties"]
    dispatcher = functions.get("DispatcherFunction", {}).get("Properties", {})
    check("the webhook's queue URL depends on DeliveryMode (direct mode: unset)",
          "IsQueueMode" in json.dumps(webhook["Environment"]["Variables"]["DELIVERY_QUEUE_URL"]))
    check("the dispatcher knows the dead-letter queue",
          mentions(dispatcher.get("Environment", {}).get("Variables", {}).get("DEAD_LETTER_QUEUE_URL"), "DeadLetterQueue"))
    check("webhook logs go to its log group", mentions(webhook.get("LoggingConfig", {}).get("LogGroup"), "WebhookLogGroup"))
    check("dispatcher logs go to its log group",
          mentions(dispatcher.get("LoggingConfig", {}).get("LogGroup"), "DispatcherLogGroup"))

    # The queues: FIFO, encrypted, 14 days, 1 MiB, visibility >= 6x the dispatcher's
    # timeout, a FIFO dead-letter queue after days of retries.
    queues = resources_of(cfn, "AWS::SQS::Queue")
    check("a delivery queue and a dead-letter queue", set(queues) == {"DeliveryQueue", "DeadLetterQueue"}, str(list(queues)))
    for q_id, q in queues.items():
        qp = q["Properties"]
        check(f"{q_id}: FIFO", qp.get("FifoQueue") is True)
        check(f"{q_id}: encrypted", qp.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in qp)
        check(f"{q_id}: 14-day retention", qp.get("MessageRetentionPeriod") == 1209600)
        check(f"{q_id}: 1 MiB messages", qp.get("MaximumMessageSize") == 1048576)
        check(f"{q_id}: queue mode only", q.get("Condition") == "IsQueueMode")
    delivery = queues["DeliveryQueue"]["Properties"]
    check("visibility timeout at least 6x the dispatcher's timeout",
          delivery.get("VisibilityTimeout", 30) >= 6 * dispatcher.get("Timeout", 3), str(delivery.get("VisibilityTimeout")))
    redrive = delivery.get("RedrivePolicy", {})
    check("redrive to the dead-letter queue", mentions(redrive.get("deadLetterTargetArn"), "DeadLetterQueue"))
    # The dispatcher's backoff is capped at 300 s (QUEUE_RETRY_MAX_SECONDS' default).
    check("maxReceiveCount spans days of retries at the capped backoff",
          redrive.get("maxReceiveCount", 0) * 300 >= 3 * 86400 and redrive.get("maxReceiveCount") <= 1000,
          str(redrive.get("maxReceiveCount")))
    check("no content-based deduplication (the function sets the ids)", delivery.get("ContentBasedDeduplication") is False)

    mappings = [m["Properties"] for m in resources_of(cfn, "AWS::Lambda::EventSourceMapping").values()]
    check("one event source mapping, queue to dispatcher", len(mappings) == 1
          and mentions(mappings[0].get("EventSourceArn"), "DeliveryQueue")
          and mentions(mappings[0].get("FunctionName"), "DispatcherFunction"), json.dumps(mappings))
    m = mappings[0] if mappings else {}
    check("batch size 10", m.get("BatchSize") == 10)
    check("ReportBatchItemFailures", m.get("FunctionResponseTypes") == ["ReportBatchItemFailures"])
    check("bounded maximum concurrency", "MaximumConcurrency" in m.get("ScalingConfig", {}))

    # The public function URL and both permissions AWS requires since October 2025.
    fn_id = "WebhookFunction"
    urls = resources_of(cfn, "AWS::Lambda::Url")
    check("a function URL with AuthType NONE, on the webhook",
          len(urls) == 1 and next(iter(urls.values()))["Properties"]["AuthType"] == "NONE"
          and mentions(next(iter(urls.values()))["Properties"]["TargetFunctionArn"], fn_id))
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

    # Least privilege, each role its own job.
    roles = resources_of(cfn, "AWS::IAM::Role")
    check("two roles: webhook and dispatcher", set(roles) == {"WebhookRole", "DispatcherRole"}, str(list(roles)))
    check("the webhook runs as its role", mentions(webhook.get("Role"), "WebhookRole"))
    check("the dispatcher runs as its role", mentions(dispatcher.get("Role"), "DispatcherRole"))

    def grants(role_id):
        role = roles[role_id]["Properties"]
        check(f"{role_id}: no managed policies", not role.get("ManagedPolicyArns"), str(role.get("ManagedPolicyArns")))
        policies = []
        for pol in role.get("Policies", []):
            if "Fn::If" in pol:  # a policy present in one mode only
                pol = pol["Fn::If"][1]
            policies.append(pol)
        allowed = {}
        for st in (st for pol in policies for st in pol["PolicyDocument"]["Statement"]):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            for a in actions:
                allowed.setdefault(a, []).append(st["Resource"])
            check(f"{role_id}: {actions} is an Allow on named resources",
                  st["Effect"] == "Allow" and "*" != st["Resource"] and st["Resource"] != ["*"], json.dumps(st))
        return allowed

    def only_on(allowed, actions, logical_id):
        return all(mentions(r, logical_id) for a in actions for r in allowed.get(a, [None]))

    web = grants("WebhookRole")
    check("webhook: exactly read the secret, write its logs, send to its queue",
          set(web) == {"secretsmanager:GetSecretValue", "logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"},
          str(sorted(web)))
    check("webhook: GetSecretValue only on the stack's secret", only_on(web, ["secretsmanager:GetSecretValue"], "WebhookSecret"))
    check("webhook: logs only into its log group", only_on(web, ["logs:CreateLogStream", "logs:PutLogEvents"], "WebhookLogGroup"))
    check("webhook: sends only to the delivery queue", only_on(web, ["sqs:SendMessage"], "DeliveryQueue"))
    check("webhook: its queue permission exists in queue mode only",
          "IsQueueMode" in json.dumps(roles["WebhookRole"]["Properties"]["Policies"]))
    disp = grants("DispatcherRole")
    consume = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    check("dispatcher: exactly read the secret, consume its queue, send to the dead-letter queue, write its logs",
          set(disp) == {"secretsmanager:GetSecretValue", "logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage", *consume},
          str(sorted(disp)))
    check("dispatcher: consumes only the delivery queue", only_on(disp, consume, "DeliveryQueue"))
    check("dispatcher: sends only to the dead-letter queue", only_on(disp, ["sqs:SendMessage"], "DeadLetterQueue"))
    check("dispatcher: GetSecretValue only on the stack's secret", only_on(disp, ["secretsmanager:GetSecretValue"], "WebhookSecret"))
    check("dispatcher: logs only into its log group", only_on(disp, ["logs:CreateLogStream", "logs:PutLogEvents"], "DispatcherLogGroup"))

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
    check("log groups with a retention period",
          set(groups) == {"WebhookLogGroup", "DispatcherLogGroup"}
          and all(g["Properties"].get("RetentionInDays") for g in groups.values()), str(list(groups)))
    alarms = [a["Properties"] for a in resources_of(cfn, "AWS::CloudWatch::Alarm").values()]

    def alarm_on(namespace, metric, logical_id):
        return [a for a in alarms if a.get("Namespace") == namespace and a.get("MetricName") == metric
                and any(mentions(d.get("Value"), logical_id) for d in a.get("Dimensions", []))]

    for metric in ("Errors", "Throttles"):
        check(f"an alarm on the webhook's {metric}", alarm_on("AWS/Lambda", metric, fn_id))
    check("an alarm on the dispatcher's errors", alarm_on("AWS/Lambda", "Errors", "DispatcherFunction"))
    check("no log metric filter: the alarms use the function's own metrics",
          not resources_of(cfn, "AWS::Logs::MetricFilter"))
    age = alarm_on("AWS/SQS", "ApproximateAgeOfOldestMessage", "DeliveryQueue")
    check("an alarm when the oldest queued page is older than 5 minutes",
          len(age) == 1 and age[0]["Threshold"] == 300 and age[0]["ComparisonOperator"] == "GreaterThanThreshold")
    dead = alarm_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", "DeadLetterQueue")
    check("an alarm when the dead-letter queue is not empty",
          len(dead) == 1 and dead[0]["Threshold"] == 1 and dead[0]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold")

    check_metrics(cfn, functions, alarms)

    outputs = cfn.get("Outputs", {})
    for name in ("FunctionUrl", "SecretArn", "WebhookUrlCommand", "DeliveryQueueUrl", "DeadLetterQueueUrl",
                 "DashboardUrl"):
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
        built = yaml_parse((path.parent.parent / "template.yaml").read_text())
        code = {fid: r["Properties"].get("CodeUri") for fid, r in built["Resources"].items()
                if r["Type"] == "AWS::Serverless::Function"}
        check("one build serves both functions", len(code) == 2 and len(set(code.values())) == 1
              and list(code.values())[0] == path.parent.name, str(code))

    check("DashboardUrl opens the stack's dashboard",
          "#dashboards:name=" in json.dumps(outputs.get("DashboardUrl")) and mentions(outputs.get("DashboardUrl"), "Dashboard"))

    passed, failed = results.count(True), results.count(False)
    print(f"template: {passed} passed, {failed} failed")
    return 1 if failed else 0


def check_metrics(cfn, functions, alarms):
    """The metrics the code emits, the alarms and the dashboard built on them."""
    envs = {fid: f["Properties"]["Environment"]["Variables"] for fid, f in functions.items()}
    namespaces = {json.dumps(env.get("METRICS_NAMESPACE"), sort_keys=True) for env in envs.values()}
    check("both functions write metrics to one namespace, per stack",
          len(namespaces) == 1 and "AWS::StackName" in next(iter(namespaces)), str(namespaces))
    namespace_value = next(iter(envs.values())).get("METRICS_NAMESPACE")
    namespace = resolve(namespace_value, {"IsQueueMode": True})
    for fid, f in functions.items():
        logging = f["Properties"].get("LoggingConfig", {})
        # Metric lines carry no level: Lambda counts them INFO, and must not filter them.
        check(f"{fid}: Lambda's log filter lets metric lines through",
              logging.get("ApplicationLogLevel", "INFO") in ("TRACE", "DEBUG", "INFO"), str(logging))
        check(f"{fid}: the log level is the function's own (RUST_LOG)", "RUST_LOG" in envs[fid])

    catalog_path = os.environ.get("METRICS_CATALOG")
    check("METRICS_CATALOG names what the code emits (cargo test --test metrics)",
          catalog_path and Path(catalog_path).exists(), str(catalog_path))
    if not (catalog_path and Path(catalog_path).exists()):
        return
    catalog = json.loads(Path(catalog_path).read_text())
    check("the catalog is of METRICS_NAMESPACE", catalog.get("namespace_variable") == "METRICS_NAMESPACE")
    emitted = {(m["metric"], frozenset(m["dimensions"])): m["unit"] for m in catalog["metrics"]}
    # Each metric's own Outcome values (Events, PagerDutyWebhooks, GuanceRestores).
    outcomes = {metric: set(values) for metric, values in catalog["outcomes"].items()}
    # The Reason values the code can emit.
    reasons = set(catalog.get("reasons", []))

    def emits(metric, dims):
        """Does the code emit `metric` under exactly this dimension set, with these values?"""
        if (metric, frozenset(dims)) not in emitted:
            return False
        value = dims.get("Outcome")
        reason = dims.get("Reason")
        return ((value is None or value in outcomes.get(metric, set()))
                and (reason is None or reason in reasons))

    def own_metrics_of(alarm):
        stats = []
        if alarm.get("MetricName"):
            stats.append((alarm.get("Namespace"), alarm["MetricName"],
                          {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}))
        for q in alarm.get("Metrics", []):
            if "MetricStat" in q:
                m = q["MetricStat"]["Metric"]
                stats.append((m.get("Namespace"), m["MetricName"],
                              {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}))
        return [(resolve(ns, {"IsQueueMode": True}), metric, dims) for ns, metric, dims in stats]

    own = []
    for alarm in alarms:
        for ns, metric, dims in own_metrics_of(alarm):
            if ns == namespace:
                own.append((alarm, metric, dims))
                check(f"alarm on {metric} {dims}: the code emits that metric with those dimensions",
                      emits(metric, dims), json.dumps(sorted(emitted, key=str), default=list))
            else:
                check(f"alarm on {ns}/{metric}: an AWS namespace or the function's own",
                      ns.startswith("AWS/"), ns)
    undelivered = [a for a, metric, dims in own if metric == "Events" and a.get("Metrics")]
    counted = {dims.get("Outcome") for a, metric, dims in own if metric == "Events" and a.get("Metrics")}
    check("an alarm on undelivered pages: refused, failed and rejected events",
          len({id(a) for a in undelivered}) == 1 and {"refused", "failed", "rejected"} <= counted, str(counted))
    key_refused = [a for a, metric, dims in own if metric == "Events" and dims == {"Outcome": "key_refused"}]
    check("an alarm on a refused routing key, at the first one",
          len(key_refused) == 1 and key_refused[0]["Threshold"] == 1 and key_refused[0]["Period"] <= 60)
    retrying = [a for a, metric, dims in own if metric == "RetryingAge" and dims == {}]
    check("an alarm on sustained retrying: an event retried for 15 minutes, seen even if retried as seldom",
          len(retrying) == 1 and retrying[0]["Threshold"] == 900000 and retrying[0]["Statistic"] == "Maximum"
          and retrying[0]["Period"] >= 900)
    refused_requests = [a for a, metric, dims in own if metric == "RequestsRefused" and dims == {}]
    check("an alarm on requests refused whole (wrong token or route, bad bodies), within minutes",
          len(refused_requests) == 1 and refused_requests[0]["Period"] <= 300)
    signatures = [a for a, metric, dims in own if metric == "RequestsRefused" and dims == {"Reason": "bad_signature"}]
    check("two-way: an alarm on PagerDuty webhooks refused for their signature, at the first one",
          len(signatures) == 1 and signatures[0]["Threshold"] == 1 and signatures[0]["Period"] <= 300)
    unrecovered = [a for a, metric, dims in own if metric == "GuanceRestores"]
    unrecovered = list({id(a): a for a in unrecovered}.values())
    counted = {dims.get("Outcome") for a in unrecovered for _, metric, dims in own_metrics_of(a)}
    check("two-way: an alarm on Guance events not recovered (refused restores, workspaces with no key)",
          len(unrecovered) == 1 and {"refused", "no_key"} <= counted, str(counted))
    retry = [a for a, metric, dims in own if metric == "PagerDutyWebhooks" and dims == {"Outcome": "retry"}]
    check("two-way: an alarm on deliveries answered retry-later for 15 minutes",
          len(retry) == 1 and retry[0]["Period"] * retry[0]["EvaluationPeriods"] >= 900)
    late = [a for a, metric, dims in own if metric == "QueueWait"]
    check("an alarm on pages waiting too long (QueueWait over 5 minutes)",
          len(late) == 1 and late[0]["Threshold"] == 300000 and late[0]["Statistic"] == "Maximum")
    lambda_alarms = {(a.get("MetricName"), resolve(d.get("Value"), {"IsQueueMode": True}))
                     for a in alarms if a.get("Namespace") == "AWS/Lambda" for d in a.get("Dimensions", [])}
    for fid in functions:
        for metric in ("Errors", "Throttles"):
            check(f"an alarm on {fid}'s {metric}", (metric, f"<{fid}>") in lambda_alarms, str(lambda_alarms))

    dashboards = resources_of(cfn, "AWS::CloudWatch::Dashboard")
    check("one dashboard", len(dashboards) == 1, str(list(dashboards)))
    if len(dashboards) != 1:
        return
    body_value = next(iter(dashboards.values()))["Properties"]["DashboardBody"]
    for queue_mode in (True, False):
        mode = "queue mode" if queue_mode else "direct mode"
        try:
            body = json.loads(resolve(body_value, {"IsQueueMode": queue_mode}))
        except ValueError as e:
            check(f"dashboard ({mode}): its body is JSON", False, str(e))
            continue
        check(f"dashboard ({mode}): its body is JSON", True)
        refs = dashboard_references(body)
        for title, ns, metric, dims, stat in refs:
            if ns == namespace:
                check(f"dashboard ({mode}) '{title}': the code emits {metric} by {sorted(dims)}",
                      emits(metric, {k: v for k, v in dims.items()}), str(dims))
            else:
                check(f"dashboard ({mode}) '{title}': {ns}/{metric} is an AWS metric", ns is not None
                      and ns.startswith("AWS/"), str(ns))
                existing = {"WebhookFunction"} | ({"DispatcherFunction", "DeliveryQueue.QueueName",
                                                    "DeadLetterQueue.QueueName"} if queue_mode else set())
                for value in dims.values():
                    check(f"dashboard ({mode}) '{title}': {ns}/{metric} of a resource in this mode",
                          value.strip("<>") in existing, value)

        def graphs(ns, metric, dims=None, stat=None):
            return any(r[1] == ns and r[2] == metric and (dims is None or r[3] == dims)
                       and (stat is None or r[4] == stat) for r in refs)
        check(f"dashboard ({mode}): events by outcome per route",
              graphs(namespace, "Events", {"Outcome": None, "Route": None}))
        check(f"dashboard ({mode}): requests refused whole, by reason",
              graphs(namespace, "RequestsRefused", {"Reason": None}))
        check(f"dashboard ({mode}): refused routing keys",
              graphs(namespace, "Events", {"Outcome": "key_refused"}))
        for stat in ("p50", "p99"):
            check(f"dashboard ({mode}): PagerDuty latency {stat}", graphs(namespace, "PagerDutyLatency", {}, stat))
            check(f"dashboard ({mode}): two-way: Guance latency {stat}", graphs(namespace, "GuanceLatency", {}, stat))
        check(f"dashboard ({mode}): two-way: PagerDuty webhooks by outcome and reason",
              graphs(namespace, "PagerDutyWebhooks", {"Outcome": None, "Reason": None}))
        check(f"dashboard ({mode}): two-way: Guance restores by workspace and outcome",
              graphs(namespace, "GuanceRestores", {"Outcome": None, "Workspace": None}))
        functions_here = ["WebhookFunction"] + (["DispatcherFunction"] if queue_mode else [])
        for fid in functions_here:
            for metric in ("Errors", "Throttles", "Duration"):
                check(f"dashboard ({mode}): {fid} {metric}",
                      graphs("AWS/Lambda", metric, {"FunctionName": f"<{fid}>"}))
        if queue_mode:
            check("dashboard: queue age", graphs("AWS/SQS", "ApproximateAgeOfOldestMessage",
                                                 {"QueueName": "<DeliveryQueue.QueueName>"}))
            check("dashboard: dead-letter depth", graphs("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                                                         {"QueueName": "<DeadLetterQueue.QueueName>"}))
            check("dashboard: time in the queue", graphs(namespace, "QueueWait", {}))
            check("dashboard: how long the oldest retried event has waited", graphs(namespace, "RetryingAge", {}))
        widgets = body["widgets"]
        overlaps = [(a["properties"].get("title"), b["properties"].get("title"))
                    for i, a in enumerate(widgets) for b in widgets[i + 1:]
                    if a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                    and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]]
        check(f"dashboard ({mode}): widgets within 24 columns, none overlapping",
              not overlaps and all(w["x"] + w["width"] <= 24 for w in widgets), str(overlaps))


if __name__ == "__main__":
    sys.exit(main())
