"""deploy/cloudformation/veil-seed.yaml: valid for cfn-lint, and its key policies and the
Veil configurations it embeds grant each service exactly what config/<service>.yaml grants.

The key policies are the only place the template grants KMS use (task roles carry no KMS
permissions), so for each department key and each service role the allowed actions must be
kms:GenerateDataKey where the service's Veil config may encrypt with that department's key,
kms:Decrypt where it may decrypt, and nothing else. Each embedded VEIL_CONFIG, with
placeholder ARNs and brokers substituted, must pass `veil check`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "cloudformation" / "veil-seed.yaml"
SERVICES = {"owner": "OwnerTaskRole", "finance": "FinanceTaskRole", "sales": "SalesTaskRole"}
KEYS = {"finance": "FinanceKey", "sales": "SalesKey"}
FAKE_ARN = {"FinanceKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/11111111-1111-1111-1111-111111111111",
            "SalesKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/22222222-2222-2222-2222-222222222222"}


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt ...) as {"Fn": value}."""


def _tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def grants_by_department(config: dict) -> dict[str, set[str]]:
    """{"encrypt": {department KMS names}, "decrypt": {...}} from a Veil configuration."""
    grants = config.get("grants") or {}
    return {use: {ref.split("/", 1)[0] for ref in grants.get(use) or []} for use in ("encrypt", "decrypt")}


