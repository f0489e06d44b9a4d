"""The Kubernetes manifests in docs/kubernetes, validated offline.

- Built-in kinds (Deployment, Service, HorizontalPodAutoscaler,
  PodDisruptionBudget, ...) against the Kubernetes OpenAPI schemas that the
  PyPI package kubernetes-validate bundles, in strict mode: an unknown or
  misspelt field fails, not only a wrong type. Checked against the oldest and
  the newest Kubernetes version we document.
- KEDA's custom resources (ScaledObject, ScaledJob, TriggerAuthentication)
  are not in those schemas and their CRDs are not available offline: they are
  checked against a small schema written here (required fields, types, no
  unknown fields where KEDA has a closed set); a ScaledJob's `jobTargetRef`
  is a Kubernetes JobSpec and is checked, strictly, as one.
- Then what the docs promise: the grace budget (terminationGracePeriodSeconds
  above ENTRYPOINT_STOP_TIMEOUT, plus any preStop sleep), the hardened
  security context, health through `entrypoint health`, names that refer to
  each other, only variables the entrypoint knows, and Jobs that can complete
  (ENTRYPOINT_RESTART=on-failure or never: with `always` a worker's exit 0
  starts it again and the Job never ends).

The checks are pure functions returning a list of problems; the last tests
break good manifests on purpose and require each check to notice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from entrypoint.plan import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "docs" / "kubernetes"
EXPECTED_FILES = (
    "README.md",
    "web-deployment.yaml",
    "worker-deployment.yaml",
    "scheduler-deployment.yaml",
    "worker-autoscaling.yaml",
    "job.yaml",
    "keda-scaledjob.yaml",
)
OLDEST_SUPPORTED = (1, 30)  # the oldest Kubernetes the docs claim (docs/kubernetes/README.md)


def _versions() -> tuple[str, str]:
    """The oldest bundled schema version we support and the newest one bundled."""
    bundled = sorted(
        {
            tuple(int(part) for part in v.split(".")[:2])
            for v in kubernetes_validate.utils.all_versions()
        }
    )
    oldest = next((v for v in bundled if v >= OLDEST_SUPPORTED), bundled[-1])
    return f"{oldest[0]}.{oldest[1]}", f"{bundled[-1][0]}.{bundled[-1][1]}"


KUBERNETES_VERSIONS = _versions()

DEFAULT_STOP_TIMEOUT = 25.0
SUPERVISED_MODES = frozenset({"worker", "scheduler"})
VALID_MODES = frozenset({"", "web", "worker", "scheduler"})
# The entrypoint's own list (MODE and the *_CMD variables among them).
KNOWN_VARIABLES = settings.KNOWN_VARIABLES
# Kinds whose pods run to completion: the worker's exit 0 must end the container.
RUN_TO_COMPLETION = frozenset({"Job", "ScaledJob"})
HEALTH_COMMAND = ["entrypoint", "health"]

Manifest = dict[str, Any]


# --- loading -------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_documents(text: str) -> list[Manifest]:
    """The non-empty YAML documents of one file; yaml.YAMLError when it is not valid YAML."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


@dataclass(frozen=True)
class Doc:
    file: str
    index: int
    body: Manifest

    @property
    def label(self) -> str:
        kind = self.body.get("kind", "?") if isinstance(self.body, dict) else "?"
        name = _get(self.body, "metadata", "name") or "?"
        return f"{self.file}#{self.index}:{kind}/{name}"


def _manifest_files() -> list[Path]:
    return sorted(MANIFEST_DIR.glob("*.yaml")) + sorted(MANIFEST_DIR.glob("*.yml"))


