"""Offline policy check of infra/main.bicep, on the tree pycep-parser reads.

pycep-parser is the Bicep parser checkov uses; it and checkov live in the tools venv
(scripts/setup.sh makes .venv-tools from requirements-tools.txt, apart from the service's
pins). checkov runs its Azure policies; this file adds what only this deployment needs:
the resources and their api-versions, the role assignments, egress disabled, and a
CustomContainer pool whose sessions pull with an identity of their own that no code in a
session can use (managedIdentitySettings lifecycle None). `az bicep build`, run by
infra/deploy.sh before anything is created, does the type checking.

    .venv-tools/bin/python infra/bicepcheck.py                       # main.bicep + main.parameters.json
    .venv-tools/bin/python infra/bicepcheck.py --json A.bicep B.bicep  # {file: [problems]} on stdout
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pycep import BicepParser

HERE = Path(__file__).resolve().parent

API_VERSIONS = {
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
CONTAINER_TYPES = {"PythonLTS", "CustomContainer"}
POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9]{2,62}$")

# The writable shape of Microsoft.App/sessionPools@2025-07-01, from Azure/azure-rest-api-specs
# specification/app/resource-manager/Microsoft.App/ContainerApps/stable/2025-07-01/SessionPools.json
# (definitions SessionPool, CustomContainerTemplate, SessionContainer, SessionIngress,
# SessionRegistryCredentials, ManagedIdentitySetting; EnvironmentVar from CommonDefinitions.json).
# A name missing here is a typo the RP would ignore or reject; {} means "any keys".
_ENV_VAR = {"name": None, "value": None, "secretRef": None}
POOL_SHAPE: dict[str, Any] = {
    "name": None, "location": None, "tags": {}, "identity": {"type": None, "userAssignedIdentities": {}},
    "dependsOn": None,
    "properties": {
        "environmentId": None, "containerType": None, "poolManagementType": None,
        "scaleConfiguration": {"maxConcurrentSessions": None, "readySessionInstances": None},
        "secrets": {"name": None, "value": None},
        "dynamicPoolConfiguration": {"lifecycleConfiguration": {
            "lifecycleType": None, "cooldownPeriodInSeconds": None, "maxAlivePeriodInSeconds": None}},
        "customContainerTemplate": {
            "registryCredentials": {"server": None, "username": None, "passwordSecretRef": None, "identity": None},
            "containers": {"image": None, "name": None, "command": None, "args": None, "env": _ENV_VAR,
                           "resources": {"cpu": None, "memory": None}},
            "ingress": {"targetPort": None},
        },
        "sessionNetworkConfiguration": {"status": None},
        "managedIdentitySettings": {"identity": None, "lifecycle": None},
    },
}
# Nothing a session container could use to reach the backend or Azure.
SESSION_FORBIDDEN_ENV = {
    "API_KEYS", "POOL_MANAGEMENT_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
}


class Template:
    """pycep's JSON of one file, with the few lookups the policies need."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.params: dict[str, Any] = tree.get("parameters") or {}
        self.vars: dict[str, Any] = tree.get("variables") or {}
        self.resources: dict[str, Any] = tree.get("resources") or {}
        self.outputs: dict[str, Any] = tree.get("outputs") or {}

    def body(self, symbol: str) -> dict[str, Any]:
        """A resource's body; `= if (cond) {...}` nests it one level down."""
        config = self.resources[symbol]["config"]
        return config["config"] if "condition" in config and "config" in config else config

    def condition(self, symbol: str) -> Any:
        return self.resources[symbol]["config"].get("condition")

    def value(self, node: Any) -> Any:
        """A literal, or what a param (its default) or var name stands for. pycep writes
        literals and names alike as strings; a name is one that is declared."""
        seen: set[str] = set()
        while isinstance(node, str) and node not in seen and (node in self.params or node in self.vars):
            seen.add(node)
            node = self.params[node].get("default") if node in self.params else self.vars[node]["value"]
        return node

    def allowed(self, param: str) -> list[Any] | None:
        for deco in self.params.get(param, {}).get("decorators", []):
            if deco.get("type") == "allowed":
                return list(deco["argument"])
        return None

    def secure(self, param: str) -> bool:
        return any(d.get("type") == "secure" for d in self.params.get(param, {}).get("decorators", []))

    def of_type(self, rtype: str) -> list[str]:
        return [s for s, r in self.resources.items() if r["type"] == rtype]


