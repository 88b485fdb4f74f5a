"""What `sam deploy --config-file <the file make setup writes>` does with its parameters,
through SAM CLI's real command and DeployContext (this venv's pinned version), with only
packaging and CloudFormation stubbed: every parameter reaches CloudFormation with its value,
and the routing key (NoEcho) is not printed. Exits 1 otherwise. Run by tests/setup_tools."""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import samcli.commands.deploy.deploy_context as deploy_context  # noqa: E402
import samcli.commands.package.package_context as package_context  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import setup  # noqa: E402

KEY = "abcdef0123456789abcdef0123456789"
overrides = [f"PagerDutyRoutingKey={KEY}", "PagerDutyRegion=EU", "DeliveryMode=direct"]
config = Path(tempfile.mkdtemp(), "samconfig.toml")
config.write_text(setup.sam_config_text(overrides))
sent = {}


class Package:
    def __init__(self, **kw):
        self.kw = kw

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def run(self):
        shutil.copy(self.kw["template_file"], self.kw["output_template_file"])


def deploy(_self, *args, **_kw):
    for parameter in args[2]:
        sent[parameter["ParameterKey"]] = parameter.get("ParameterValue")


os.chdir(ROOT)
with mock.patch.object(package_context, "PackageContext", Package), \
        mock.patch.object(deploy_context.DeployContext, "deploy", deploy), \
        mock.patch("samcli.lib.deploy.deployer.Deployer.has_stack", return_value=False):
    from samcli.commands.deploy.command import cli
    result = CliRunner().invoke(cli, [
        "--config-file", str(config), "--stack-name", "check", "--capabilities", "CAPABILITY_IAM",
        "--s3-bucket", "bucket", "--no-confirm-changeset", "--no-fail-on-empty-changeset",
        "--region", "us-east-1", "--template-file", str(ROOT / "template.yaml")])

problems = []
if sent.get("PagerDutyRoutingKey") != KEY:
    problems.append(f"PagerDutyRoutingKey reached CloudFormation as {sent.get('PagerDutyRoutingKey')!r}")
for name, value in (("PagerDutyRegion", "EU"), ("DeliveryMode", "direct")):
    if sent.get(name) != value:
        problems.append(f"{name} reached CloudFormation as {sent.get(name)!r}")
if KEY in result.output:
    problems.append("sam printed the routing key")
if problems:
    print("\n".join(problems), f"\n(sam said: {result.output[-800:]} {result.exception!r})")
    sys.exit(1)
print("sam deploy takes every parameter of make setup's file, and prints no routing key")
