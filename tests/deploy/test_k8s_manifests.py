"""deploy/k8s renders with kustomize, validates strictly against the Kubernetes schemas, and keeps
the properties other issues rely on (replicas, probes, resources, least-privilege RBAC)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
# The oldest version we support (matchLabelKeys in topology spread needs >= 1.27) and the newest
# schema the validator ships.
K8S_VERSIONS = ["1.30.0", kv.latest_version()]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required to render deploy/k8s"
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def test_renders_the_expected_objects(rendered):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert kinds == [
        ("ConfigMap", "pipeline-guard-config"),
        ("ConfigMap", "pipeline-guard-env"),
        ("Deployment", "pipeline-guard"),
        ("Namespace", "pipeline-guard"),
        ("PodDisruptionBudget", "pipeline-guard"),
        ("Role", "pipeline-guard-healer"),
        ("RoleBinding", "pipeline-guard-healer"),
        ("Service", "pipeline-guard"),
        ("ServiceAccount", "pipeline-guard"),
    ]
    assert all(
        d["metadata"].get("namespace") == "pipeline-guard" for d in rendered if d["kind"] != "Namespace"
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_strictly(rendered, version):
    example = yaml.safe_load((K8S_DIR / "secret.example.yaml").read_text())
    for doc in [*rendered, example]:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc.message}")


def test_deployment_shape(rendered):
    deployment = one(rendered, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert container["image"] == "pipeline-guard:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "250m"},
        "limits": {"memory": "512Mi", "cpu": "500m"},
    }
    assert {"name": "PIPELINE_ENV", "value": "production"} in container["env"]
    assert {"configMapRef": {"name": "pipeline-guard-env"}} in container["envFrom"]
    assert {"secretRef": {"name": "pipeline-guard-secrets", "optional": False}} in container["envFrom"]
    assert pod["serviceAccountName"] == "pipeline-guard"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/app/var"]]
    assert volumes[mounts["/etc/pipeline-guard"]]["configMap"]["name"] == "pipeline-guard-config"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"] == "DoNotSchedule"


def test_config_file_is_mounted_where_pipeline_config_points(rendered):
    configmaps = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "ConfigMap"}
    path = configmaps["pipeline-guard-env"]["data"]["PIPELINE_CONFIG"]
    assert path == "/etc/pipeline-guard/config.yaml"
    yaml.safe_load(configmaps["pipeline-guard-config"]["data"]["config.yaml"])  # parses


def test_service_and_pdb_select_the_deployments_pods(rendered):
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service, pdb = one(rendered, "Service"), one(rendered, "PodDisruptionBudget")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_role_grants_exactly_what_the_kubernetes_strategy_needs(rendered):
    role = one(rendered, "Role")
    # Compared as exact rule objects: any extra verb, resource, group or field fails here.
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets", "daemonsets"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale", "statefulsets/scale"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "delete"]},
    ]
    assert not any(d["kind"] in ("ClusterRole", "ClusterRoleBinding") for d in rendered)
    binding = one(rendered, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-guard", "namespace": "pipeline-guard"}
    ]


def test_secret_template_is_never_applied_and_only_holds_placeholders(rendered):
    assert not any(d["kind"] == "Secret" for d in rendered)
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    example = yaml.safe_load((K8S_DIR / "secret.example.yaml").read_text())
    assert set(example["stringData"]) == {
        "PIPELINE_DATABASE_URL",
        "PIPELINE_SECRET_KEY",
        "PIPELINE_ENCRYPTION_KEY",
        "PIPELINE_ADMIN_PASSWORD",
    }
    assert all("CHANGE-ME" in value for value in example["stringData"].values())