def repo_config(service: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{service}.yaml").read_text())


def test_cfn_lint_passes():
    r = subprocess.run(["cfn-lint", "--format", "parseable", str(TEMPLATE)], capture_output=True, text=True)
    assert r.returncode == 0, f"cfn-lint found problems:\n{r.stdout}{r.stderr}"


def test_key_policies_grant_exactly_the_veil_configs_grants(template):
    resources = template["Resources"]
    for service, role in SERVICES.items():
        want = grants_by_department(repo_config(service))
        role_props = resources[role]["Properties"]
        assert "ManagedPolicyArns" not in role_props, f"{role} must carry no managed policies"
        own = [a for p in role_props.get("Policies", []) for st in p["PolicyDocument"]["Statement"]
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
        assert own and all(a.startswith("kafka-cluster:") for a in own), \
            f"{role} may carry MSK permissions only; the key policies grant KMS use: {own}"
        for dept, key in KEYS.items():
            statements = resources[key]["Properties"]["KeyPolicy"]["Statement"]
            actions = set()
            for st in statements:
                if st["Effect"] == "Allow" and st["Principal"].get("AWS") == {"Fn::GetAtt": [role, "Arn"]}:
                    a = st["Action"]
                    actions |= set(a if isinstance(a, list) else [a])
            expected = ({"kms:GenerateDataKey"} if dept in want["encrypt"] else set()) | \
                       ({"kms:Decrypt"} if dept in want["decrypt"] else set())
            assert actions == expected, f"{key} grants {role} {sorted(actions)}; config/{service}.yaml means {sorted(expected)}"
        # Key administration is for the account's administrators, never a crypto operation.
    for key in KEYS.values():
        admin = [s for s in resources[key]["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == "KeyAdministration"]
        assert admin and not {"kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt", "kms:*"} & set(admin[0]["Action"])


def embedded_config(template: dict, service: str) -> tuple[str, dict]:
    """The service's VEIL_CONFIG text with the template's substitutions made (placeholder values)."""
    task = template["Resources"][f"{service.capitalize()}TaskDefinition"]["Properties"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": [SERVICES[service], "Arn"]}
    (veil,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "veil"]
    (app,) = [c for c in task["ContainerDefinitions"] if c["Name"] == "app"]
    env = {e["Name"]: e["Value"] for e in app["Environment"]}
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092", "the application must talk to its sidecar on localhost"
    assert app["DependsOn"] == [{"ContainerName": "veil", "Condition": "HEALTHY"}]
    assert veil["HealthCheck"]["Command"] == ["CMD", "/usr/local/bin/veil", "health"]
    (value,) = [e["Value"] for e in veil["Environment"] if e["Name"] == "VEIL_CONFIG"]
    text, variables = value["Fn::Sub"]
    values = {"Brokers": "b-1.example:9098,b-2.example:9098", "AWS::Region": "eu-west-1",
              "TopicName": template["Parameters"]["TopicName"]["Default"]} | FAKE_ARN
    for name in variables:
        assert name in values, f"unexpected substitution {name}"
    text = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)
    return text, yaml.safe_load(text)


def role_actions(template: dict, role: str) -> dict[str, object]:
    """The role's kafka-cluster actions, each with the resource it is allowed on."""
    actions = {}
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            assert st["Effect"] == "Allow"
            for a in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
                actions[a] = st["Resource"]
    return actions


def test_msk_admits_only_iam_signed_sidecars_with_their_own_topic_rights(template):
    """The cluster takes IAM over TLS only; the owner may write and not read, each consumer
    may read and not write, every right is confined to this cluster and the seed topic, and
    each sidecar signs in with AWS_MSK_IAM against the IAM bootstrap brokers."""
    resources = template["Resources"]
    auth = resources["MskCluster"]["Properties"]["ClientAuthentication"]
    assert auth["Sasl"]["Iam"]["Enabled"] is True and auth["Unauthenticated"]["Enabled"] is False
    assert "Tls" not in auth and "Scram" not in auth["Sasl"]
    assert resources["MskCluster"]["Properties"]["EncryptionInfo"]["EncryptionInTransit"]["ClientBroker"] == "TLS"
    (ingress,) = resources["MskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (9098, 9098), "MSK's IAM listener is 9098"
    topic = "topic/${AWS::StackName}-departments/*/${TopicName}"
    for service, role in SERVICES.items():
        actions = role_actions(template, role)
        assert actions["kafka-cluster:Connect"] == {"Ref": "MskCluster"}
        config = repo_config(service)
        writes, reads = bool(grants_by_department(config)["encrypt"]), bool(grants_by_department(config)["decrypt"])
        assert ("kafka-cluster:WriteData" in actions) == writes, f"{role}: WriteData iff config/{service}.yaml encrypts"
        assert ("kafka-cluster:ReadData" in actions) == reads, f"{role}: ReadData iff config/{service}.yaml decrypts"
        for action in ("kafka-cluster:WriteData", "kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"):
            if action in actions:
                assert actions[action]["Fn::Sub"].endswith(topic), f"{role}: {action} must name only the seed topic"
        for action, resource in actions.items():
            assert "*" != resource and "kafka-cluster:*" != action, f"{role}: {action} on {resource} is too broad"
        text, config = embedded_config(template, service)
        assert config["upstream"]["tls"] is True
        assert config["upstream"]["sasl"] == {"mechanism": "AWS_MSK_IAM", "region": "eu-west-1"}
    task = resources["OwnerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    (veil,) = [c for c in task if c["Name"] == "veil"]
    (value,) = [e["Value"] for e in veil["Environment"] if e["Name"] == "VEIL_CONFIG"]
    assert value["Fn::Sub"][1]["Brokers"] == {"Fn::GetAtt": ["BootstrapBrokers", "SaslIam"]}
    lambda_code = resources["BootstrapBrokersFunction"]["Properties"]["Code"]["ZipFile"]
    assert '["BootstrapBrokerStringSaslIam"]' in lambda_code


@pytest.mark.parametrize("service", list(SERVICES))
def test_embedded_veil_config_matches_repo_config(template, service, tmp_path):
    text, config = embedded_config(template, service)
    repo = repo_config(service)
    assert config["identity"] == repo["identity"]
    assert config["listen"] == "127.0.0.1:9092"
    assert grants_by_department(config) == grants_by_department(repo)
    assert set(config["kms"]) == set(repo["kms"]) and all(k["type"] == "aws-kms" for k in config["kms"].values())
    # Topic policies as in the repository's config, with KMS key ARNs in place of local key ids.
    def shape(topics):
        return yaml.safe_dump([{k: v for k, v in t.items() if k != "encrypt"} |
                               ({"encrypt": {k: v for k, v in t["encrypt"].items() if k != "keys"} |
                                 {"keys": {sel: ref.split("/", 1)[0] for sel, ref in t["encrypt"]["keys"].items()}}}
                                if "encrypt" in t else {}) for t in topics])
    assert shape(config["topics"]) == shape(repo["topics"])
    veil = Path(os.environ.get("VEIL_BIN", REPO / ".build" / "debug" / "veil"))
    if not veil.is_file():
        pytest.fail(f"{veil} not built; set VEIL_BIN", pytrace=False)
    path = tmp_path / f"{service}.yaml"
    path.write_text(text)
    r = subprocess.run([str(veil), "check", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"veil check rejects the template's {service} configuration:\n{r.stdout}{r.stderr}\n{text}"
