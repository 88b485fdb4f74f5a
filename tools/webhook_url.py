"""make webhook-url: prints the URL to paste into Guance, from the deployed stack's
outputs and its secret. Needs AWS credentials for the account and region of the stack."""

import json
import os
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

stack = os.environ.get("STACK_NAME", "guance-pagerduty")
route = os.environ.get("ROUTE", "").strip("/")

try:
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise NoCredentialsError()
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    secret = session.client("secretsmanager").get_secret_value(SecretId=outputs["SecretArn"])
    token = json.loads(secret["SecretString"])["webhook_token"]
    # During a rotation the secret lists several; the first is the one to give Guance.
    token = token if isinstance(token, str) else token[0]
except NoCredentialsError:
    sys.exit("webhook-url: no AWS credentials found. Configure them (aws configure, AWS_PROFILE or "
             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the account the stack is in, then run again.")
except NoRegionError:
    sys.exit("webhook-url: no AWS region set. Set AWS_REGION (or AWS_DEFAULT_REGION) to the stack's region.")
except KeyError as missing:
    sys.exit(f"webhook-url: stack {stack!r} has no {missing} output or its secret no webhook_token; was it deployed from this template.yaml?")
except (ClientError, BotoCoreError) as error:
    sys.exit(f"webhook-url: {error}")

base = outputs["FunctionUrl"].rstrip("/")
print(f"{base}/{route}?token={token}" if route else f"{base}/?token={token}")
