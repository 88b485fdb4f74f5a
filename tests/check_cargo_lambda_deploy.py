"""The cargo lambda path, verified: runs the README's exact commands (the sh block under
"With cargo lambda instead of SAM") against moto's IAM, Lambda and Secrets Manager on
loopback, then checks what a user gets. moto cannot run the function (no Docker); the
function itself is tested through the runtime emulator in tests/emulator.rs.

Usage: python tests/check_cargo_lambda_deploy.py
Prints one line per check and closes with 'N passed, N failed'.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")


def readme_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### With cargo lambda instead of SAM", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def start_moto():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    moto = subprocess.Popen(
        [str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return moto, f"http://127.0.0.1:{port}"
        except OSError:
            if time.time() > deadline:
                moto.kill()
                sys.exit("moto_server did not start")
            time.sleep(0.1)


def statement_with(statements, action):
    return next((s for s in statements if s.get("Action") == action), None)


def conditioned(statement, key, value):
    """AWS returns AddPermission's function URL parameters as a Condition; moto keeps
    them as fields of the statement. Either way, the parameter must be there."""
    if statement is None:
        return False
    if str(statement.get(key, "")).lower() == value:
        return True
    for operator in statement.get("Condition", {}).values():
        if str(operator.get(f"lambda:{key}", "")).lower() == value:
            return True
    return False


def main():
    moto, endpoint = start_moto()
    routing_key = secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "ROUTING_KEY": routing_key,
    }
    env.pop("AWS_PROFILE", None)
    # The commands run as a user types them, not as a sub-make of `make deploy-check`
    # (which would add make's "Leaving directory" line after the URL).
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    try:
        commands = readme_commands()
        print("running the README's commands:\n" + commands)
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=1800)
        check("the README's cargo lambda commands succeed", run.returncode == 0,
              f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        if run.returncode != 0:
            return
        check("no routing key in what the commands printed",
              routing_key not in run.stdout + run.stderr)

        aws = dict(endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
        lam, iam, sm = boto3.client("lambda", **aws), boto3.client("iam", **aws), boto3.client("secretsmanager", **aws)

        config = lam.get_function_configuration(FunctionName="guance-pagerduty")
        check("runtime provided.al2023", config["Runtime"] == "provided.al2023", config["Runtime"])
        check("arm64", config.get("Architectures") == ["arm64"], config.get("Architectures"))
        check("128 MB", config["MemorySize"] == 128, config["MemorySize"])
        check("30 s", config["Timeout"] == 30, config["Timeout"])
        variables = config.get("Environment", {}).get("Variables", {})
        check("PAGERDUTY_SECRET_ID=guance-pagerduty", variables.get("PAGERDUTY_SECRET_ID") == "guance-pagerduty",
              variables)
        check("the code was uploaded (a zip of a few MB)", config["CodeSize"] > 1_000_000, config["CodeSize"])

        url = lam.get_function_url_config(FunctionName="guance-pagerduty")
        check("a public function URL (AuthType NONE)", url["AuthType"] == "NONE", url["AuthType"])
        policy = json.loads(lam.get_policy(FunctionName="guance-pagerduty")["Policy"])
        statements = policy["Statement"]
        url_invoke = statement_with(statements, "lambda:InvokeFunctionUrl")
        check("lambda:InvokeFunctionUrl for everyone, AuthType NONE",
              url_invoke and url_invoke.get("Principal") in ("*", {"AWS": "*"})
              and conditioned(url_invoke, "FunctionUrlAuthType", "none"),
              statements)
        invoke = statement_with(statements, "lambda:InvokeFunction")
        check("lambda:InvokeFunction for everyone, only via the function URL",
              invoke and invoke.get("Principal") in ("*", {"AWS": "*"})
              and conditioned(invoke, "InvokedViaFunctionUrl", "true"),
              statements)

        secret = sm.describe_secret(SecretId="guance-pagerduty")
        value = json.loads(sm.get_secret_value(SecretId="guance-pagerduty")["SecretString"])
        check("the secret holds the routing key", value.get("routing_key") == routing_key)
        token = value.get("webhook_token", "")
        check("the secret holds a generated token of 48 hex digits", re.fullmatch(r"[0-9a-f]{48}", token))
        check("the webhook URL printed is the function URL plus the token",
              run.stdout.strip().splitlines()[-1] == url["FunctionUrl"].rstrip("/") + "/?token=" + token)

        role = config["Role"].rsplit("/", 1)[-1]
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        check("the role trusts lambda.amazonaws.com", "lambda.amazonaws.com" in json.dumps(trust), trust)
        attached = [p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
        check("the role may write logs (AWSLambdaBasicExecutionRole)", "AWSLambdaBasicExecutionRole" in attached,
              attached)
        document = iam.get_role_policy(RoleName=role, PolicyName="read-guance-pagerduty-secret")["PolicyDocument"]
        document = json.loads(document) if isinstance(document, str) else document
        grants = document["Statement"]
        check("the role may read exactly that secret, nothing more",
              grants == [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret["ARN"]}],
              grants)
    finally:
        moto.kill()
        moto.wait()


if __name__ == "__main__":
    main()
    failed = results.count(False)
    print(f"{results.count(True)} passed, {failed} failed")
    sys.exit(1 if failed or not results else 0)
