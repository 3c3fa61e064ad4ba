"""infra/: the Bicep template, its parameters file and the deploy/teardown scripts.

There is no Bicep compiler or Azure account here, so:

* infra/bicepcheck.py reads main.bicep (a strict reader for the subset it uses)
  and checks every resource body against schemas: Microsoft.App types from the
  installed azure-mgmt-appcontainers models (rest names, enums), the others
  transcribed from bicep-types-az. ``test_bicep_matches_schemas`` runs it.
* ``deployment_problems`` below checks what this deployment must contain (role
  assignments, app settings, probes, api-versions...).
* The mutation tests prove both fail on broken copies.
* The scripts run against a fake ``az`` that records its calls.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
BICEP = INFRA / "main.bicep"
PARAMS = INFRA / "main.parameters.json"
DEPLOY = INFRA / "deploy.sh"
TEARDOWN = INFRA / "teardown.sh"


def _load_bicepcheck():
    spec = importlib.util.spec_from_file_location("bicepcheck", INFRA / "bicepcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bicepcheck"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bc = _load_bicepcheck()

# api-versions from the research note (shared/research/azure-sessions.md, sections 3.1-3.2:
# sessionPools/containerApps 2025-07-01 stable with lifecycleConfiguration, roleAssignments
# 2022-04-01), and the bicep-types-az versions the transcribed schemas come from.
EXPECTED_API_VERSIONS = {
    "Microsoft.App/sessionPools": "2025-07-01",
    "Microsoft.App/containerApps": "2025-07-01",
    "Microsoft.App/managedEnvironments": "2025-07-01",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.OperationalInsights/workspaces": "2023-09-01",
    "Microsoft.ContainerRegistry/registries": "2023-07-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2023-01-31",
}
SESSION_EXECUTOR_ROLE = "0fb8eba5-a2bb-4abe-b1c1-49dfad359bb0"  # Azure ContainerApps Session Executor
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # AcrPull
POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")  # 3-63 characters (ARM sessionPools name rule)
DEFAULT_PORT = 8000

# Pool settings that must be parameters, with the default each must have (None: any).
POOL_PARAMS: dict[tuple[str, ...], Any] = {
    ("poolManagementType",): "Dynamic",
    ("containerType",): "PythonLTS",
    ("scaleConfiguration", "maxConcurrentSessions"): None,
    ("scaleConfiguration", "readySessionInstances"): None,
    ("dynamicPoolConfiguration", "lifecycleConfiguration", "lifecycleType"): "Timed",
    ("dynamicPoolConfiguration", "lifecycleConfiguration", "cooldownPeriodInSeconds"): None,
    ("sessionNetworkConfiguration", "status"): "EgressDisabled",
}


# ------------------------------------------------------------------ deployment rules


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, bc.Obj) or key not in node.items:
            return None
        node = node.items[key]
    return node


def _text(node: Any) -> str | None:
    return node.text if isinstance(node, bc.Expr) else None


def _literal(b: Any, node: Any) -> Any:
    """The value of a literal, of a var holding one, or of a param's literal default."""
    if isinstance(node, bc.Lit) and not node.interpolated:
        return node.value
    if isinstance(node, bc.Expr) and node.text in b.vars:
        return _literal(b, b.vars[node.text])
    if isinstance(node, bc.Expr) and node.text in b.params:
        return _param_default(b, b.params[node.text])
    return None


def _param_default(b: Any, param: Any) -> Any:
    """A param's default, with ``${otherParam}`` interpolations of literal defaults filled in."""
    default = param.default
    if isinstance(default, bc.Lit) and default.interpolated:
        def fill(match: re.Match[str]) -> str:
            ref = b.params.get(match.group(1))
            value = _param_default(b, ref) if ref else None
            return str(value) if value is not None else match.group(0)

        filled = re.sub(r"\$\{(\w+)\}", fill, default.value)
        return None if "${" in filled else filled
    return _literal(b, default) if default is not None else None


def _role_guid(b: Any, node: Any) -> str | None:
    m = re.fullmatch(
        r"subscriptionResourceId\(\s*'Microsoft\.Authorization/roleDefinitions'\s*,\s*(.+?)\s*\)",
        _text(node) or "",
    )
    if not m:
        return None
    arg = m.group(1)
    if arg.startswith("'"):
        return arg.strip("'")
    value = _literal(b, bc.Expr(arg, 0))
    return value if isinstance(value, str) else None


def _by_type(b: Any, rtype: str) -> list[Any]:
    return [r for r in b.resources.values() if r.type == rtype]


def _one(b: Any, rtype: str, problems: list[str]) -> Any:
    found = _by_type(b, rtype)
    if len(found) != 1:
        problems.append(f"expected exactly one {rtype}, found {len(found)}")
        return None
    return found[0]


