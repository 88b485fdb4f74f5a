"""make cargo-lambda-secret: after `cargo lambda deploy`, gives the function what that
path does not create: the secret holding the PagerDuty routing key and a generated webhook
token, and its role's permission to read that one secret. Prints the webhook URL to paste
into Guance. Run again to change the routing key: the token is kept.

ROUTING_KEY (required), FUNCTION (default guance-pagerduty), SECRET_ID (default the
function's PAGERDUTY_SECRET_ID). Needs AWS credentials and a region, as the AWS CLI does."""

import json
import os
import secrets
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

function = os.environ.get("FUNCTION") or "guance-pagerduty"
routing_key = os.environ.get("ROUTING_KEY", "").strip()
if not routing_key.isalnum():
    sys.exit("cargo-lambda-secret: set ROUTING_KEY to the Events API v2 integration key (letters and digits).")

try:
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise NoCredentialsError()
    lam, sm, iam = session.client("lambda"), session.client("secretsmanager"), session.client("iam")
    config = lam.get_function_configuration(FunctionName=function)
    secret_id = os.environ.get("SECRET_ID") or config.get("Environment", {}).get("Variables", {}).get(
        "PAGERDUTY_SECRET_ID", "guance-pagerduty")
    try:
        current = json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"])
        token = current.get("webhook_token") or secrets.token_hex(24)
        value = {**current, "routing_key": routing_key, "webhook_token": token}
        arn = sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))["ARN"]
        print(f"cargo-lambda-secret: updated the routing key in {secret_id} (token kept)", file=sys.stderr)
    except sm.exceptions.ResourceNotFoundException:
        token = secrets.token_hex(24)
        arn = sm.create_secret(
            Name=secret_id,
            Description="guance-pagerduty routing key and the webhook token Guance must present",
            SecretString=json.dumps({"routing_key": routing_key, "webhook_token": token}),
        )["ARN"]
        print(f"cargo-lambda-secret: created the secret {secret_id}", file=sys.stderr)
    role = config["Role"].rsplit("/", 1)[-1]
    iam.put_role_policy(
        RoleName=role,
        PolicyName="read-guance-pagerduty-secret",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}],
        }),
    )
    print(f"cargo-lambda-secret: role {role} may now read {secret_id}", file=sys.stderr)
    url = lam.get_function_url_config(FunctionName=function)["FunctionUrl"]
except NoCredentialsError:
    sys.exit("cargo-lambda-secret: no AWS credentials found (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID).")
except NoRegionError:
    sys.exit("cargo-lambda-secret: no AWS region set: set AWS_REGION to the function's region.")
except (ClientError, BotoCoreError) as error:
    sys.exit(f"cargo-lambda-secret: {error}")

print(f"{url.rstrip('/')}/?token={token}")