def _all_docs() -> list[Doc]:
    docs: list[Doc] = []
    for path in _manifest_files():
        try:
            bodies = load_documents(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue  # reported by test_every_file_parses
        docs.extend(Doc(path.name, i, body) for i, body in enumerate(bodies))
    return docs


DOCS = _all_docs()


# --- helpers -------------------------------------------------------------------


def _get(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]... or None when any step is missing."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(data, list) or key >= len(data):
                return None
        elif not isinstance(data, dict):
            return None
        data = data[key] if isinstance(key, int) else data.get(key)
    return data


def _pod_spec(doc: Manifest) -> dict[str, Any] | None:
    """The pod template's spec: a workload's, or a ScaledJob's (in its JobSpec)."""
    if doc.get("kind") == "ScaledJob":
        spec = _get(doc, "spec", "jobTargetRef", "template", "spec")
    else:
        spec = _get(doc, "spec", "template", "spec")
    return spec if isinstance(spec, dict) else None


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            if isinstance(container, dict):
                yield container


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    """Plain env values by name (None for valueFrom)."""
    return {
        item["name"]: item.get("value")
        for item in container.get("env") or []
        if isinstance(item, dict) and "name" in item
    }


def _pre_stop_sleep(container: dict[str, Any]) -> float:
    """Seconds a preStop hook spends before the stop signal (sleep action or `sleep N`)."""
    pre_stop = _get(container, "lifecycle", "preStop") or {}
    seconds = _get(pre_stop, "sleep", "seconds")
    if isinstance(seconds, int):
        return float(seconds)
    command = _get(pre_stop, "exec", "command") or []
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
        return float(command[1])
    return 0.0


def _stop_timeout(env: dict[str, str | None]) -> float:
    value = env.get("ENTRYPOINT_STOP_TIMEOUT")
    return float(value) if value is not None else DEFAULT_STOP_TIMEOUT


def _mode(env: dict[str, str | None]) -> str:
    return (env.get("MODE") or "").strip().lower()


# --- checks --------------------------------------------------------------------


def schema_problems(doc: Manifest, version: str) -> list[str]:
    """Strict validation of a built-in kind against the bundled Kubernetes schemas."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path) or "(top)"
        return [f"Kubernetes {exc.version}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


_OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT_OR_NULL = {"type": "integer", "minimum": 0}

_TRIGGERS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["type", "metadata"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "minLength": 1},
            "name": {"type": "string"},
            "useCachedMetrics": {"type": "boolean"},
            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
            # KEDA reads every trigger parameter as a string.
            "metadata": _STRING_MAP,
            "authenticationRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                },
            },
        },
    },
}

# A subset of KEDA's CRDs (keda.sh/v1alpha1), as written in its docs: enough to
# catch a missing required field, a wrong type or a misspelt key.
CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": _INT_OR_NULL,
                    "cooldownPeriod": _INT_OR_NULL,
                    "initialCooldownPeriod": _INT_OR_NULL,
                    "idleReplicaCount": _INT_OR_NULL,
                    "minReplicaCount": _INT_OR_NULL,
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {
                        "type": "object",
                        "required": ["failureThreshold", "replicas"],
                        "properties": {
                            "failureThreshold": {"type": "integer"},
                            "replicas": {"type": "integer"},
                        },
                    },
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "behavior": {"type": "object"},
                                },
                            },
                            "scalingModifiers": {"type": "object"},
                        },
                    },
                    "triggers": _TRIGGERS,
                },
            },
        },
    },
    # The fields of KEDA's scaledjob_types.go; `jobTargetRef` is a batch/v1 JobSpec,
    # checked against the Kubernetes schema by custom_schema_problems.
    ("keda.sh/v1alpha1", "ScaledJob"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledJob"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "required": ["jobTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "jobTargetRef": {"type": "object", "required": ["template"]},
                    "pollingInterval": _INT_OR_NULL,
                    "successfulJobsHistoryLimit": _INT_OR_NULL,
                    "failedJobsHistoryLimit": _INT_OR_NULL,
                    "rolloutStrategy": {"enum": ["default", "gradual"]},  # deprecated: rollout
                    "rollout": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "strategy": {"enum": ["default", "gradual"]},
                            "propagationPolicy": {"enum": ["foreground", "background"]},
                        },
                    },
                    "envSourceContainerName": {"type": "string"},
                    "minReplicaCount": _INT_OR_NULL,
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "scalingStrategy": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "strategy": {"enum": ["default", "custom", "accurate", "eager"]},
                            "customScalingQueueLengthDeduction": {"type": "integer"},
                            "customScalingRunningJobPercentage": {"type": "string"},
                            "pendingPodConditions": {
                                "type": "array",
                                "items": {"type": "string"},
                            },
                            "multipleScalersCalculation": {"enum": ["max", "min", "avg", "sum"]},
                        },
                    },
                    "triggers": _TRIGGERS,
                },
            },
        },
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"type": "string", "minLength": 1},
                                "name": {"type": "string", "minLength": 1},
                                "key": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                    "env": {"type": "array"},
                    "podIdentity": {"type": "object"},
                    "hashiCorpVault": {"type": "object"},
                    "azureKeyVault": {"type": "object"},
                    "awsSecretManager": {"type": "object"},
                    "gcpSecretManager": {"type": "object"},
                    "configMapTargetRef": {"type": "array"},
                    "boundServiceAccountToken": {"type": "array"},
                },
                "additionalProperties": False,
            },
        },
    },
    # prometheus-operator's PrometheusRule (monitoring.coreos.com/v1), the fields of
    # its CRD's spec.groups; the PromQL itself is checked by promtool (test_metrics_docs.py).
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _OBJECT_META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": {"type": "string"},
                                "query_offset": {"type": "string"},
                                "limit": {"type": "integer"},
                                "partial_response_strategy": {"type": "string"},
                                "labels": _STRING_MAP,
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "oneOf": [
                                            {"required": ["record"]},
                                            {"required": ["alert"]},
                                        ],
                                        "additionalProperties": False,
                                        "properties": {
                                            "record": {"type": "string", "minLength": 1},
                                            "alert": {"type": "string", "minLength": 1},
                                            "expr": {"type": ["string", "integer"]},
                                            "for": {"type": "string"},
                                            "keep_firing_for": {"type": "string"},
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def is_custom(doc: Manifest) -> bool:
    """A custom resource: its API group has a dot and is not a Kubernetes one."""
    api_version = str(doc.get("apiVersion", ""))
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return "." in group and not group.endswith(".k8s.io")


def custom_schema_problems(doc: Manifest) -> list[str]:
    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    schema = CUSTOM_SCHEMAS.get(key)
    if schema is None:
        return [f"no schema for custom resource {key[0]} {key[1]}: add one to CUSTOM_SCHEMAS"]
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{'.'.join(str(p) for p in error.path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]
    job_spec = _get(doc, "spec", "jobTargetRef")
    if key == ("keda.sh/v1alpha1", "ScaledJob") and isinstance(job_spec, dict):
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": job_spec}
        for version in KUBERNETES_VERSIONS:
            problems += [f"jobTargetRef: {p}" for p in schema_problems(job, version)]
    return problems


def budget_problems(doc: Manifest) -> list[str]:
    """The grace budget of a Deployment that runs a supervised mode or sets the stop timeout.

    terminationGracePeriodSeconds must be set and exceed, for each such container,
    its preStop sleep plus ENTRYPOINT_STOP_TIMEOUT (default 25 s): otherwise the
    kubelet's SIGKILL lands before the entrypoint's own deadline.
    """
    if doc.get("kind") not in ("Deployment", *RUN_TO_COMPLETION):
        return []
    pod = _pod_spec(doc)
    if pod is None:
        return ["no pod template"]
    grace = pod.get("terminationGracePeriodSeconds")
    problems: list[str] = []
    for container in _containers(pod):
        env = _env(container)
        if _mode(env) not in SUPERVISED_MODES and "ENTRYPOINT_STOP_TIMEOUT" not in env:
            continue
        needed = _pre_stop_sleep(container) + _stop_timeout(env)
        name = container.get("name")
        if grace is None:
            problems.append(
                f"container {name}: supervised, but terminationGracePeriodSeconds is not set "
                f"(needs more than {needed:g} s)"
            )
        elif not grace > needed:
            problems.append(
                f"container {name}: terminationGracePeriodSeconds {grace} is not above "
                f"preStop + ENTRYPOINT_STOP_TIMEOUT = {needed:g} s"
            )
    return problems


def security_problems(doc: Manifest) -> list[str]:
    """Non-root, read-only root with /tmp on an emptyDir, no capabilities, no escalation."""
    pod = _pod_spec(doc)
    if pod is None:
        return []
    problems: list[str] = []
    if _get(pod, "securityContext", "runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    empty_dirs = {
        volume.get("name")
        for volume in pod.get("volumes") or []
        if isinstance(volume, dict) and "emptyDir" in volume
    }
    for container in _containers(pod):
        name = container.get("name")
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name}: allowPrivilegeEscalation is not false")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"container {name}: readOnlyRootFilesystem is not true")
        if _get(context, "capabilities", "drop") != ["ALL"]:
            problems.append(f"container {name}: capabilities.drop is not [ALL]")
        if _get(context, "capabilities", "add"):
            problems.append(f"container {name}: capabilities.add is not empty")
        if context.get("privileged"):
            problems.append(f"container {name}: privileged")
        tmp = [
            mount
            for mount in container.get("volumeMounts") or []
            if mount.get("mountPath") == "/tmp" and mount.get("name") in empty_dirs
        ]
        if not tmp:
            problems.append(f"container {name}: /tmp is not an emptyDir (read-only root)")
    return problems


def health_problems(doc: Manifest) -> list[str]:
    """Supervised containers: liveness (and readiness) run `entrypoint health`.

    Readiness may be `entrypoint health --ready`.

    A Job's pods are nobody's endpoints: readiness means nothing there.
    """
    pod = _pod_spec(doc)
    if pod is None:
        return []
    probes = (
        ("livenessProbe",)
        if doc.get("kind") in RUN_TO_COMPLETION
        else (
            "livenessProbe",
            "readinessProbe",
        )
    )
    problems: list[str] = []
    for container in _containers(pod):
        if _mode(_env(container)) not in SUPERVISED_MODES:
            continue
        for probe in probes:
            command = _get(container, probe, "exec", "command")
            allowed = [HEALTH_COMMAND]
            if probe == "readinessProbe":
                allowed.append([*HEALTH_COMMAND, "--ready"])
            if command not in allowed:
                problems.append(
                    f"container {container.get('name')}: {probe} is not exec {HEALTH_COMMAND}"
                )
    return problems


def environment_problems(doc: Manifest) -> list[str]:
    """Only variables the entrypoint knows, a valid MODE, numbers where numbers go."""
    pod = _pod_spec(doc)
    if pod is None:
        return []
    numeric = {
        "ENTRYPOINT_STOP_TIMEOUT",
        "ENTRYPOINT_WAIT_TIMEOUT",
        "ENTRYPOINT_PROBE_TIMEOUT",
        "ENTRYPOINT_LEASE_TTL",
        "ENTRYPOINT_MAX_RESTARTS",
        "ENTRYPOINT_RESTART_WINDOW",
        "ENTRYPOINT_MIN_UPTIME",
        "ENTRYPOINT_BACKOFF_INITIAL",
        "ENTRYPOINT_BACKOFF_MAX",
        "ENTRYPOINT_RESET_AFTER",
    }
    problems: list[str] = []
    for container in _containers(pod):
        name = container.get("name")
        env = _env(container)
        for variable, value in env.items():
            if variable.startswith("ENTRYPOINT_") and variable not in KNOWN_VARIABLES:
                problems.append(f"container {name}: unknown variable {variable}")
            if variable in numeric and value is not None:
                try:
                    if float(value) < 0:
                        raise ValueError(value)
                except ValueError:
                    problems.append(f"container {name}: {variable}={value!r} is not a number >= 0")
        if _mode(env) not in VALID_MODES:
            problems.append(f"container {name}: MODE={env.get('MODE')!r} is not a built-in mode")
    return problems


def completion_problems(doc: Manifest) -> list[str]:
    """A Job's (or a ScaledJob's) supervised worker must be able to complete it.

    ENTRYPOINT_RESTART must be on-failure or never: under the default
    `always` the worker's exit 0 (`rq worker --burst` done, `queue:work
    --stop-when-empty`) starts it again and the Job runs until its deadline.
    """
    if doc.get("kind") not in RUN_TO_COMPLETION:
        return []
    pod = _pod_spec(doc)
    if pod is None:
        return ["no pod template"]
    problems: list[str] = []
    for container in _containers(pod):
        env = _env(container)
        if _mode(env) not in SUPERVISED_MODES:
            continue
        restart = (env.get("ENTRYPOINT_RESTART") or "always").strip().lower()
        if restart not in ("on-failure", "never"):
            problems.append(
                f"container {container.get('name')}: ENTRYPOINT_RESTART={restart}: an exit 0 "
                "would start the worker again and the Job would never complete "
                "(set on-failure)"
            )
    return problems


def _matches(selector: dict[str, Any] | None, labels: dict[str, Any] | None) -> bool:
    if not selector or not labels:
        return False
    return all(labels.get(key) == value for key, value in selector.items())


def reference_problems(docs: list[Manifest]) -> list[str]:
    """Selectors select, scale targets and authentication refs exist, ports are named."""
    deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
    trigger_auths = {
        d["metadata"]["name"] for d in docs if d.get("kind") == "TriggerAuthentication"
    }
    pod_labels = [_get(d, "spec", "template", "metadata", "labels") for d in deployments.values()]
    problems: list[str] = []
    for name, deployment in deployments.items():
        selector = _get(deployment, "spec", "selector", "matchLabels")
        if not _matches(selector, _get(deployment, "spec", "template", "metadata", "labels")):
            problems.append(f"Deployment {name}: selector does not match its pod labels")
    for doc in docs:
        kind, name = doc.get("kind"), _get(doc, "metadata", "name")
        if kind == "Service":
            selector = _get(doc, "spec", "selector")
            targets = [
                d
                for d in deployments.values()
                if _matches(selector, _get(d, "spec", "template", "metadata", "labels"))
            ]
            if not targets:
                problems.append(f"Service {name}: selects no Deployment's pods")
            port_names = {
                port.get("name")
                for d in targets
                for container in _containers(_pod_spec(d) or {})
                for port in container.get("ports") or []
            }
            for port in _get(doc, "spec", "ports") or []:
                target = port.get("targetPort")
                if isinstance(target, str) and target not in port_names:
                    problems.append(f"Service {name}: targetPort {target!r} is no container port")
        elif kind == "PodDisruptionBudget":
            selector = _get(doc, "spec", "selector", "matchLabels")
            if not any(_matches(selector, labels) for labels in pod_labels):
                problems.append(f"PodDisruptionBudget {name}: selects no Deployment's pods")
        elif kind in ("ScaledObject", "HorizontalPodAutoscaler", "ScaledJob"):
            target = _get(doc, "spec", "scaleTargetRef", "name")
            if kind != "ScaledJob" and target not in deployments:
                problems.append(f"{kind} {name}: scaleTargetRef {target!r} is no Deployment here")
            for trigger in _get(doc, "spec", "triggers") or []:
                auth = _get(trigger, "authenticationRef", "name")
                if auth is not None and auth not in trigger_auths:
                    problems.append(f"{kind} {name}: authenticationRef {auth!r} is not defined")
    return problems


# --- tests ---------------------------------------------------------------------


def _ids(docs: list[Doc]) -> list[str]:
    return [doc.label for doc in docs]


BUILTIN = [doc for doc in DOCS if isinstance(doc.body, dict) and not is_custom(doc.body)]
CUSTOM = [doc for doc in DOCS if isinstance(doc.body, dict) and is_custom(doc.body)]
WITH_PODS = [doc for doc in BUILTIN + CUSTOM if _pod_spec(doc.body) is not None]


def test_expected_files_are_there() -> None:
    missing = [name for name in EXPECTED_FILES if not (MANIFEST_DIR / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    docs = load_documents(path.read_text(encoding="utf-8"))
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path.name}: a document is not a mapping"
        for field in ("apiVersion", "kind", "metadata"):
            assert field in doc, f"{path.name}: a document has no {field}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", BUILTIN, ids=_ids(BUILTIN))
def test_builtin_kinds_match_the_kubernetes_schema(doc: Doc, version: str) -> None:
    assert schema_problems(doc.body, version) == []


@pytest.mark.parametrize("doc", CUSTOM, ids=_ids(CUSTOM))
def test_custom_resources_match_their_schema(doc: Doc) -> None:
    assert custom_schema_problems(doc.body) == []


@pytest.mark.parametrize("doc", WITH_PODS, ids=_ids(WITH_PODS))
def test_grace_budget_exceeds_the_stop_timeout(doc: Doc) -> None:
    assert budget_problems(doc.body) == []


@pytest.mark.parametrize("doc", WITH_PODS, ids=_ids(WITH_PODS))
def test_pods_are_hardened(doc: Doc) -> None:
    assert security_problems(doc.body) == []


@pytest.mark.parametrize("doc", WITH_PODS, ids=_ids(WITH_PODS))
def test_supervised_pods_use_entrypoint_health(doc: Doc) -> None:
    assert health_problems(doc.body) == []


@pytest.mark.parametrize("doc", WITH_PODS, ids=_ids(WITH_PODS))
def test_environment_names_only_known_variables(doc: Doc) -> None:
    assert environment_problems(doc.body) == []


@pytest.mark.parametrize("doc", WITH_PODS, ids=_ids(WITH_PODS))
def test_jobs_can_complete(doc: Doc) -> None:
    assert completion_problems(doc.body) == []


def test_names_refer_to_each_other() -> None:
    # worker-autoscaling.yaml and worker-autoscaling-hpa.yaml are alternatives,
    # both checked against the same Deployments.
    assert reference_problems([doc.body for doc in DOCS if isinstance(doc.body, dict)]) == []


def test_the_deployments_the_docs_describe() -> None:
    modes: dict[str, tuple[str, int]] = {}
    for doc in WITH_PODS:
        if doc.body.get("kind") != "Deployment":
            continue
        pod = _pod_spec(doc.body) or {}
        for container in _containers(pod):
            modes[doc.body["metadata"]["name"]] = (
                _mode(_env(container)),
                int(_get(doc.body, "spec", "replicas") or 1),
            )
    assert modes.get("web", ("", 0))[0] == "web"
    assert modes.get("worker", ("", 0))[0] == "worker"
    # The scheduler runs two replicas: one leader, one standby.
    assert modes.get("scheduler") == ("scheduler", 2)


# --- the checks can fail -------------------------------------------------------


def _doc(file: str, kind: str) -> Manifest:
    for doc in DOCS:
        if doc.file == file and doc.body.get("kind") == kind:
            return copy.deepcopy(doc.body)
    pytest.fail(f"{file} has no {kind}")


def _worker_container(doc: Manifest) -> dict[str, Any]:
    container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return container


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    container["env"] = [item for item in container.get("env", []) if item["name"] != name]
    container["env"].append({"name": name, "value": value})


BREAKAGES: dict[str, tuple[Callable[[Manifest], None], Callable[[Manifest], list[str]]]] = {
    "misspelt field": (
        lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSecond=35),
        lambda d: schema_problems(d, KUBERNETES_VERSIONS[-1]),
    ),
    "wrong type": (
        lambda d: d["spec"].update(replicas="three"),
        lambda d: schema_problems(d, KUBERNETES_VERSIONS[-1]),
    ),
    "missing required field": (
        lambda d: _worker_container(d).pop("name"),
        lambda d: schema_problems(d, KUBERNETES_VERSIONS[0]),
    ),
    "grace equal to the stop timeout": (
        lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=25),
        budget_problems,
    ),
    "stop timeout raised above the grace": (
        lambda d: _set_env(_worker_container(d), "ENTRYPOINT_STOP_TIMEOUT", "3600"),
        budget_problems,
    ),
    "grace left to the default": (
        lambda d: d["spec"]["template"]["spec"].pop("terminationGracePeriodSeconds"),
        budget_problems,
    ),
    "preStop eats the margin": (
        lambda d: _worker_container(d).update(
            lifecycle={"preStop": {"exec": {"command": ["sleep", "15"]}}}
        ),
        budget_problems,
    ),
    "writable root": (
        lambda d: _worker_container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        security_problems,
    ),
    "no /tmp volume": (
        lambda d: _worker_container(d).pop("volumeMounts"),
        security_problems,
    ),
    "capability added": (
        lambda d: _worker_container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        security_problems,
    ),
    "root allowed": (
        lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
        security_problems,
    ),
    "liveness by TCP": (
        lambda d: _worker_container(d).update(livenessProbe={"tcpSocket": {"port": 8000}}),
        health_problems,
    ),
    "misspelt variable": (
        lambda d: _set_env(_worker_container(d), "ENTRYPOINT_STOP_TIMOUT", "25"),
        environment_problems,
    ),
    "bad mode": (
        lambda d: _set_env(_worker_container(d), "MODE", "wörker"),
        environment_problems,
    ),
    "selector off": (
        lambda d: d["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "other"}
        ),
        lambda d: reference_problems([d]),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_check_notices_a_broken_worker_deployment(breakage: str) -> None:
    good = _doc("worker-deployment.yaml", "Deployment")
    break_it, check = BREAKAGES[breakage]
    assert check(copy.deepcopy(good)) == [], "the unbroken manifest must pass first"
    broken = copy.deepcopy(good)
    break_it(broken)
    assert check(broken) != []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"].pop("scaleTargetRef"),
        lambda d: d["spec"].update(maxReplicaCount="20"),
        lambda d: d["spec"]["triggers"][0]["metadata"].update(listLength=10),
        lambda d: d["spec"].update(minReplicaCont=1),
        lambda d: d["spec"].update(triggers=[]),
    ],
    ids=["no target", "string count", "number in metadata", "misspelt key", "no trigger"],
)
def test_the_custom_schema_notices_a_broken_scaled_object(
    break_it: Callable[[Manifest], None],
) -> None:
    good = _doc("worker-autoscaling.yaml", "ScaledObject")
    assert custom_schema_problems(good) == []
    break_it(good)
    assert custom_schema_problems(good) != []


def test_the_scale_target_must_exist() -> None:
    scaled = _doc("worker-autoscaling.yaml", "ScaledObject")
    auth = _doc("worker-autoscaling.yaml", "TriggerAuthentication")
    worker = _doc("worker-deployment.yaml", "Deployment")
    assert reference_problems([worker, scaled, auth]) == []
    assert reference_problems([scaled, auth]) != []
    assert reference_problems([worker, scaled]) != []


def test_an_unknown_custom_resource_is_not_waved_through() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert is_custom(doc)
    assert custom_schema_problems(doc) != []


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_documents("a: 1\na: 2\n")


def _job_container(doc: Manifest) -> dict[str, Any]:
    pod = _pod_spec(doc)
    assert pod is not None
    container: dict[str, Any] = pod["containers"][0]
    return container


def _drop_env(container: dict[str, Any], name: str) -> None:
    container["env"] = [item for item in container.get("env", []) if item["name"] != name]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"].pop("jobTargetRef"),
        lambda d: d["spec"].update(rollout={"strategy": "slow"}),
        lambda d: d["spec"].update(triggers=[]),
        lambda d: d["spec"].update(maxReplicaCont=3),
        # Inside the JobSpec: the Kubernetes schema, strictly.
        lambda d: d["spec"]["jobTargetRef"].update(backoffLimit="three"),
        lambda d: _job_container(d).update(imagePullPolice="Always"),
    ],
    ids=[
        "no jobTargetRef",
        "unknown rollout",
        "no trigger",
        "misspelt key",
        "string backoffLimit",
        "misspelt container key",
    ],
)
def test_the_custom_schema_notices_a_broken_scaled_job(
    break_it: Callable[[Manifest], None],
) -> None:
    good = _doc("keda-scaledjob.yaml", "ScaledJob")
    assert custom_schema_problems(good) == []
    break_it(good)
    assert custom_schema_problems(good) != []


@pytest.mark.parametrize(
    ("file", "kind"), [("job.yaml", "Job"), ("keda-scaledjob.yaml", "ScaledJob")]
)
@pytest.mark.parametrize(
    ("breakage", "check"),
    [
        (lambda c: _drop_env(c, "ENTRYPOINT_RESTART"), completion_problems),
        (lambda c: _set_env(c, "ENTRYPOINT_RESTART", "always"), completion_problems),
        (lambda c: _set_env(c, "ENTRYPOINT_STOP_TIMEOUT", "60"), budget_problems),
        (lambda c: c.pop("livenessProbe"), health_problems),
        (lambda c: _set_env(c, "ENTRYPOINT_RESTRAT", "on-failure"), environment_problems),
    ],
    ids=["restart unset", "restart always", "grace too short", "no liveness", "misspelt"],
)
def test_each_check_notices_a_broken_job(
    file: str,
    kind: str,
    breakage: Callable[[dict[str, Any]], None],
    check: Callable[[Manifest], list[str]],
) -> None:
    good = _doc(file, kind)
    assert check(copy.deepcopy(good)) == [], "the unbroken manifest must pass first"
    breakage(_job_container(good))
    assert check(good) != []