def deployment_problems(b: Any, params_file: dict[str, Any], image_port: int | None) -> list[str]:
    """What this deployment needs beyond valid properties. Returns readable problems."""
    problems: list[str] = []
    add = problems.append

    # api-versions
    for res in b.resources.values():
        want = EXPECTED_API_VERSIONS.get(res.type)
        if want is None:
            add(f"resource {res.symbol}: unexpected type {res.type}")
        elif res.api_version != want:
            add(f"resource {res.symbol}: {res.type}@{res.api_version}, expected @{want}")

    pool = _one(b, "Microsoft.App/sessionPools", problems)
    uami = _one(b, "Microsoft.ManagedIdentity/userAssignedIdentities", problems)
    registry = _one(b, "Microsoft.ContainerRegistry/registries", problems)
    env = _one(b, "Microsoft.App/managedEnvironments", problems)
    logs = _one(b, "Microsoft.OperationalInsights/workspaces", problems)
    app = _one(b, "Microsoft.App/containerApps", problems)
    if not all((pool, uami, registry, env, logs, app)):
        return problems

    # session pool: every setting a parameter, with safe defaults
    for path, want in POOL_PARAMS.items():
        node = _get(pool.body, "properties", *path)
        name = _text(node)
        if name not in b.params:
            add(f"pool properties.{'.'.join(path)} must be a parameter, found {node!r}")
        elif want is not None and _param_default(b, b.params[name]) != want:
            add(f"param {name} must default to {want!r}")
    name_param = b.params.get(_text(pool.body.items.get("name")) or "")
    if name_param is None:
        add("the pool name must be a parameter")
    else:
        if name_param.number("minLength") != 3 or name_param.number("maxLength") != 63:
            add(f"param {name_param.name} needs @minLength(3) and @maxLength(63)")
        default = _param_default(b, name_param)
        if not (isinstance(default, str) and POOL_NAME_RE.match(default) and 3 <= len(default) <= 63):
            add(f"param {name_param.name} default {default!r} is not a valid pool name")
        given = params_file.get(name_param.name, {}).get("value")
        if given is not None and not (POOL_NAME_RE.match(given) and 3 <= len(given) <= 63):
            add(f"parameters file: {name_param.name}={given!r} is not a valid pool name")

    # role assignments
    def assignment(role: str, label: str, scope: Any) -> None:
        found = [r for r in _by_type(b, "Microsoft.Authorization/roleAssignments")
                 if _role_guid(b, _get(r.body, "properties", "roleDefinitionId")) == role]
        if len(found) != 1:
            add(f"{label} role assignment ({role}): expected one, found {len(found)}")
            return
        ra = found[0]
        if _text(ra.body.items.get("scope")) != scope.symbol:
            add(f"{label} role assignment must have scope: {scope.symbol}")
        if _text(_get(ra.body, "properties", "principalId")) != f"{uami.symbol}.properties.principalId":
            add(f"{label} role assignment must be for {uami.symbol}.properties.principalId")
        if _literal(b, _get(ra.body, "properties", "principalType")) != "ServicePrincipal":
            add(f"{label} role assignment needs principalType 'ServicePrincipal' (avoids replication races)")
        name = _text(ra.body.items.get("name")) or ""
        if not (name.startswith("guid(") and f"{scope.symbol}.id" in name):
            add(f"{label} role assignment name must be guid({scope.symbol}.id, ...)")

    assignment(SESSION_EXECUTOR_ROLE, "Session Executor", pool)
    assignment(ACR_PULL_ROLE, "AcrPull", registry)

    if _literal(b, _get(registry.body, "properties", "adminUserEnabled")) is not False:
        add("the registry must set adminUserEnabled: false")

    # environment -> Log Analytics
    if _literal(b, _get(env.body, "properties", "appLogsConfiguration", "destination")) != "log-analytics":
        add("the environment must send logs to 'log-analytics'")
    customer = _get(env.body, "properties", "appLogsConfiguration", "logAnalyticsConfiguration", "customerId")
    if _text(customer) != f"{logs.symbol}.properties.customerId":
        add(f"the environment must use {logs.symbol}.properties.customerId")

    # container app
    props = app.body.items.get("properties")
    if _text(_get(props, "environmentId")) != f"{env.symbol}.id":
        add(f"the app must run in {env.symbol}.id")
    if _literal(b, _get(app.body, "identity", "type")) != "UserAssigned":
        add("the app identity must be UserAssigned")
    uai = _get(app.body, "identity", "userAssignedIdentities")
    if not isinstance(uai, bc.Obj) or list(uai.items) != [f"${{{uami.symbol}.id}}"]:
        add(f"the app must carry exactly the identity {uami.symbol}.id")
    registries = _get(props, "configuration", "registries")
    pulls = [r for r in getattr(registries, "items", [])
             if _text(_get(r, "server")) == f"{registry.symbol}.properties.loginServer"
             and _text(_get(r, "identity")) == f"{uami.symbol}.id" and _get(r, "passwordSecretRef") is None]
    if len(pulls) != 1:
        add("the app must pull from the registry with the managed identity (registries: server + identity)")
    depends = {_text(d) for d in getattr(app.body.items.get("dependsOn"), "items", [])}
    acr_pull = [r.symbol for r in _by_type(b, "Microsoft.Authorization/roleAssignments")
                if _role_guid(b, _get(r.body, "properties", "roleDefinitionId")) == ACR_PULL_ROLE]
    if acr_pull and acr_pull[0] not in depends:
        add(f"the app must dependsOn {acr_pull[0]} (no pull before AcrPull exists)")

    ingress = _get(props, "configuration", "ingress")
    port = _literal(b, _get(ingress, "targetPort"))
    if _literal(b, _get(ingress, "external")) is not True:
        add("ingress must be external")
    if port != DEFAULT_PORT:
        add(f"ingress targetPort is {port!r}, expected {DEFAULT_PORT}")
    if image_port is not None and port != image_port:
        add(f"ingress targetPort {port!r} differs from the Dockerfile's EXPOSE {image_port}")

    containers = getattr(_get(props, "template", "containers"), "items", [])
    if len(containers) != 1:
        add(f"expected one container, found {len(containers)}")
        return problems
    container = containers[0]
    env_vars = {
        _literal(b, _get(item, "name")): item for item in getattr(_get(container, "env"), "items", [])
    }
    expect_env = {
        "POOL_MANAGEMENT_ENDPOINT": f"{pool.symbol}.properties.poolManagementEndpoint",
        "AZURE_CLIENT_ID": f"{uami.symbol}.properties.clientId",
    }
    for name, text in expect_env.items():
        if name not in env_vars:
            add(f"app env {name} is missing")
        elif _text(_get(env_vars[name], "value")) != text:
            add(f"app env {name} must be {text}")
    if "USE_LOCAL_EXECUTOR" not in env_vars or _literal(b, _get(env_vars["USE_LOCAL_EXECUTOR"], "value")) != "false":
        add("app env USE_LOCAL_EXECUTOR must be 'false'")
    if "PORT" in env_vars and str(_literal(b, _get(env_vars["PORT"], "value"))) not in (str(port), "None"):
        add("app env PORT must equal the ingress targetPort")
    for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):  # EnvironmentCredential would win over the MI
        if name in env_vars:
            add(f"app env {name} must not be set")
    api_keys = env_vars.get("API_KEYS")
    if api_keys is None or _get(api_keys, "secretRef") is None:
        add("app env API_KEYS must come from a secret (secretRef)")

    probes = {_literal(b, _get(p, "type")): p for p in getattr(_get(container, "probes"), "items", [])}
    for kind, path in (("Liveness", "/health"), ("Readiness", "/ready")):
        probe = probes.get(kind)
        if probe is None:
            add(f"{kind} probe is missing")
            continue
        if _literal(b, _get(probe, "httpGet", "path")) != path:
            add(f"{kind} probe must GET {path}")
        if _literal(b, _get(probe, "httpGet", "port")) != port:
            add(f"{kind} probe port must be the targetPort")

    scale = _get(props, "template", "scale")
    for key in ("minReplicas", "maxReplicas"):
        if _text(_get(scale, key)) not in b.params:
            add(f"scale.{key} must be a parameter")
    http_rules = [r for r in getattr(_get(scale, "rules"), "items", []) if _get(r, "http") is not None]
    if len(http_rules) != 1 or _get(http_rules[0], "http", "metadata", "concurrentRequests") is None:
        add("scale needs one http rule with metadata.concurrentRequests")

    # outputs
    url = b.outputs.get("appUrl")
    if url is None or "https://" not in (getattr(url.value, "text", "") or "") or app.symbol not in url.value.text:
        add(f"output appUrl must be https://<{app.symbol} fqdn>")
    endpoint = b.outputs.get("poolManagementEndpoint")
    if endpoint is None or _text(endpoint.value) != f"{pool.symbol}.properties.poolManagementEndpoint":
        add("output poolManagementEndpoint must be the pool's properties.poolManagementEndpoint")

    problems.extend(parameters_file_problems(b, params_file))
    return problems


