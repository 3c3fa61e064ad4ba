"""infra/: the Bicep template, its parameters file and the deploy/teardown scripts.

There is no Azure account here, and no Bicep compiler (infra/deploy.sh runs
`az bicep build`, `validate` and `what-if` before it creates anything). Offline:

* checkov's Azure policies run on main.bicep (``checkov --framework bicep --skip-download``);
* infra/bicepcheck.py reads main.bicep with pycep-parser (checkov's Bicep parser) and checks
  what this deployment needs: resources, api-versions, role GUIDs, egress disabled, the
  CustomContainer pool's pull identity with lifecycle None;
* mutated copies prove both fail;
* the scripts run against a fake ``az`` that records its calls.

checkov and pycep-parser live in .venv-tools (requirements-tools.txt, made by scripts/setup.sh):
checkov's pins conflict with requirements.txt, so they run as subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
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
TOOLS_BIN = Path(os.environ.get("INFRA_TOOLS_BIN", REPO / ".venv-tools" / "bin"))
# The three registry checks main.bicep skips, each with its reason in the template.
CHECKOV_SKIPPED = {"CKV_AZURE_139", "CKV_AZURE_163", "CKV_AZURE_166"}


def tool(name: str) -> str:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (it installs requirements-tools.txt into .venv-tools)")
    return str(path)


def bicepcheck(*args: str, params: Path = PARAMS) -> dict[str, list[str]]:
    """{file: problems} from infra/bicepcheck.py, run by the tools venv's python."""
    result = subprocess.run([tool("python"), str(INFRA / "bicepcheck.py"), "--json", "--parameters", str(params),
                             *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _params_doc() -> dict[str, Any]:
    return json.loads(PARAMS.read_text())


# ------------------------------------------------------------------ the real files


def test_policies_hold():
    assert bicepcheck(str(BICEP)) == {str(BICEP): []}


def test_bicepcheck_cli_fails_on_problems(tmp_path: Path):
    bad = tmp_path / "bad.bicep"
    bad.write_text(BICEP.read_text().replace("lifecycle: 'None'", "lifecycle: 'Main'"))
    ok = subprocess.run([tool("python"), str(INFRA / "bicepcheck.py")], capture_output=True, text=True, timeout=60)
    failed = subprocess.run([tool("python"), str(INFRA / "bicepcheck.py"), str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout) == (0, "")
    assert failed.returncode == 1 and "lifecycle must be 'None'" in failed.stdout


def test_infra_check_reads_no_private_sdk_names():
    for path in (INFRA / "bicepcheck.py", Path(__file__)):
        source = path.read_text()
        for private in ("_attr_" + "to_rest_field", "_rest_" + "name", "azure" + ".mgmt"):
            assert private not in source, f"{path.name} uses {private}"


def test_parameters_file_shape():
    doc = _params_doc()
    assert doc["$schema"].endswith("/deploymentParameters.json#")
    assert doc["contentVersion"] == "1.0.0.0"
    assert set(doc) == {"$schema", "contentVersion", "parameters"}
    assert doc["parameters"]["containerType"] == {"value": "PythonLTS"}


def test_pool_name_rule_is_documented():
    text = BICEP.read_text()
    assert "^[a-z][a-z0-9]*$" in text and "3-63" in text
    readme = (INFRA / "README.md").read_text()
    assert "^[a-z][a-z0-9]*$" in readme


def test_port_matches_the_dockerfile():
    exposed = re.findall(r"^EXPOSE\s+(\d+)", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert re.search(r"^var containerPort = (\d+)$", BICEP.read_text(), re.MULTILINE).group(1) == exposed[-1]


@pytest.mark.slow  # seconds: checkov loads all its frameworks' checks
def test_checkov_azure_policies_offline(tmp_path: Path):
    """checkov's policies pass (three skipped with reasons), and fail on a copy with the admin user on."""
    (tmp_path / "main.bicep").write_text(BICEP.read_text())
    bad = BICEP.read_text().replace("adminUserEnabled: false", "adminUserEnabled: true")
    (tmp_path / "admin.bicep").write_text(bad)
    result = subprocess.run(
        [tool("checkov"), "-d", str(tmp_path), "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_OUTPUT_ON_STDERR": "1"},
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)["results"]

    def by_file(kind: str, name: str) -> dict[str, dict[str, Any]]:
        return {c["check_id"]: c for c in report[kind] if c["file_path"].endswith("/" + name)}

    assert by_file("failed_checks", "main.bicep") == {}
    assert set(by_file("skipped_checks", "main.bicep")) == CHECKOV_SKIPPED
    for check in by_file("skipped_checks", "main.bicep").values():
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} is skipped without a reason"
    assert {"CKV_AZURE_131", "CKV_AZURE_137", "CKV_AZURE_138"} <= set(by_file("passed_checks", "main.bicep"))
    assert "CKV_AZURE_137" in by_file("failed_checks", "admin.bicep")


# ------------------------------------------------------------------ the policies fail on broken copies


def _sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    """Replace ``old`` (which must still be in main.bicep) by ``new``."""

    def apply(src: str) -> str:
        assert old in src, f"mutation no longer applies, update it: {old!r}"
        return src.replace(old, new, count)

    return apply


def _drop_resource(symbol: str) -> Callable[[str], str]:
    """Delete ``resource <symbol> ... }`` and its dependsOn entries."""

    def apply(src: str) -> str:
        start = src.index(f"resource {symbol} ")
        end = src.index("\n}\n", start) + 3
        return (src[:start] + src[end:]).replace(f"    {symbol}\n", "")

    return apply


_SESSION_ENV = "              name: 'SERVICE_ROLE'\n              value: 'session'\n            }\n"


def _session_env(name: str, field: str) -> Callable[[str], str]:
    """Give the session container one more environment variable."""
    return _sub(_SESSION_ENV, f"{_SESSION_ENV}            {{\n              name: '{name}'\n              {field}\n"
                              "            }\n")

# (id, mutation of main.bicep, pattern expected among the problems)
BICEP_MUTATIONS: list[tuple[str, Callable[[str], str], str]] = [
    ("egress-default", _sub("sessionNetworkStatus string = 'EgressDisabled'", "sessionNetworkStatus string = 'EgressEnabled'"),
     r"status must default to 'EgressDisabled'"),
    ("egress-literal", _sub("status: sessionNetworkStatus", "status: 'EgressEnabled'"), r"'EgressDisabled'"),
    ("identity-lifecycle-main", _sub("lifecycle: 'None'", "lifecycle: 'Main'"), r"lifecycle must be 'None'"),
    ("sessions-get-backend-identity", _sub("sessionIdentity.id", "identity.id", count=10),
     r"must not carry the backend's identity"),
    ("settings-name-other-identity", _sub("        identity: sessionIdentity.id\n        lifecycle",
                                          "        identity: identity.id\n        lifecycle"),
     r"managedIdentitySettings must name the pull identity"),
    ("registry-password", _sub("        identity: sessionIdentity.id\n      }\n      containers",
                               "        identity: sessionIdentity.id\n        passwordSecretRef: 'pw'\n      }\n"
                               "      containers"),
     r"not a registry password"),
    ("no-environment", _sub("environmentId: isCustomContainer ? env.id : null", "environmentId: null"),
     r"needs environmentId: env.id"),
    ("environment-for-pythonlts", _sub("environmentId: isCustomContainer ? env.id : null", "environmentId: env.id"),
     r"PythonLTS pool must leave out environmentId"),
    ("no-workload-profiles", _sub("workloadProfiles: [", "workloadProfilesX: ["), r"needs workloadProfiles"),
    ("container-type-choices", _sub("  'PythonLTS'\n  'CustomContainer'\n", "  'PythonLTS'\n"),
     r"containerType must be a param with @allowed"),
    ("session-role", _sub(_SESSION_ENV, _SESSION_ENV.replace("'session'", "'api'")), r"needs SERVICE_ROLE=session"),
    ("session-gets-api-keys", _session_env("API_KEYS", "secretRef: 'api-keys'"), r"must not get API_KEYS"),
    ("session-gets-endpoint", _session_env("POOL_MANAGEMENT_ENDPOINT", "value: 'x'"),
     r"must not get POOL_MANAGEMENT_ENDPOINT"),
    ("target-port", _sub("        targetPort: containerPort\n      }\n    } : null",
                         "        targetPort: 'eight'\n      }\n    } : null"), r"targetPort must be the service port"),
    ("target-port-typo", _sub("        targetPort: containerPort\n      }\n    } : null",
                              "        targetport: containerPort\n      }\n    } : null"),
     r"no property 'targetport' in SessionPools.json"),
    ("ready-sessions-typo", _sub("readySessionInstances: readySessionInstances", "readySessionInstance: readySessionInstances"),
     r"no property 'readySessionInstance'"),
    ("ready-sessions-hardcoded", _sub("readySessionInstances: readySessionInstances", "readySessionInstances: 1"),
     r"readySessionInstances must be a param"),
    ("session-cpu-hardcoded", _sub("cpu: json(sessionCpu)", "cpu: json('0.5')"), r"resources.cpu must be a param"),
    ("pool-secrets", _sub("    poolManagementType: poolManagementType\n",
                          "    poolManagementType: poolManagementType\n    secrets: []\n"), r"no secrets"),
    ("drop-session-executor", _drop_resource("sessionExecutor"), r"Session Executor role .*found 0"),
    ("executor-wrong-scope", _sub("scope: pool\n", "scope: registry\n"), r"Session Executor role .*scope: pool"),
    ("wrong-executor-guid", _sub("'0fb8eba5-a2bb", "'0fb8eba6-a2bb"), r"Session Executor role .*found 0"),
    ("drop-session-acr-pull", _drop_resource("sessionAcrPull"), r"AcrPull role .* for sessionIdentity.*found 0"),
    ("session-identity-always", _sub("@2023-01-31' = if (isCustomContainer) {", "@2023-01-31' = {"),
     r"sessionIdentity must be deployed only if"),
    ("principal-type", _sub("principalType: 'ServicePrincipal'", "principalType: 'User'"), r"principalType"),
    ("pool-api-version", _sub("'Microsoft.App/sessionPools@2025-07-01'", "'Microsoft.App/sessionPools@2024-02-02-preview'"),
     r"expected @2025-07-01"),
    ("admin-user", _sub("adminUserEnabled: false", "adminUserEnabled: true"), r"adminUserEnabled: false"),
    ("local-executor-on", _sub("'USE_LOCAL_EXECUTOR'\n              value: 'false'",
                               "'USE_LOCAL_EXECUTOR'\n              value: 'true'"), r"USE_LOCAL_EXECUTOR must be false"),
    ("no-pool-type-for-app", _sub("name: 'SESSION_POOL_TYPE'", "name: 'POOL_TYPE'"), r"SESSION_POOL_TYPE is missing"),
    ("readiness-path", _sub("path: '/ready'", "path: '/health'"), r"Readiness probe on /ready"),
    ("unbalanced", _sub("      status: sessionNetworkStatus\n    }\n", "      status: sessionNetworkStatus\n"),
     r"^syntax:"),
]


@pytest.fixture(scope="module")
def mutated_bicep_problems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """All mutants checked in one run of bicepcheck (one interpreter start, not thirty)."""
    folder = tmp_path_factory.mktemp("mutants")
    paths = {}
    for name, mutate, _ in BICEP_MUTATIONS:
        paths[name] = folder / f"{name}.bicep"
        paths[name].write_text(mutate(BICEP.read_text()))
    found = bicepcheck(*map(str, paths.values()))
    return {name: found[str(path)] for name, path in paths.items()}


@pytest.mark.parametrize(("name", "expected"), [(m[0], m[2]) for m in BICEP_MUTATIONS],
                         ids=[m[0] for m in BICEP_MUTATIONS])
def test_policies_fail_on_mutated_bicep(mutated_bicep_problems: dict[str, list[str]], name: str, expected: str):
    problems = mutated_bicep_problems[name]
    assert any(re.search(expected, p, re.MULTILINE) for p in problems), problems


PARAM_MUTATIONS: list[tuple[str, str, Any, str]] = [
    ("unknown-key", "maxConcurrentSesions", 20, r"'maxConcurrentSesions' is not a param"),
    ("not-allowed", "containerType", "NodeLTS", r"'NodeLTS' is not in @allowed"),
    ("egress-on", "sessionNetworkStatus", "EgressEnabled", r"must stay 'EgressDisabled'"),
    ("bad-pool-name", "sessionPoolName", "my-pool", r"does not match"),
    ("secret-in-file", "apiKeys", "0123456789abcdefXYZ", r"secure param 'apiKeys'"),
]


@pytest.mark.parametrize(("key", "value", "expected"), [m[1:] for m in PARAM_MUTATIONS],
                         ids=[m[0] for m in PARAM_MUTATIONS])
def test_policies_fail_on_mutated_parameters(tmp_path: Path, key: str, value: Any, expected: str):
    doc = _params_doc()
    doc["parameters"][key] = {"value": value}
    params = tmp_path / "params.json"
    params.write_text(json.dumps(doc))
    problems = bicepcheck(str(BICEP), params=params)[str(BICEP)]
    assert any(re.search(expected, p) for p in problems), problems


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


def test_scripts_pass_shellcheck():
    # -x: follow the scripts' `source` of infra/lib.sh.
    result = subprocess.run([tool("shellcheck"), "-x", str(DEPLOY), str(TEARDOWN), str(INFRA / "lib.sh"),
                             str(INFRA / "docker-entrypoint.sh")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_finds_problems(tmp_path: Path):
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout


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
if cmd == ["bicep", "build"]:
    with open(opt("--outfile"), "w") as fh:
        json.dump({"$schema": "compiled from " + opt("--file")}, fh)
elif cmd == ["account", "show"]:
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
elif args[:3] == ["deployment", "group", "validate"]:
    sys.exit(int(os.environ.get("FAKE_VALIDATE_RC", "0")))
elif args[:3] == ["deployment", "group", "what-if"]:
    print("Resource changes: 9 to create.")
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
    given = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    custom = given.get("containerType") == "CustomContainer"
    endpoint = ("https://p.env1.westus2.azurecontainerapps.io" if custom else
                "https://westus2.dynamicsessions.io/subscriptions/s/resourceGroups/g/sessionPools/p")
    if custom and not given.get("containerImage"):
        endpoint = ""  # main.bicep: a CustomContainer pool waits for the image
    outputs = {k: {"type": "String", "value": v} for k, v in {
        "registryName": "fakeacr", "registryLoginServer": "fakeacr.azurecr.io",
        "poolManagementEndpoint": endpoint, "appUrl": "", "containerAppName": "piston-api"}.items()}
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
        "bicep build", "account show", "account show", "group create", "containerapp show",
        "deployment group validate", "deployment group what-if", "deployment group create", "acr build",
        "deployment group validate", "deployment group what-if", "deployment group create", "containerapp show",
    ]
    root = str(fake_azure.root)
    assert _opt(calls[0], "--file") == f"{root}/infra/main.bicep"
    compiled = _opt(calls[0], "--outfile")
    assert _opt(calls[3], "--name") == "rg1" and _opt(calls[3], "--location") == "eastus"
    infra, build, app = calls[7], calls[8], calls[11]
    assert calls[5][3:] == [*infra[3:-4], "--output", "none"]  # validate and what-if check what create then runs
    assert calls[6][3:] == infra[3:-4]
    assert calls[9][3:-2] == app[3:-4]
    for deployment in (infra, app):
        assert _opt(deployment, "--resource-group") == "rg1"
        assert _opt(deployment, "--template-file") == compiled  # the az bicep build output
        assert _params(deployment)["containerType"] == "PythonLTS"
        assert f"@{root}/infra/main.parameters.json" in deployment
        assert _params(deployment)["namePrefix"] == "demo"
        assert _params(deployment)["location"] == "eastus"
        assert _params(deployment)["containerAppName"] == "demo-api"
    assert _params(infra)["containerImage"] == ""  # first pass: no app yet
    assert _params(app)["containerImage"] == "fakeacr.azurecr.io/piston-backend:t1"
    assert build[:2] == ["acr", "build"]
    assert _opt(build, "--registry") == "fakeacr" and _opt(build, "--image") == "piston-backend:t1"
    assert _opt(build, "--file") == "Dockerfile" and build[-1] == root  # --file is relative to the context
    bicep_params = set(re.findall(r"^param (\w+)", BICEP.read_text(), re.MULTILINE))
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
        "bicep build", "account show", "account show", "group create", "containerapp show", "containerapp secret",
        "deployment group validate", "deployment group what-if", "deployment group create", "acr build",
        "containerapp update", "containerapp show",
    ]
    assert _params(calls[8])["containerImage"] == old  # config refresh keeps the running image
    update = calls[10]
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


def test_deploy_what_if_creates_nothing(fake_azure):
    result = fake_azure.run("deploy.sh", "--what-if", "-g", "rg2")
    assert result.returncode == 0, result.stderr
    assert _verbs(fake_azure.calls()) == [
        "bicep build", "account show", "account show", "group exists", "containerapp show",
        "deployment group validate", "deployment group what-if",
    ]
    assert "Resource changes: 9 to create." in result.stdout
    assert "nothing was created or changed" in result.stderr
    assert fake_azure.state("smoke.json") is None


def test_deploy_what_if_needs_the_group(fake_azure):
    result = fake_azure.run("deploy.sh", "--what-if", FAKE_GROUP_EXISTS="false")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "group create" not in _verbs(fake_azure.calls())


def test_deploy_invalid_template_creates_nothing(fake_azure):
    result = fake_azure.run("deploy.sh", FAKE_VALIDATE_RC="1")
    assert result.returncode == 1
    assert "FAILED in step 'validate deployment piston-infra" in result.stderr
    verbs = _verbs(fake_azure.calls())
    assert verbs[-1] == "deployment group validate"
    assert "deployment group create" not in verbs and "acr build" not in verbs


@pytest.mark.parametrize("existing", ["", "fakeacr.azurecr.io/piston-backend:old"], ids=["first-run", "redeploy"])
def test_deploy_custom_container_pool(fake_azure, existing: str):
    """Pass 1 without the image (no pool yet), build, then Bicep again: the pool and the app get the image."""
    result = fake_azure.run("deploy.sh", "--container-type", "CustomContainer", "-t", "c1",
                            FAKE_EXISTING_IMAGE=existing)
    assert result.returncode == 0, result.stderr
    calls = fake_azure.calls()
    verbs = _verbs(calls)
    creates = [c for c in calls if c[:3] == ["deployment", "group", "create"]]
    assert len(creates) == 2 and "containerapp update" not in verbs
    assert verbs.index("acr build") < calls.index(creates[1])
    assert [_params(c)["containerType"] for c in creates] == ["CustomContainer"] * 2
    assert _params(creates[0])["containerImage"] == existing
    assert _params(creates[1])["containerImage"] == "fakeacr.azurecr.io/piston-backend:c1"
    assert fake_azure.state("smoke.json")["argv"] == ["--endpoint", "https://piston-api.fake.test"]
    assert "pool:     https://p.env1.westus2.azurecontainerapps.io (CustomContainer)" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-p", "Bad-Prefix"], {}, "must match"),
        (["--bogus"], {}, "unknown argument '--bogus'"),
        (["-g"], {}, "option -g needs a value"),
        ([], {"API_KEYS": "short"}, "at least 16 characters"),
        (["--container-type", "NodeLTS"], {}, "must be PythonLTS or CustomContainer"),
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