def text(node: Any) -> str:
    """An expression as Bicep-like text: `pool.properties.poolManagementEndpoint`, `guid(a.id, b)`."""
    if isinstance(node, dict) and "operator" in node:
        op = node["operator"]
        if op["type"] == "property_accessor":
            return f"{text(op['operands']['operand_1'])}.{text(op['operands']['operand_2'])}"
        return f"{op['type']}({', '.join(text(v) for v in op['operands'].values())})"
    if isinstance(node, dict) and "function" in node:
        fn = node["function"]
        args = [text(v) for v in (fn.get("parameters") or {}).values() if v is not None]
        return f"{fn['type']}({', '.join(args)})"
    return json.dumps(node) if not isinstance(node, str) else node


def branch(node: Any, when_true: bool) -> Any:
    """One side of `cond ? a : b` (the node itself when it is not a conditional)."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "conditional":
        return node["operator"]["operands"]["true_value" if when_true else "false_value"]
    return node


def get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def shape_problems(node: Any, shape: Any, where: str) -> list[str]:
    """Keys of `node` (through conditionals and lists) that `shape` does not know."""
    if not isinstance(shape, dict) or not shape:
        return []
    node = branch(node, True)
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in shape_problems(item, shape, f"{where}[{i}]")]
    if not isinstance(node, dict) or "operator" in node or "function" in node:
        return []
    found = []
    for key, child in node.items():
        if key not in shape:
            found.append(f"{where}: no property '{key}' in SessionPools.json 2025-07-01")
        else:
            found += shape_problems(child, shape[key], f"{where}.{key}")
    return found


def _one(t: Template, rtype: str, problems: list[str]) -> str | None:
    found = t.of_type(rtype)
    if len(found) != 1:
        problems.append(f"expected exactly one {rtype}, found {len(found)}")
        return None
    return found[0]


def _env(t: Template, container: Any) -> dict[str, Any]:
    return {t.value(e.get("name")): e for e in (container or {}).get("env") or [] if isinstance(e, dict)}


def role_problems(t: Template, problems: list[str], role: str, label: str,
                  scope: str, principal: str) -> None:
    """One assignment of `role` to `principal` on `scope`, named guid(scope.id, ...)."""
    add = problems.append
    found = [s for s in t.of_type("Microsoft.Authorization/roleAssignments")
             if t.value(get(t.body(s), "properties", "roleDefinitionId", "function", "parameters",
                            "resource_name_1")) == role
             and text(get(t.body(s), "properties", "principalId")) == f"{principal}.properties.principalId"]
    if len(found) != 1:
        add(f"{label} role ({role}) for {principal}: expected one assignment, found {len(found)}")
        return
    body = t.body(found[0])
    if body.get("scope") != scope:
        add(f"{label} role for {principal} must have scope: {scope}")
    if get(body, "properties", "principalType") != "ServicePrincipal":
        add(f"{label} role for {principal} needs principalType 'ServicePrincipal' (no replication race)")
    if not text(body.get("name")).startswith(f"guid({scope}.id, "):
        add(f"{label} role for {principal} must be named guid({scope}.id, ...)")


def pool_problems(t: Template, pool: str, env: str, registry: str, backend_identity: str) -> list[str]:
    problems: list[str] = []
    add = problems.append
    body = t.body(pool)
    props = body.get("properties") or {}
    problems += shape_problems(body, POOL_SHAPE, pool)

    kind = props.get("containerType")
    if kind not in t.params or set(t.allowed(kind) or []) != CONTAINER_TYPES:
        add(f"pool containerType must be a param with @allowed {sorted(CONTAINER_TYPES)}")
    elif t.value(kind) != "PythonLTS":
        add("param containerType must default to 'PythonLTS' (no image needed)")
    if t.value(get(props, "poolManagementType")) != "Dynamic":
        add("pool poolManagementType must be 'Dynamic'")
    status = get(props, "sessionNetworkConfiguration", "status")
    if t.value(status) != "EgressDisabled":
        add(f"pool sessionNetworkConfiguration.status must default to 'EgressDisabled', found {t.value(status)!r}")
    for key in ("maxConcurrentSessions", "readySessionInstances"):
        if get(props, "scaleConfiguration", key) not in t.params:
            add(f"pool scaleConfiguration.{key} must be a param")
    name = body.get("name")
    default = t.value(name)
    if name not in t.params:
        add("the pool name must be a param")
    elif isinstance(default, str) and "${" not in default and not POOL_NAME_RE.match(default):
        add(f"pool name default {default!r} does not match ^[a-z][a-z0-9]*$ (3-63)")
    if "secrets" in props:
        add("the pool must carry no secrets (sessions get none)")

    # CustomContainer: the properties are `isCustomContainer ? {...} : null`.
    custom = {k: branch(props.get(k), True) for k in ("environmentId", "customContainerTemplate",
                                                     "managedIdentitySettings")}
    pythonlts = [k for k in custom if branch(props.get(k), False) is not None]
    if pythonlts:
        add(f"a PythonLTS pool must leave out {', '.join(pythonlts)} (null when not CustomContainer)")
    if text(custom["environmentId"]) != f"{env}.id":
        add(f"a CustomContainer pool needs environmentId: {env}.id (a workload-profiles environment)")
    template = custom["customContainerTemplate"] or {}
    identities = get(branch(body.get("identity"), True), "userAssignedIdentities") or {}
    pool_ids = [k.strip("'").removeprefix("${").removesuffix("}") for k in identities]
    pull_identity = text(get(template, "registryCredentials", "identity"))
    if text(get(template, "registryCredentials", "server")) != f"{registry}.properties.loginServer":
        add(f"customContainerTemplate.registryCredentials.server must be {registry}.properties.loginServer")
    if get(template, "registryCredentials", "passwordSecretRef") or get(template, "registryCredentials", "username"):
        add("the pool must pull with its identity, not a registry password")
    if pool_ids != [pull_identity]:
        add(f"the pool must carry exactly its pull identity ({pull_identity}), found {pool_ids}")
    if pull_identity == f"{backend_identity}.id":
        add(f"sessions must not carry the backend's identity {backend_identity} (it may call the pool)")
    settings = custom["managedIdentitySettings"] or []
    if [text(s.get("identity")) for s in settings] != [pull_identity]:
        add(f"managedIdentitySettings must name the pull identity {pull_identity}")
    if any(t.value(s.get("lifecycle")) != "None" for s in settings):
        add("managedIdentitySettings lifecycle must be 'None': code in a session must never mint tokens")
    containers = template.get("containers") or []
    if len(containers) != 1:
        add(f"customContainerTemplate needs one container, found {len(containers)}")
        return problems
    container = containers[0]
    if container.get("image") != "containerImage":
        add("the session container must run containerImage (the backend's own image)")
    port = t.value(get(template, "ingress", "targetPort"))
    if not isinstance(port, int):
        add("customContainerTemplate.ingress.targetPort must be the service port")
    env_vars = _env(t, container)
    if t.value(get(env_vars.get("SERVICE_ROLE"), "value")) != "session":
        add("the session container needs SERVICE_ROLE=session")
    if str(t.value(get(env_vars.get("PORT"), "value", "function", "parameters", "value_to_convert"))) != str(port):
        add("the session container's PORT must be the targetPort")
    for var_name, entry in env_vars.items():
        if var_name in SESSION_FORBIDDEN_ENV or "secretRef" in entry:
            add(f"the session container must not get {var_name} (no secrets, no route back)")
    for key in ("cpu", "memory"):
        if not re.search(r"\bsession(Cpu|Memory)\b", text(get(container, "resources", key))):
            add(f"the session container's resources.{key} must be a param (sessionCpu/sessionMemory)")
    if "sessionAcrPull" not in (body.get("dependsOn") or []):
        add("the pool must dependsOn the sessions' AcrPull assignment")
    return problems


def app_problems(t: Template, app: str, pool: str, identity: str) -> list[str]:
    problems: list[str] = []
    add = problems.append
    body = t.body(app)
    containers = get(body, "properties", "template", "containers") or []
    if len(containers) != 1:
        return [f"the app needs one container, found {len(containers)}"]
    env_vars = _env(t, containers[0])
    want = {"USE_LOCAL_EXECUTOR": "false", "FALLBACK_TO_LOCAL": "false", "SESSION_POOL_TYPE": "containerType",
            "POOL_MANAGEMENT_ENDPOINT": f"{pool}.properties.poolManagementEndpoint",
            "AZURE_CLIENT_ID": f"{identity}.properties.clientId"}
    for name, value in want.items():
        if name not in env_vars:
            add(f"app env {name} is missing")
        elif text(env_vars[name].get("value")) != value:
            add(f"app env {name} must be {value}")
    if "secretRef" not in env_vars.get("API_KEYS", {}):
        add("app env API_KEYS must come from a secret (secretRef)")
    probes = {p.get("type"): p for p in containers[0].get("probes") or []}
    for kind, path in (("Liveness", "/health"), ("Readiness", "/ready")):
        if get(probes.get(kind), "httpGet", "path") != path:
            add(f"the app needs a {kind} probe on {path}")
    if get(body, "properties", "configuration", "ingress", "external") is not True:
        add("the app ingress must be external")
    depends = body.get("dependsOn") or []
    for needed in ("acrPull", "sessionExecutor"):
        if needed not in depends:
            add(f"the app must dependsOn {needed}")
    return problems


def check(t: Template) -> list[str]:
    problems: list[str] = []
    add = problems.append
    for symbol, res in t.resources.items():
        want = API_VERSIONS.get(res["type"])
        if want is None:
            add(f"resource {symbol}: unexpected type {res['type']}")
        elif res["api_version"] != want:
            add(f"resource {symbol}: {res['type']}@{res['api_version']}, expected @{want}")
    pool = _one(t, "Microsoft.App/sessionPools", problems)
    env = _one(t, "Microsoft.App/managedEnvironments", problems)
    registry = _one(t, "Microsoft.ContainerRegistry/registries", problems)
    app = _one(t, "Microsoft.App/containerApps", problems)
    identities = t.of_type("Microsoft.ManagedIdentity/userAssignedIdentities")
    if len(identities) != 2 or "identity" not in identities or "sessionIdentity" not in identities:
        add(f"expected the identities 'identity' (backend) and 'sessionIdentity' (image pull), found {identities}")
        return problems
    if not (pool and env and registry and app):
        return problems
    if get(t.body(env), "properties", "workloadProfiles") in (None, []):
        add("the environment needs workloadProfiles (CustomContainer pools need a workload-profiles environment)")
    if get(t.body(registry), "properties", "adminUserEnabled") is not False:
        add("the registry must set adminUserEnabled: false")
    role_problems(t, problems, SESSION_EXECUTOR_ROLE, "Session Executor", pool, "identity")
    role_problems(t, problems, ACR_PULL_ROLE, "AcrPull", registry, "identity")
    role_problems(t, problems, ACR_PULL_ROLE, "AcrPull", registry, "sessionIdentity")
    for symbol in ("sessionIdentity", "sessionAcrPull"):
        if symbol in t.resources and t.condition(symbol) != "isCustomContainer":
            add(f"{symbol} must be deployed only if (isCustomContainer)")
    problems += pool_problems(t, pool, env, registry, "identity")
    problems += app_problems(t, app, pool, "identity")
    return problems


def parameters_problems(t: Template, params_file: dict[str, Any]) -> list[str]:
    """The parameters file: only declared params, no secrets, values within @allowed, egress off."""
    problems: list[str] = []
    for name, entry in params_file.items():
        if name not in t.params:
            problems.append(f"parameters file: {name!r} is not a param of main.bicep")
        elif t.secure(name):
            problems.append(f"parameters file: secure param {name!r} must not be stored in the file")
        elif not isinstance(entry, dict) or set(entry) != {"value"}:
            problems.append(f"parameters file: {name!r} must be {{\"value\": ...}}")
        elif (allowed := t.allowed(name)) is not None and entry["value"] not in allowed:
            problems.append(f"parameters file: {name}={entry['value']!r} is not in @allowed {allowed}")
    if params_file.get("sessionNetworkStatus", {}).get("value", "EgressDisabled") != "EgressDisabled":
        problems.append("parameters file: sessionNetworkStatus must stay 'EgressDisabled'")
    name = params_file.get("sessionPoolName", {}).get("value")
    if name is not None and not POOL_NAME_RE.match(str(name)):
        problems.append(f"parameters file: sessionPoolName={name!r} does not match ^[a-z][a-z0-9]*$ (3-63)")
    return problems


_parser: BicepParser | None = None


def parse(source: str) -> dict[str, Any]:
    global _parser
    _parser = _parser or BicepParser()  # building the LALR tables takes longer than a parse: once
    return _parser.parse(text=source)


def problems_in(source: str, params_file: dict[str, Any]) -> list[str]:
    try:
        tree = parse(source)
    except Exception as exc:  # pycep raises lark's errors and ValueError: any of them means "does not parse"
        return [f"syntax: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]
    template = Template(tree)
    return check(template) + parameters_problems(template, params_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=[HERE / "main.bicep"])
    parser.add_argument("--parameters", type=Path, default=HERE / "main.parameters.json")
    parser.add_argument("--json", action="store_true", help="print {file: [problems]} and exit 0")
    args = parser.parse_args(argv)
    params_file = json.loads(args.parameters.read_text())["parameters"]
    found = {str(f): problems_in(f.read_text(), params_file) for f in args.files}
    if args.json:
        print(json.dumps(found))
        return 0
    for name, problems in found.items():
        for problem in problems:
            print(f"{name}: {problem}")
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