def parameters_file_problems(b: Any, params_file: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    checker = bc.Checker(b)
    for name, entry in params_file.items():
        param = b.params.get(name)
        if param is None:
            problems.append(f"parameters file: {name!r} is not a param of main.bicep")
            continue
        if param.secure:
            problems.append(f"parameters file: secure param {name!r} must not be stored in the file")
        if not isinstance(entry, dict) or set(entry) != {"value"}:
            problems.append(f"parameters file: {name!r} must be {{\"value\": ...}}")
            continue
        checker.check_param_value(param, entry["value"], f"parameters file {name}", 0)
    problems.extend(str(p) for p in checker.problems)
    for name, param in b.params.items():
        if param.default is None and not param.secure and name not in params_file:
            problems.append(f"parameters file: required param {name!r} is missing")
    return problems


def image_port() -> int | None:
    ports = re.findall(r"^EXPOSE\s+(\d+)", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    return int(ports[-1]) if ports else None


def all_problems(bicep_src: str, params_doc: dict[str, Any]) -> list[str]:
    try:
        bicep = bc.parse(bicep_src)
    except bc.BicepSyntaxError as exc:
        return [f"syntax: {exc}"]
    found = [str(p) for p in bc.check(bicep)]
    return found + deployment_problems(bicep, params_doc.get("parameters", {}), image_port())


def _params_doc() -> dict[str, Any]:
    return json.loads(PARAMS.read_text())


# ------------------------------------------------------------------ the real files


def test_bicep_matches_schemas():
    problems = bc.check(bc.parse(BICEP.read_text()))
    assert [str(p) for p in problems] == []


def test_deployment_rules_hold():
    bicep = bc.parse(BICEP.read_text())
    assert deployment_problems(bicep, _params_doc()["parameters"], image_port()) == []


def test_parameters_file_shape():
    doc = _params_doc()
    assert doc["$schema"].endswith("/deploymentParameters.json#")
    assert doc["contentVersion"] == "1.0.0.0"
    assert set(doc) == {"$schema", "contentVersion", "parameters"}


def test_pool_name_rule_is_documented():
    text = BICEP.read_text()
    assert "^[a-z][a-z0-9]*$" in text and "3-63" in text
    readme = (INFRA / "README.md").read_text()
    assert "^[a-z][a-z0-9]*$" in readme


def test_schema_covers_every_session_pool_object():
    """The SDK-derived schema knows the pool objects the issue names, with their REST names."""
    pool = bc.schema_for("Microsoft.App/sessionPools", "2025-07-01")
    props = pool.props["properties"].type
    assert {"poolManagementType", "containerType", "scaleConfiguration", "dynamicPoolConfiguration",
            "sessionNetworkConfiguration"} <= set(props.props)
    life = props.props["dynamicPoolConfiguration"].type.props["lifecycleConfiguration"].type
    assert set(life.props) >= {"lifecycleType", "cooldownPeriodInSeconds"}
    assert life.props["lifecycleType"].type.values == {"Timed", "OnContainerExit"}
    assert props.props["containerType"].type.values >= {"PythonLTS"}
    assert props.props["poolManagementEndpoint"].readonly


# ------------------------------------------------------------------ the checker fails on broken copies

def _sub(old: str, new: str) -> Callable[[str], str]:
    """Replace the first ``old`` (which must still be in main.bicep) by ``new``."""

    def apply(src: str) -> str:
        assert old in src, f"mutation no longer applies, update it: {old!r}"
        return src.replace(old, new, 1)

    return apply


def _drop_resource(symbol: str) -> Callable[[str], str]:
    """Delete ``resource <symbol> ... }`` and its dependsOn entries."""

    def apply(src: str) -> str:
        start = src.index(f"resource {symbol} ")
        end = src.index("\n}\n", start) + 3
        return (src[:start] + src[end:]).replace(f"    {symbol}\n", "")

    return apply


_PROBE = "path: '{}'\n                port: containerPort\n              }}\n              periodSeconds: 15"
_EXECUTOR_PRINCIPAL = (
    "    principalId: identity.properties.{}\n    principalType: 'ServicePrincipal'\n"
    "    description: 'Piston backend executes"
)

# (id, mutation of main.bicep, pattern expected among the problems)
BICEP_MUTATIONS: list[tuple[str, Callable[[str], str], str]] = [
    ("misspelled-cooldown",
     _sub("cooldownPeriodInSeconds: cooldownPeriodInSeconds", "cooldownPeriodInSecond: cooldownPeriodInSeconds"),
     r"no property 'cooldownPeriodInSecond'.*did you mean"),
    ("container-type-literal", _sub("containerType: sessionContainerType", "containerType: 'PythonLT'"),
     r"'PythonLT' is not one of"),
    ("container-type-allowed",
     _sub("@allowed([\n  'PythonLTS'\n])\nparam sessionContainerType string = 'PythonLTS'",
          "@allowed([\n  'PythonLT'\n])\nparam sessionContainerType string = 'PythonLT'"),
     r"'PythonLT' \(via @allowed"),
    ("lifecycle-type",
     _sub("@allowed([\n  'Timed'\n])\nparam lifecycleType string = 'Timed'",
          "@allowed([\n  'Time'\n])\nparam lifecycleType string = 'Time'"),
     r"'Time' \(via @allowed.*LifecycleType"),
    ("network-status", _sub("status: sessionNetworkStatus", "status: 'Disabled'"), r"'Disabled' is not one of"),
    ("egress-default",
     _sub("sessionNetworkStatus string = 'EgressDisabled'", "sessionNetworkStatus string = 'EgressEnabled'"),
     r"sessionNetworkStatus must default to 'EgressDisabled'"),
    ("enum-param-without-allowed",
     _sub("@allowed([\n  'Dynamic'\n])\nparam poolManagementType", "param poolManagementType"),
     r"feeds an enum.*give it @allowed"),
    ("pool-setting-hardcoded", _sub("readySessionInstances: readySessionInstances", "readySessionInstances: 1"),
     r"readySessionInstances must be a parameter"),
    ("string-for-int", _sub("maxConcurrentSessions: maxConcurrentSessions", "maxConcurrentSessions: '20'"),
     r"'20' is not an int"),
    ("param-typo", _sub("maxConcurrentSessions: maxConcurrentSessions", "maxConcurrentSessions: maxConcurentSessions"),
     r"'maxConcurentSessions' is not a param.*did you mean"),
    ("read-only-property",
     _sub("    poolManagementType: poolManagementType\n",
          "    poolManagementType: poolManagementType\n    poolManagementEndpoint: 'x'\n"),
     r"read-only"),
    ("preview-shape",
     _sub("      lifecycleConfiguration: {", "      executionType: 'Timed'\n      lifecycleConfiguration: {"),
     r"no property 'executionType'"),
    ("pool-api-version",
     _sub("'Microsoft.App/sessionPools@2025-07-01'", "'Microsoft.App/sessionPools@2024-02-02-preview'"),
     r"no schema for this type@api-version"),
    ("pool-name-max-length", _sub("@maxLength(63)\nparam sessionPoolName", "@maxLength(64)\nparam sessionPoolName"),
     r"@minLength\(3\) and @maxLength\(63\)"),
    ("pool-name-hyphen", _sub("'${namePrefix}pool'", "'${namePrefix}-pool'"), r"is not a valid pool name"),
    ("drop-session-executor", _drop_resource("sessionExecutor"),
     r"Session Executor role assignment .*expected one, found 0"),
    ("executor-wrong-scope", _sub("scope: pool\n", "scope: registry\n"),
     r"Session Executor role assignment must have scope: pool"),
    ("wrong-executor-guid", _sub("'0fb8eba5-a2bb", "'0fb8eba6-a2bb"),
     r"Session Executor role assignment .*expected one, found 0"),
    ("executor-for-wrong-principal",
     _sub(_EXECUTOR_PRINCIPAL.format("principalId"), _EXECUTOR_PRINCIPAL.format("clientId")),
     r"Session Executor role assignment must be for"),
    ("principal-type", _sub("principalType: 'ServicePrincipal'", "principalType: 'App'"), r"'App' is not one of"),
    ("drop-acr-pull", _drop_resource("acrPull"), r"AcrPull role assignment .*found 0"),
    ("admin-user", _sub("adminUserEnabled: false", "adminUserEnabled: true"), r"adminUserEnabled: false"),
    ("registry-password",
     _sub("          identity: identity.id\n        }\n      ]\n      secrets",
          "          username: 'admin'\n        }\n      ]\n      secrets"),
     r"pull from the registry with the managed identity"),
    ("local-executor-on",
     _sub("'USE_LOCAL_EXECUTOR'\n              value: 'false'", "'USE_LOCAL_EXECUTOR'\n              value: 'true'"),
     r"USE_LOCAL_EXECUTOR must be 'false'"),
    ("drop-client-id", _sub("name: 'AZURE_CLIENT_ID'", "name: 'AZURE_CLIENTID'"), r"AZURE_CLIENT_ID is missing"),
    ("endpoint-typo",
     _sub("value: pool.properties.poolManagementEndpoint", "value: pool.properties.poolManagementEndpiont"),
     r"SessionPoolProperties has no property 'poolManagementEndpiont'"),
    ("endpoint-from-wrong-resource",
     _sub("value: pool.properties.poolManagementEndpoint", "value: env.properties.defaultDomain"),
     r"POOL_MANAGEMENT_ENDPOINT must be"),
    ("liveness-path", _sub(_PROBE.format("/health"), _PROBE.format("/healthz")), r"Liveness probe must GET /health"),
    ("readiness-missing", _sub("type: 'Readiness'", "type: 'Startup'"), r"Readiness probe is missing"),
    ("probe-type", _sub("type: 'Liveness'", "type: 'Alive'"), r"'Alive' is not one of"),
    ("probe-range", _sub("periodSeconds: 15", "periodSeconds: 500"), r"outside the documented range \[1, 240\]"),
    ("target-port", _sub("var containerPort = 8000", "var containerPort = 8080"), r"targetPort is 8080, expected 8000"),
    ("transport", _sub("transport: 'auto'", "transport: 'https'"), r"'https' is not one of"),
    ("internal-ingress", _sub("external: true", "external: false"), r"ingress must be external"),
    ("scale-rule", _sub("http: {\n              metadata", "tcp: {\n              metadata"), r"one http rule"),
    ("unknown-function",
     _sub("sharedKey: logs.listKeys().primarySharedKey", "sharedKey: logs.keys().primarySharedKey"),
     r"logs\.keys\(\) is not a resource function"),
    ("log-sku", _sub("name: 'PerGB2018'", "name: 'PerGB2019'"), r"'PerGB2019' is not one of"),
    ("drop-output", _sub("output appUrl string", "output url string"), r"output appUrl must be"),
    ("unbalanced",
     _sub("      status: sessionNetworkStatus\n    }\n", "      status: sessionNetworkStatus\n"), r"^syntax:"),
    ("duplicate-key",
     _sub("    containerType: sessionContainerType\n",
          "    containerType: sessionContainerType\n    containerType: sessionContainerType\n"),
     r"duplicate property"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in BICEP_MUTATIONS],
                         ids=[m[0] for m in BICEP_MUTATIONS])
def test_checker_fails_on_mutated_bicep(mutate: Callable[[str], str], expected: str):
    problems = all_problems(mutate(BICEP.read_text()), _params_doc())
    assert any(re.search(expected, p, re.MULTILINE) for p in problems), problems


def _set(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        doc["parameters"][name] = {"value": value}

    return apply


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        doc["parameters"][new] = doc["parameters"].pop(old)

    return apply


PARAM_MUTATIONS = [
    ("unknown-key", _rename("maxConcurrentSessions", "maxConcurrentSesions"), r"'maxConcurrentSesions' is not a param"),
    ("not-allowed", _set("sessionNetworkStatus", "EgressOn"), r"'EgressOn' is not in @allowed"),
    ("out-of-range", _set("cooldownPeriodInSeconds", 120), r"120 is outside \[300, 3600\]"),
    ("wrong-type", _set("maxReplicas", "5"), r"'5' is not an int"),
    ("bad-pool-name", _set("sessionPoolName", "my-pool"), r"is not a valid pool name"),
    ("secret-in-file", _set("apiKeys", "0123456789abcdefXYZ"), r"secure param 'apiKeys'"),
]


@pytest.mark.parametrize(("mutate", "expected"), [m[1:] for m in PARAM_MUTATIONS], ids=[m[0] for m in PARAM_MUTATIONS])
def test_checker_fails_on_mutated_parameters(mutate: Callable[[dict[str, Any]], None], expected: str):
    doc = _params_doc()
    mutate(doc)
    problems = all_problems(BICEP.read_text(), doc)
    assert any(re.search(expected, p) for p in problems), problems


# ------------------------------------------------------------------ the reader itself


def test_reader_handles_the_subset():
    src = textwrap.dedent(
        """\
        /* block
           comment */
        targetScope = 'resourceGroup'
        @description('it\\'s \\${not interpolated}') // trailing comment
        @minLength(3)
        param p string = 'a${q}b'
        param q string = 'x'
        param n int = -5
        var v = [
          1, 'two'
          { a: true, b: null }
        ]
        var e = empty(p) ? 'x' : concat([p], [q])
        resource r 'Microsoft.Fake/things@2020-01-01' existing = {
          name: 'thing'
        }
        output o object = { k: r.properties.x }
        """
    )
    b = bc.parse(src)
    assert b.params["p"].default == bc.Lit("a${q}b", 6, True)
    assert b.params["p"].number("minLength") == 3
    assert b.params["n"].default.value == -5
    v = b.vars["v"]
    assert [i.value for i in v.items[:2]] == [1, "two"]
    assert v.items[2].items["a"].value is True and v.items[2].items["b"].value is None
    assert b.vars["e"] == bc.Expr("empty(p) ? 'x' : concat([p], [q])", 13)
    description = b.params["p"].decorators["description"][0]
    assert description == bc.Lit("it's ${not interpolated}", 4, False)
    assert b.resources["r"].existing and b.resources["r"].api_version == "2020-01-01"
    assert isinstance(b.outputs["o"].value, bc.Obj)


@pytest.mark.parametrize(
    ("src", "message"),
    [
        ("module m './x.bicep' = {\n  name: 'm'\n}\n", "not supported"),
        ("var x = {\n  a: 1\n", "unbalanced"),
        ("var x = 'open\n", "unterminated string"),
        ("resource r 'NoVersion' = {\n}\n", "Namespace/type@api-version"),
        ("var x = [for i in range(0, 2): i]\n", "for-expressions"),
        ("param p string\nparam p int\n", "declared twice"),
        ("param p decimal\n", "not supported"),
    ],
)
def test_reader_refuses_what_it_does_not_know(src: str, message: str):
    with pytest.raises(bc.BicepSyntaxError, match=message):
        bc.parse(src)


# ------------------------------------------------------------------ scripts


def _bash() -> str:
    found = shutil.which("bash")
    assert found, "bash is needed"
    return found


def _tool_dir(tmp_path: Path, tools: list[str], name: str = "bin") -> Path:
    """A PATH directory holding only the given host tools (no az)."""
    bindir = tmp_path / name
    bindir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return bindir


@pytest.mark.parametrize("script", [DEPLOY, TEARDOWN], ids=["deploy", "teardown"])
def test_script_syntax(script: Path):
    subprocess.run([_bash(), "-n", str(script)], check=True)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -Eeuo pipefail" in script.read_text()
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck():
    # -x: follow the scripts' `source` of infra/lib.sh.
    subprocess.run(["shellcheck", "-x", str(DEPLOY), str(TEARDOWN), str(INFRA / "lib.sh"),
                    str(INFRA / "docker-entrypoint.sh")], check=True)


@pytest.mark.parametrize("script", [DEPLOY, TEARDOWN], ids=["deploy", "teardown"])
def test_help_without_az(script: Path, tmp_path: Path):
    bindir = _tool_dir(tmp_path, ["bash", "cat"])
    result = subprocess.run([_bash(), str(script), "--help"], env={"PATH": str(bindir)},
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: infra/{script.name}")
    assert "--resource-group" in result.stdout


@pytest.mark.parametrize("script", [DEPLOY, TEARDOWN], ids=["deploy", "teardown"])
def test_fails_fast_without_az(script: Path, tmp_path: Path):
    bindir = _tool_dir(tmp_path, ["bash", "cat", "python3"])
    result = subprocess.run([_bash(), str(script)], env={"PATH": str(bindir)}, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    assert "error in step 'check tools'" in result.stderr
    assert "Azure CLI ('az') is not on PATH" in result.stderr


# A fake `az`: records each call (JSON lines) and answers like the real one would.
FAKE_AZ = r'''
import json, os, stat, sys
args = sys.argv[1:]
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps(args) + "\n")

def opt(name):
    return args[args.index(name) + 1] if name in args else None

cmd = args[:2]
if cmd == ["account", "show"]:
    if opt("--query") == "name":
        print("Fake Subscription")
elif cmd == ["group", "create"]:
    pass
elif cmd == ["group", "exists"]:
    print(os.environ.get("FAKE_GROUP_EXISTS", "true"))
elif cmd == ["group", "delete"]:
    pass
elif cmd == ["containerapp", "show"]:
    if opt("--query") == "properties.configuration.ingress.fqdn":
        print("piston-api.fake.test")
    elif os.environ.get("FAKE_EXISTING_IMAGE"):
        print(os.environ["FAKE_EXISTING_IMAGE"])
    else:
        print("ERROR: (ResourceNotFound) not found", file=sys.stderr)
        sys.exit(3)
elif cmd == ["containerapp", "secret"]:
    print("existing-key-0123456789")
elif cmd == ["containerapp", "update"]:
    pass
elif args[:3] == ["deployment", "group", "create"]:
    for a in args:
        if a.startswith("@"):
            path = a[1:]
            with open(path) as fh:
                body = json.load(fh)
            if "apiKeys" in body.get("parameters", {}):
                mode = stat.S_IMODE(os.stat(path).st_mode)
                with open(os.path.join(state, "secret.json"), "w") as out:
                    json.dump({"mode": mode, "apiKeys": body["parameters"]["apiKeys"]["value"]}, out)
    outputs = {k: {"type": "String", "value": v} for k, v in {
        "registryName": "fakeacr", "registryLoginServer": "fakeacr.azurecr.io",
        "poolManagementEndpoint": "https://westus2.dynamicsessions.io/subscriptions/s/resourceGroups/g/sessionPools/p",
        "appUrl": "", "containerAppName": "piston-api"}.items()}
    print(json.dumps(outputs))
elif cmd == ["acr", "build"]:
    sys.exit(int(os.environ.get("FAKE_ACR_RC", "0")))
else:
    print("fake az: unexpected call " + " ".join(args), file=sys.stderr)
    sys.exit(2)
'''

# python3 wrapper: the readiness poll (python3 - URL TIMEOUT) is answered here, the rest runs.
FAKE_PYTHON = """#!{bash}
if [[ "${{1-}}" == "-" && "${{2-}}" == */ready ]]; then
    cat >/dev/null
    printf '%s\\n' "$2" >> "$FAKE_STATE/ready.txt"
    exit "${{FAKE_READY_RC:-0}}"
fi
exec {python} "$@"
"""

SMOKE_STUB = """\
import json, os, sys
if "--help" in sys.argv:
    print("usage: test_session_pool.py --endpoint URL")
    sys.exit(0)
with open(os.path.join(os.environ["FAKE_STATE"], "smoke.json"), "w") as fh:
    json.dump({"argv": sys.argv[1:], "api_key": os.environ.get("PISTON_API_KEY")}, fh)
"""


@pytest.fixture
def fake_azure(tmp_path: Path):
    """A copy of the repo's infra files beside a stub smoke test, and a PATH with a fake az."""
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    for name in ("deploy.sh", "teardown.sh", "lib.sh", "main.bicep", "main.parameters.json"):
        shutil.copy2(INFRA / name, repo / "infra" / name)
    (repo / "Dockerfile").write_text("FROM scratch\n")
    (repo / "test_session_pool.py").write_text(SMOKE_STUB)
    state = tmp_path / "state"
    state.mkdir()
    bindir = _tool_dir(tmp_path, ["bash", "cat", "mktemp", "rm", "date", "grep", "env"])
    az = bindir / "az"
    az.write_text(f"#!{sys.executable}\n{FAKE_AZ}")
    py = bindir / "python3"
    py.write_text(FAKE_PYTHON.format(bash=_bash(), python=sys.executable))
    for f in (az, py):
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    scratch = tmp_path / "tmp"  # deploy.sh's mktemp: keep it out of the shared /tmp
    scratch.mkdir()
    base_env = {"PATH": str(bindir), "FAKE_STATE": str(state), "HOME": str(tmp_path), "TMPDIR": str(scratch)}

    class Fake:
        root = repo

        @staticmethod
        def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([_bash(), str(repo / "infra" / script), *args], env={**base_env, **env},
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)

        @staticmethod
        def calls() -> list[list[str]]:
            path = state / "calls.jsonl"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        @staticmethod
        def state(name: str) -> Any:
            path = state / name
            if not path.exists():
                return None
            return json.loads(path.read_text()) if name.endswith(".json") else path.read_text()

    return Fake


def _opt(call: list[str], name: str) -> str | None:
    return call[call.index(name) + 1] if name in call else None


def _params(call: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in call:
        if "=" in arg and not arg.startswith("-"):
            key, _, value = arg.partition("=")
            out[key] = value
    return out


def _verbs(calls: list[list[str]]) -> list[str]:
    return [" ".join(c[:3] if c[0] == "deployment" else c[:2]) for c in calls]


def test_deploy_first_run_creates_app_with_built_image(fake_azure):
    result = fake_azure.run("deploy.sh", "-g", "rg1", "-l", "eastus", "-p", "demo", "-t", "t1")
    assert result.returncode == 0, result.stderr
    calls = fake_azure.calls()
    assert _verbs(calls) == [
        "account show", "account show", "group create", "containerapp show",
        "deployment group create", "acr build", "deployment group create", "containerapp show",
    ]
    root = str(fake_azure.root)
    assert _opt(calls[2], "--name") == "rg1" and _opt(calls[2], "--location") == "eastus"
    infra, build, app = calls[4], calls[5], calls[6]
    for deployment in (infra, app):
        assert _opt(deployment, "--resource-group") == "rg1"
        assert _opt(deployment, "--template-file") == f"{root}/infra/main.bicep"
        assert f"@{root}/infra/main.parameters.json" in deployment
        assert _params(deployment)["namePrefix"] == "demo"
        assert _params(deployment)["location"] == "eastus"
        assert _params(deployment)["containerAppName"] == "demo-api"
    assert _params(infra)["containerImage"] == ""  # first pass: no app yet
    assert _params(app)["containerImage"] == "fakeacr.azurecr.io/piston-backend:t1"
    assert build[:2] == ["acr", "build"]
    assert _opt(build, "--registry") == "fakeacr" and _opt(build, "--image") == "piston-backend:t1"
    assert _opt(build, "--file") == "Dockerfile" and build[-1] == root  # --file is relative to the context
    bicep_params = set(bc.parse(BICEP.read_text()).params)
    for deployment in (infra, app):  # az rejects key=value pairs the template does not declare
        assert set(_params(deployment)) <= bicep_params
    secret = fake_azure.state("secret.json")
    assert secret["mode"] == 0o600 and len(secret["apiKeys"]) >= 16
    assert not any(secret["apiKeys"] in " ".join(c) for c in calls), "the API key leaked onto a command line"
    assert fake_azure.state("ready.txt") == "https://piston-api.fake.test/ready\n"
    smoke = fake_azure.state("smoke.json")
    assert smoke["argv"] == ["--endpoint", "https://piston-api.fake.test"]
    assert smoke["api_key"] == secret["apiKeys"]
    assert "backend:  https://piston-api.fake.test" in result.stderr


def test_deploy_existing_app_updates_the_image(fake_azure):
    old = "fakeacr.azurecr.io/piston-backend:old"
    result = fake_azure.run("deploy.sh", "-t", "t2", "--skip-smoke-test", FAKE_EXISTING_IMAGE=old)
    assert result.returncode == 0, result.stderr
    calls = fake_azure.calls()
    assert _verbs(calls) == [
        "account show", "account show", "group create", "containerapp show", "containerapp secret",
        "deployment group create", "acr build", "containerapp update", "containerapp show",
    ]
    assert _params(calls[5])["containerImage"] == old  # config refresh keeps the running image
    update = calls[7]
    assert _opt(update, "--name") == "piston-api" and _opt(update, "--resource-group") == "piston-sessions-rg"
    assert _opt(update, "--image") == "fakeacr.azurecr.io/piston-backend:t2"
    assert fake_azure.state("secret.json")["apiKeys"] == "existing-key-0123456789"
    assert fake_azure.state("smoke.json") is None


def test_deploy_stops_at_the_failing_step(fake_azure):
    result = fake_azure.run("deploy.sh", "-t", "t3", FAKE_ACR_RC="1")
    assert result.returncode == 1
    assert "FAILED in step 'build fakeacr.azurecr.io/piston-backend:t3" in result.stderr
    assert _verbs(fake_azure.calls())[-1] == "acr build"
    assert fake_azure.state("ready.txt") is None


def test_deploy_readiness_timeout_is_an_error(fake_azure):
    result = fake_azure.run("deploy.sh", "-t", "t4", FAKE_READY_RC="1")
    assert result.returncode == 1
    assert "FAILED in step 'wait for https://piston-api.fake.test/ready" in result.stderr
    assert fake_azure.state("smoke.json") is None


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-p", "Bad-Prefix"], {}, "must match"),
        (["--bogus"], {}, "unknown argument '--bogus'"),
        (["-g"], {}, "option -g needs a value"),
        ([], {"API_KEYS": "short"}, "at least 16 characters"),
    ],
)
def test_deploy_rejects_bad_input(fake_azure, args: list[str], env: dict[str, str], message: str):
    result = fake_azure.run("deploy.sh", *args, **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "deployment" not in _verbs(fake_azure.calls())


def test_teardown_deletes_with_yes(fake_azure):
    result = fake_azure.run("teardown.sh", "-g", "rg9", "--yes", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert fake_azure.calls()[-1] == ["group", "delete", "--name", "rg9", "--yes", "--no-wait"]


def test_teardown_refuses_without_confirmation(fake_azure):
    result = fake_azure.run("teardown.sh", "-g", "rg9")
    assert result.returncode == 1
    assert "without --yes" in result.stderr
    assert "group delete" not in _verbs(fake_azure.calls())


def test_teardown_of_missing_group_is_a_no_op(fake_azure):
    result = fake_azure.run("teardown.sh", "--yes", FAKE_GROUP_EXISTS="false")
    assert result.returncode == 0, result.stderr
    assert "nothing to delete" in result.stderr
    assert "group delete" not in _verbs(fake_azure.calls())
