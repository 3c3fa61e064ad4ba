"""Check infra/main.bicep without a Bicep compiler.

Two parts:

* ``parse`` - a small, strict reader for the Bicep subset main.bicep uses:
  ``targetScope``, decorated ``param``/``var``/``output`` declarations and
  ``resource sym 'Type@version' = [if (cond)] { ... }`` with nested object and
  array literals, strings (escapes, ``${}`` interpolation), numbers, booleans and
  null. Anything else in value position (calls, member access, operators) is kept
  as an ``Expr`` holding its source text. Statements it does not know (module,
  type, func, import, loops) raise ``BicepSyntaxError`` instead of being skipped.

* ``check`` - compares every resource body with a schema of its type@apiVersion:
  property names, read-only properties, literal types, enum values (also through
  ``@allowed`` params), a few documented numeric ranges, and every reference in an
  expression (``pool.properties.poolManagementEndpoint`` must name a real
  property; a bare name must be a param, var or resource).

Schemas: Microsoft.App types come from the installed ``azure-mgmt-appcontainers``
models (their rest field names, annotations and enums), narrowed to the property
names that the Microsoft.App 2025-07-01 Bicep types list (bicep-types-az,
generated/app/microsoft.app/2025-07-01/types.md), because the 5.x SDK targets a
newer api-version. The other resource types (Log Analytics, Container Registry,
Managed Identity, role assignments) are transcribed below from bicep-types-az
types.md of the api-version used, for the objects main.bicep touches.

Run ``python infra/bicepcheck.py [file.bicep]`` to print the problems.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ============================================================== reader


class BicepSyntaxError(ValueError):
    pass


@dataclasses.dataclass
class Token:
    kind: str  # ident, number, string, punct, newline, eof
    text: str  # source text
    line: int
    start: int
    end: int
    value: Any = None  # decoded string / int
    interpolated: bool = False


_PUNCT = sorted(
    ["{", "}", "[", "]", "(", ")", ",", ":", ".", "?", "!", "=", "==", "!=", "<", ">", "<=", ">=",
     "&&", "||", "+", "-", "*", "/", "%", "@", "??", "?.", "=~", "!~", "::"],
    key=len,
    reverse=True,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}


def _scan_string(src: str, pos: int, line: int) -> tuple[int, str, bool]:
    """``pos`` is at the opening quote. Returns (end, decoded value, interpolated)."""
    if src.startswith("'''", pos):
        end = src.find("'''", pos + 3)
        if end < 0:
            raise BicepSyntaxError(f"line {line}: unterminated multi-line string")
        return end + 3, src[pos + 3 : end], False
    i = pos + 1
    out: list[str] = []
    interpolated = False
    while True:
        if i >= len(src) or src[i] == "\n":
            raise BicepSyntaxError(f"line {line}: unterminated string")
        ch = src[i]
        if ch == "'":
            return i + 1, "".join(out), interpolated
        if ch == "\\":
            nxt = src[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and src[i + 2 : i + 3] == "{":
                close = src.index("}", i)
                out.append(chr(int(src[i + 3 : close], 16)))
                i = close + 1
                continue
            raise BicepSyntaxError(f"line {line}: bad escape \\{nxt}")
        if src.startswith("${", i):
            interpolated = True
            depth, j = 1, i + 2
            while depth:
                if j >= len(src):
                    raise BicepSyntaxError(f"line {line}: unterminated interpolation")
                if src[j] == "'":
                    j, _, _ = _scan_string(src, j, line)
                    continue
                depth += {"{": 1, "}": -1}.get(src[j], 0)
                j += 1
            out.append(src[i:j])
            i = j
            continue
        out.append(ch)
        i += 1


def tokenize(src: str) -> list[Token]:
    tokens: list[Token] = []
    i, line = 0, 1
    while i < len(src):
        ch = src[i]
        if ch == "\n":
            tokens.append(Token("newline", "\n", line, i, i + 1))
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif src.startswith("//", i):
            i = src.find("\n", i) if "\n" in src[i:] else len(src)
        elif src.startswith("/*", i):
            end = src.find("*/", i + 2)
            if end < 0:
                raise BicepSyntaxError(f"line {line}: unterminated comment")
            line += src.count("\n", i, end)
            i = end + 2
        elif ch == "'":
            end, value, interp = _scan_string(src, i, line)
            tokens.append(Token("string", src[i:end], line, i, end, value, interp))
            line += src.count("\n", i, end)
            i = end
        elif ch.isdigit():
            m = re.compile(r"\d+(\.\d+)?").match(src, i)
            assert m
            text = m.group()
            tokens.append(Token("number", text, line, i, m.end(), float(text) if "." in text else int(text)))
            i = m.end()
        elif ch.isalpha() or ch == "_":
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(src, i)
            assert m
            tokens.append(Token("ident", m.group(), line, i, m.end()))
            i = m.end()
        else:
            for p in _PUNCT:
                if src.startswith(p, i):
                    tokens.append(Token("punct", p, line, i, i + len(p)))
                    i += len(p)
                    break
            else:
                raise BicepSyntaxError(f"line {line}: unexpected character {ch!r}")
    tokens.append(Token("eof", "", line, len(src), len(src)))
    return tokens


@dataclasses.dataclass
class Lit:
    value: Any  # str, int, float, bool or None
    line: int
    interpolated: bool = False  # a string with ${...}; value is its template text


@dataclasses.dataclass
class Expr:
    text: str
    line: int


@dataclasses.dataclass
class Obj:
    items: dict[str, Any]
    line: int
    key_lines: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Arr:
    items: list[Any]
    line: int


Node = Lit | Expr | Obj | Arr


@dataclasses.dataclass
class Param:
    name: str
    type: str
    default: Node | None
    decorators: dict[str, list[Node]]
    line: int

    @property
    def secure(self) -> bool:
        return "secure" in self.decorators

    def number(self, decorator: str) -> int | None:
        args = self.decorators.get(decorator)
        return args[0].value if args and isinstance(args[0], Lit) else None

    @property
    def allowed(self) -> list[Any] | None:
        args = self.decorators.get("allowed")
        if not args:
            return None
        arr = args[0]
        if not isinstance(arr, Arr) or not all(isinstance(x, Lit) for x in arr.items):
            raise BicepSyntaxError(f"line {self.line}: @allowed needs an array of literals")
        return [x.value for x in arr.items]


@dataclasses.dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    body: Obj
    existing: bool
    condition: str | None
    line: int


@dataclasses.dataclass
class Output:
    name: str
    type: str
    value: Node
    line: int


@dataclasses.dataclass
class BicepFile:
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = dataclasses.field(default_factory=dict)
    vars: dict[str, Node] = dataclasses.field(default_factory=dict)
    resources: dict[str, Resource] = dataclasses.field(default_factory=dict)
    outputs: dict[str, Output] = dataclasses.field(default_factory=dict)
    source: str = ""

    def symbols(self) -> set[str]:
        return set(self.params) | set(self.vars) | set(self.resources)


_CLOSERS = {"{": "}", "[": "]", "(": ")"}
_TERMINATORS = {",", ")", "]", "}"}


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None) -> BicepSyntaxError:
        tok = tok or self.tok
        return BicepSyntaxError(f"line {tok.line}: {message} (at {tok.text!r})")

    def take(self, kind: str, text: str | None = None) -> Token:
        tok = self.tok
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.error(f"expected {text or kind}")
        self.i += 1
        return tok

    def skip_newlines(self) -> None:
        while self.tok.kind == "newline":
            self.i += 1

    def end_of_statement(self) -> None:
        if self.tok.kind not in ("newline", "eof"):
            raise self.error("expected end of line")
        self.skip_newlines()

    # -- values
    def _expression_end(self, start: int) -> int:
        """Index just past the expression starting at ``start`` (depth-0 newline/terminator ends it)."""
        depth: list[str] = []
        j = start
        while True:
            t = self.toks[j]
            if t.kind == "eof":
                if depth:
                    raise BicepSyntaxError(f"line {t.line}: unbalanced {depth[-1]!r} before end of file")
                return j
            if t.kind == "punct" and t.text in _CLOSERS:
                depth.append(_CLOSERS[t.text])
            elif t.kind == "punct" and t.text in _TERMINATORS:
                if not depth:
                    return j
                if t.text != ",":
                    if t.text != depth[-1]:
                        raise BicepSyntaxError(f"line {t.line}: expected {depth[-1]!r}, found {t.text!r}")
                    depth.pop()
            elif t.kind == "newline" and not depth:
                return j
            j += 1

    def value(self) -> Node:
        start = self.i
        end = self._expression_end(start)
        if end == start:
            raise self.error("expected a value")
        first = self.toks[start]
        if first.kind == "punct" and first.text in ("{", "[") and self._matching(start) == end - 1:
            if first.text == "[" and self.toks[start + 1 : end][:3] and self._is_loop(start):
                raise self.error("for-expressions are not supported by this reader", first)
            return self.obj() if first.text == "{" else self.arr()
        self.i = end
        span = self.toks[start:end]
        if len(span) == 1 and first.kind == "string":
            return Lit(first.value, first.line, first.interpolated)
        if len(span) == 1 and first.kind == "number":
            return Lit(first.value, first.line)
        if len(span) == 1 and first.kind == "ident" and first.text in ("true", "false", "null"):
            return Lit({"true": True, "false": False, "null": None}[first.text], first.line)
        if len(span) == 2 and first.text == "-" and span[1].kind == "number":
            return Lit(-span[1].value, first.line)
        return Expr(self.src[first.start : span[-1].end], first.line)

    def _matching(self, start: int) -> int:
        depth = 0
        for j in range(start, len(self.toks)):
            t = self.toks[j]
            if t.kind == "punct" and t.text in _CLOSERS:
                depth += 1
            elif t.kind == "punct" and t.text in ("}", "]", ")"):
                depth -= 1
                if depth == 0:
                    return j
        raise self.error("unbalanced bracket", self.toks[start])

    def _is_loop(self, start: int) -> bool:
        j = start + 1
        while self.toks[j].kind == "newline":
            j += 1
        return self.toks[j].kind == "ident" and self.toks[j].text == "for"

    def _separator(self, closer: str) -> None:
        if self.tok.kind == "punct" and self.tok.text == ",":
            self.i += 1
        elif self.tok.kind not in ("newline",) and not (self.tok.kind == "punct" and self.tok.text == closer):
            raise self.error(f"expected a new line, ',' or {closer!r}")
        self.skip_newlines()

    def obj(self) -> Obj:
        open_tok = self.take("punct", "{")
        node = Obj({}, open_tok.line)
        self.skip_newlines()
        while not (self.tok.kind == "punct" and self.tok.text == "}"):
            key_tok = self.tok
            if key_tok.kind == "ident":
                key = key_tok.text
            elif key_tok.kind == "string":
                key = key_tok.value
            else:
                raise self.error("expected a property name")
            self.i += 1
            self.take("punct", ":")
            if key in node.items:
                raise self.error(f"duplicate property {key!r}", key_tok)
            node.items[key] = self.value()
            node.key_lines[key] = key_tok.line
            self._separator("}")
        self.take("punct", "}")
        return node

    def arr(self) -> Arr:
        open_tok = self.take("punct", "[")
        node = Arr([], open_tok.line)
        self.skip_newlines()
        while not (self.tok.kind == "punct" and self.tok.text == "]"):
            node.items.append(self.value())
            self._separator("]")
        self.take("punct", "]")
        return node

    # -- statements
    def decorator(self) -> tuple[str, list[Node]]:
        self.take("punct", "@")
        name = self.take("ident").text
        if self.tok.text == ".":  # sys.description(...)
            self.i += 1
            name = self.take("ident").text
        self.take("punct", "(")
        args: list[Node] = []
        self.skip_newlines()
        while not (self.tok.kind == "punct" and self.tok.text == ")"):
            args.append(self.value())
            self._separator(")")
        self.take("punct", ")")
        self.end_of_statement()
        return name, args

    def type_name(self) -> str:
        name = self.take("ident").text
        if name not in ("string", "int", "bool", "object", "array"):
            raise self.error(f"type {name!r} is not supported by this reader")
        return name

    def parse(self) -> BicepFile:
        out = BicepFile(source=self.src)
        self.skip_newlines()
        decorators: dict[str, list[Node]] = {}
        while self.tok.kind != "eof":
            if self.tok.text == "@":
                name, args = self.decorator()
                decorators[name] = args
                continue
            kw = self.take("ident")
            if kw.text == "targetScope":
                self.take("punct", "=")
                scope = self.value()
                if not isinstance(scope, Lit):
                    raise self.error("targetScope must be a string", kw)
                out.target_scope = scope.value
            elif kw.text == "param":
                name = self.take("ident").text
                ptype = self.type_name()
                default = None
                if self.tok.text == "=":
                    self.i += 1
                    default = self.value()
                self._declare(out, name, kw)
                out.params[name] = Param(name, ptype, default, decorators, kw.line)
            elif kw.text == "var":
                name = self.take("ident").text
                self.take("punct", "=")
                self._declare(out, name, kw)
                out.vars[name] = self.value()
            elif kw.text == "output":
                name = self.take("ident").text
                otype = self.type_name()
                self.take("punct", "=")
                if name in out.outputs:
                    raise self.error(f"duplicate output {name!r}", kw)
                out.outputs[name] = Output(name, otype, self.value(), kw.line)
            elif kw.text == "resource":
                out_res = self.resource(kw)
                self._declare(out, out_res.symbol, kw)
                out.resources[out_res.symbol] = out_res
            else:
                raise self.error(f"statement {kw.text!r} is not supported by this reader", kw)
            if kw.text not in ("param", "output", "resource") and decorators:
                raise self.error(f"decorators are not allowed on {kw.text!r}", kw)
            decorators = {}
            self.end_of_statement()
        return out

    def _declare(self, out: BicepFile, name: str, kw: Token) -> None:
        if name in out.symbols():
            raise self.error(f"{name!r} is declared twice", kw)

    def resource(self, kw: Token) -> Resource:
        symbol = self.take("ident").text
        type_tok = self.take("string")
        if type_tok.interpolated or "@" not in type_tok.value:
            raise self.error("resource type must be 'Namespace/type@api-version'", type_tok)
        rtype, version = type_tok.value.rsplit("@", 1)
        existing = False
        if self.tok.kind == "ident" and self.tok.text == "existing":
            existing = True
            self.i += 1
        self.take("punct", "=")
        condition = None
        if self.tok.kind == "ident" and self.tok.text == "if":
            self.i += 1
            if self.tok.text != "(":
                raise self.error("expected '(' after if")
            open_i = self.i
            close_i = self._matching(open_i)
            condition = self.src[self.toks[open_i + 1].start : self.toks[close_i - 1].end]
            self.i = close_i + 1
        if self.tok.text != "{":
            raise self.error("expected '{' (loops are not supported by this reader)")
        body = self.obj()
        return Resource(symbol, rtype, version, body, existing, condition, kw.line)


def parse(src: str) -> BicepFile:
    return _Parser(src).parse()


# ============================================================== schemas


@dataclasses.dataclass
class Prim:
    name: str  # string, int, number, bool, any


@dataclasses.dataclass
class Enum:
    values: frozenset[str]
    source: str


@dataclasses.dataclass
class ListOf:
    item: Any


@dataclasses.dataclass
class MapOf:
    value: Any


@dataclasses.dataclass
class Prop:
    type: Any
    readonly: bool = False
    required: bool = False
    range: tuple[int, int] | None = None


@dataclasses.dataclass
class ObjType:
    name: str
    props: dict[str, Prop] = dataclasses.field(default_factory=dict)


STR, INT, BOOL, ANY = Prim("string"), Prim("int"), Prim("bool"), Prim("any")


def O(type_name: str, /, **props: Any) -> ObjType:  # noqa: E743 - a schema DSL
    return ObjType(type_name, {k: v if isinstance(v, Prop) else Prop(v) for k, v in props.items()})


def RO(t: Any) -> Prop:
    return Prop(t, readonly=True)


def REQ(t: Any) -> Prop:
    return Prop(t, required=True)


def E(*values: str) -> Enum:
    return Enum(frozenset(values), "bicep-types-az")


# ---- Microsoft.App from azure-mgmt-appcontainers (annotations, rest names, enums)

# Property names per object in Microsoft.App@2025-07-01 (bicep-types-az types.md),
# for the objects main.bicep writes. The SDK (api 2026-07-01) must also know them.
APP_2025_07_01: dict[str, set[str]] = {
    "SessionPool": {"identity", "location", "properties", "tags"},
    "SessionPoolProperties": {
        "containerType", "customContainerTemplate", "dynamicPoolConfiguration", "environmentId",
        "managedIdentitySettings", "nodeCount", "poolManagementEndpoint", "poolManagementType",
        "provisioningState", "scaleConfiguration", "secrets", "sessionNetworkConfiguration",
    },
    "ScaleConfiguration": {"maxConcurrentSessions", "readySessionInstances"},
    "DynamicPoolConfiguration": {"lifecycleConfiguration"},
    "LifecycleConfiguration": {"cooldownPeriodInSeconds", "lifecycleType", "maxAlivePeriodInSeconds"},
    "SessionNetworkConfiguration": {"status"},
    "ManagedEnvironment": {"identity", "kind", "location", "properties", "tags"},
    "ManagedEnvironmentProperties": {
        "appLogsConfiguration", "customDomainConfiguration", "daprAIConnectionString", "daprAIInstrumentationKey",
        "daprConfiguration", "defaultDomain", "deploymentErrors", "eventStreamEndpoint",
        "infrastructureResourceGroup", "ingressConfiguration", "kedaConfiguration", "peerAuthentication",
        "peerTrafficConfiguration", "privateEndpointConnections", "provisioningState", "publicNetworkAccess",
        "staticIp", "vnetConfiguration", "workloadProfiles", "zoneRedundant",
    },
    "AppLogsConfiguration": {"destination", "logAnalyticsConfiguration"},
    "LogAnalyticsConfiguration": {"customerId", "sharedKey"},
    "WorkloadProfile": {"maximumCount", "minimumCount", "name", "workloadProfileType"},
    "ContainerApp": {"extendedLocation", "identity", "kind", "location", "managedBy", "properties", "tags"},
    "ContainerAppProperties": {
        "configuration", "customDomainVerificationId", "environmentId", "eventStreamEndpoint",
        "latestReadyRevisionName", "latestRevisionFqdn", "latestRevisionName", "managedEnvironmentId",
        "outboundIpAddresses", "provisioningState", "runningStatus", "template", "workloadProfileName",
    },
    "ManagedServiceIdentity": {"principalId", "tenantId", "type", "userAssignedIdentities"},
    "UserAssignedIdentity": {"clientId", "principalId"},
    "Configuration": {
        "activeRevisionsMode", "dapr", "identitySettings", "ingress", "maxInactiveRevisions", "registries",
        "runtime", "secrets", "service",
    },
    "Ingress": {
        "additionalPortMappings", "allowInsecure", "clientCertificateMode", "corsPolicy", "customDomains",
        "exposedPort", "external", "fqdn", "ipSecurityRestrictions", "stickySessions", "targetPort", "traffic",
        "transport",
    },
    "RegistryCredentials": {"identity", "passwordSecretRef", "server", "username"},
    "Secret": {"identity", "keyVaultUrl", "name", "value"},
    "Template": {
        "containers", "initContainers", "revisionSuffix", "scale", "serviceBinds",
        "terminationGracePeriodSeconds", "volumes",
    },
    "Container": {"args", "command", "env", "image", "name", "probes", "resources", "volumeMounts"},
    "ContainerResources": {"cpu", "ephemeralStorage", "memory"},
    "EnvironmentVar": {"name", "secretRef", "value"},
    "ContainerAppProbe": {
        "failureThreshold", "httpGet", "initialDelaySeconds", "periodSeconds", "successThreshold", "tcpSocket",
        "terminationGracePeriodSeconds", "timeoutSeconds", "type",
    },
    "ContainerAppProbeHttpGet": {"host", "httpHeaders", "path", "port", "scheme"},
    "Scale": {"cooldownPeriod", "maxReplicas", "minReplicas", "pollingInterval", "rules"},
    "ScaleRule": {"azureQueue", "custom", "http", "name", "tcp"},
    "HttpScaleRule": {"auth", "identity", "metadata"},
}

# Documented ranges (bicep-types-az descriptions, Learn session-pool.md).
RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("ContainerAppProbe", "failureThreshold"): (1, 10),
    ("ContainerAppProbe", "initialDelaySeconds"): (1, 60),
    ("ContainerAppProbe", "periodSeconds"): (1, 240),
    ("ContainerAppProbe", "successThreshold"): (1, 10),
    ("ContainerAppProbe", "timeoutSeconds"): (1, 240),
    ("ContainerAppProbeHttpGet", "port"): (1, 65535),
    ("Ingress", "targetPort"): (1, 65535),
    ("ScaleConfiguration", "maxConcurrentSessions"): (1, 600),
    ("ScaleConfiguration", "readySessionInstances"): (0, 600),
    ("LifecycleConfiguration", "cooldownPeriodInSeconds"): (300, 3600),
}

# Bicep-only properties of a resource declaration, handled by the checker itself.
META_KEYS = {"name", "scope", "dependsOn", "parent"}


class _SdkSchemas:
    """Schemas built from azure-mgmt-appcontainers' hybrid models."""

    def __init__(self) -> None:
        from azure.mgmt.appcontainers import models
        from azure.mgmt.appcontainers.models import _models

        self.models = models
        self.base = _models._Model
        self.namespace = dict(vars(_models))
        self.namespace["_models"] = models
        self.memo: dict[type, ObjType] = {}

    def model(self, cls: type) -> ObjType:
        if cls in self.memo:
            return self.memo[cls]
        out = ObjType(cls.__name__)
        self.memo[cls] = out
        cls()  # the hybrid model computes its rest-field table on first instantiation
        hints = typing.get_type_hints(cls, globalns=self.namespace)
        allowed = APP_2025_07_01.get(cls.__name__)
        for attr, field in cls._attr_to_rest_field.items():
            rest = field._rest_name
            if allowed is not None and rest not in allowed:
                continue
            hint = hints[attr]
            readonly = list(field._visibility or []) == ["read"]
            out.props[rest] = Prop(
                self.type_of(hint),
                readonly=readonly,
                # The generator annotates required fields without Optional[...].
                required=not readonly and type(None) not in typing.get_args(hint),
                range=RANGES.get((cls.__name__, rest)),
            )
        if allowed is not None:
            missing = allowed - set(out.props)
            if missing:
                raise RuntimeError(f"{cls.__name__}: SDK has no {sorted(missing)} (2025-07-01 lists them)")
        return out

    def type_of(self, hint: Any) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Union:
            enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
            if enums:
                members = frozenset(str(m.value) for m in enums[0])
                return Enum(members, f"azure.mgmt.appcontainers.models.{enums[0].__name__}")
            rest = [a for a in args if a is not type(None)]
            return self.type_of(rest[0]) if len(rest) == 1 else ANY
        if origin is list:
            return ListOf(self.type_of(args[0]))
        if origin is dict:
            return MapOf(self.type_of(args[1]))
        if hint is str:
            return STR
        if hint is bool:
            return BOOL
        if hint is int:
            return INT
        if hint is float:
            return Prim("number")
        if isinstance(hint, type) and issubclass(hint, self.base):
            return self.model(hint)
        return ANY


_SDK: _SdkSchemas | None = None


def _sdk() -> _SdkSchemas:
    global _SDK
    if _SDK is None:
        _SDK = _SdkSchemas()
    return _SDK


# ---- other providers, transcribed from bicep-types-az generated/*/types.md

_TAGS = MapOf(STR)
_USER_IDENTITY = O("UserIdentityProperties", clientId=RO(STR), principalId=RO(STR))


@functools.cache
def _transcribed() -> dict[str, ObjType]:
    workspace = O(
        "Workspace",  # Microsoft.OperationalInsights/workspaces@2023-09-01
        location=REQ(STR), tags=_TAGS, etag=STR,
        identity=O("Identity", principalId=RO(STR), tenantId=RO(STR),
                   type=REQ(E("None", "SystemAssigned", "UserAssigned")),
                   userAssignedIdentities=MapOf(_USER_IDENTITY)),
        properties=O(
            "WorkspaceProperties",
            createdDate=RO(STR), customerId=RO(STR), defaultDataCollectionRuleResourceId=STR,
            features=O("WorkspaceFeatures", clusterResourceId=STR, disableLocalAuth=BOOL, enableDataExport=BOOL,
                       enableLogAccessUsingOnlyResourcePermissions=BOOL, immediatePurgeDataOn30Days=BOOL,
                       unifiedSentinelBillingOnly=RO(BOOL)),
            forceCmkForQuery=BOOL, modifiedDate=RO(STR), privateLinkScopedResources=RO(ListOf(ANY)),
            provisioningState=RO(STR),
            publicNetworkAccessForIngestion=E("Disabled", "Enabled"),
            publicNetworkAccessForQuery=E("Disabled", "Enabled"),
            retentionInDays=INT,
            sku=O("WorkspaceSku", capacityReservationLevel=INT, lastSkuUpdate=RO(STR),
                  name=REQ(E("CapacityReservation", "Free", "LACluster", "PerGB2018", "PerNode", "Premium",
                             "Standalone", "Standard"))),
            workspaceCapping=O("WorkspaceCapping", dailyQuotaGb=INT, dataIngestionStatus=RO(STR),
                               quotaNextResetTime=RO(STR)),
        ),
    )
    registry = O(
        "Registry",  # Microsoft.ContainerRegistry/registries@2023-07-01
        location=REQ(STR), tags=_TAGS,
        identity=O("IdentityProperties", principalId=RO(STR), tenantId=RO(STR),
                   type=E("None", "SystemAssigned", "SystemAssigned, UserAssigned", "UserAssigned"),
                   userAssignedIdentities=MapOf(_USER_IDENTITY)),
        sku=REQ(O("Sku", name=REQ(E("Basic", "Classic", "Premium", "Standard")), tier=RO(STR))),
        properties=O(
            "RegistryProperties",
            adminUserEnabled=BOOL, creationDate=RO(STR), dataEndpointEnabled=BOOL,
            dataEndpointHostNames=RO(ListOf(STR)),
            encryption=ANY, loginServer=RO(STR), networkRuleBypassOptions=E("AzureServices", "None"),
            networkRuleSet=ANY, policies=ANY, privateEndpointConnections=RO(ListOf(ANY)), provisioningState=RO(STR),
            publicNetworkAccess=E("Disabled", "Enabled"), status=RO(ANY), zoneRedundancy=E("Disabled", "Enabled"),
        ),
    )
    identity = O(
        "UserAssignedIdentity",  # Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31
        location=REQ(STR), tags=_TAGS,
        properties=RO(O("UserAssignedIdentityProperties", clientId=RO(STR), principalId=RO(STR), tenantId=RO(STR))),
    )
    role_assignment = O(
        "RoleAssignment",  # Microsoft.Authorization/roleAssignments@2022-04-01
        properties=REQ(O(
            "RoleAssignmentProperties",
            condition=STR, conditionVersion=STR, createdBy=RO(STR), createdOn=RO(STR),
            delegatedManagedIdentityResourceId=STR, description=STR, principalId=REQ(STR),
            principalType=E("Device", "ForeignGroup", "Group", "ServicePrincipal", "User"),
            roleDefinitionId=REQ(STR), scope=RO(STR), updatedBy=RO(STR), updatedOn=RO(STR),
        )),
    )
    return {
        "Microsoft.OperationalInsights/workspaces@2023-09-01": workspace,
        "Microsoft.ContainerRegistry/registries@2023-07-01": registry,
        "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31": identity,
        "Microsoft.Authorization/roleAssignments@2022-04-01": role_assignment,
    }


_SDK_TOP = {
    "Microsoft.App/sessionPools@2025-07-01": "SessionPool",
    "Microsoft.App/containerApps@2025-07-01": "ContainerApp",
    "Microsoft.App/managedEnvironments@2025-07-01": "ManagedEnvironment",
}

# Resources that take a scope: (extension resources) and where 'location' is required.
EXTENSION_TYPES = {"Microsoft.Authorization/roleAssignments"}


def schema_for(rtype: str, version: str) -> ObjType | None:
    key = f"{rtype}@{version}"
    if key in _SDK_TOP:
        sdk = _sdk()
        return sdk.model(getattr(sdk.models, _SDK_TOP[key]))
    return _transcribed().get(key)


def known_types() -> list[str]:
    return sorted(_SDK_TOP) + sorted(_transcribed())


# ============================================================== checker

# Functions main.bicep may call (Bicep's own; others are probably typos).
FUNCTIONS = {
    "resourceGroup", "subscription", "subscriptionResourceId", "resourceId", "tenant", "deployment",
    "guid", "uniqueString", "json", "string", "int", "bool", "empty", "concat", "union", "contains",
    "toLower", "toUpper", "replace", "substring", "take", "skip", "length", "first", "last", "split",
    "format", "environment", "reference", "if", "coalesce", "base64", "uri", "trim", "join",
}
KEYWORDS = {"true", "false", "null", "if", "for", "in", "existing"}
TOP_LEVEL_RESOURCE_PROPS = {"id", "name", "type", "apiVersion", "location", "properties", "identity", "sku",
                            "tags", "kind", "scope"}


@dataclasses.dataclass
class Problem:
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.where}: {self.message}"


class Checker:
    def __init__(self, bicep: BicepFile) -> None:
        self.b = bicep
        self.problems: list[Problem] = []

    def add(self, line: int, where: str, message: str) -> None:
        self.problems.append(Problem(line, where, message))

    # -- entry
    def run(self) -> list[Problem]:
        for name, param in self.b.params.items():
            self.check_param(name, param)
        for name, node in self.b.vars.items():
            self.check_refs_in(node, f"var {name}")
        for sym, res in self.b.resources.items():
            self.check_resource(sym, res)
        for name, out in self.b.outputs.items():
            self.check_refs_in(out.value, f"output {name}")
            if isinstance(out.value, Lit) and out.type in ("string", "int", "bool"):
                self.check_literal(out.value, Prim(out.type), f"output {name}", None)
        return self.problems

    # -- params
    def check_param(self, name: str, p: Param) -> None:
        where = f"param {name}"
        known = {"description", "minLength", "maxLength", "minValue", "maxValue", "allowed", "secure", "metadata"}
        for deco in p.decorators:
            if deco not in known:
                self.add(p.line, where, f"unknown decorator @{deco}")
        if p.type != "string" and ("minLength" in p.decorators or "maxLength" in p.decorators) and p.type != "array":
            self.add(p.line, where, "@minLength/@maxLength need a string or array param")
        if p.type != "int" and ("minValue" in p.decorators or "maxValue" in p.decorators):
            self.add(p.line, where, "@minValue/@maxValue need an int param")
        if "secure" in p.decorators and p.type not in ("string", "object"):
            self.add(p.line, where, "@secure() needs a string or object param")
        if "secure" in p.decorators and isinstance(p.default, Lit) and p.default.value:
            self.add(p.line, where, "a @secure() param must not have a literal default")
        allowed = p.allowed
        for value in allowed or []:
            self.check_param_value(p, value, f"{where} @allowed", p.line, check_allowed=False)
        if p.default is not None:
            self.check_refs_in(p.default, where)
            if isinstance(p.default, Lit) and not p.default.interpolated:
                self.check_param_value(p, p.default.value, f"{where} default", p.line)

    def check_param_value(self, p: Param, value: Any, where: str, line: int, check_allowed: bool = True) -> None:
        """Is ``value`` acceptable for ``p`` (type, length, range, @allowed)?"""
        expected = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}[p.type]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            self.add(line, where, f"{value!r} is not {_article(p.type)}")
            return
        lo, hi = p.number("minLength"), p.number("maxLength")
        too_short = lo is not None and isinstance(value, str | list) and len(value) < lo
        too_long = hi is not None and isinstance(value, str | list) and len(value) > hi
        if too_short or too_long:
            self.add(line, where, f"{value!r} has length {len(value)}, outside [{lo}, {hi}]")
        lo, hi = p.number("minValue"), p.number("maxValue")
        if isinstance(value, int) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            self.add(line, where, f"{value!r} is outside [{lo}, {hi}]")
        if check_allowed and p.allowed is not None and value not in p.allowed:
            self.add(line, where, f"{value!r} is not in @allowed {p.allowed}")

    # -- resources
    def check_resource(self, sym: str, res: Resource) -> None:
        where = f"resource {sym} ({res.type}@{res.api_version})"
        schema = schema_for(res.type, res.api_version)
        if schema is None:
            self.add(res.line, where, f"no schema for this type@api-version; known: {', '.join(known_types())}")
            return
        body = res.body
        if "name" not in body.items:
            self.add(res.line, where, "missing 'name'")
        else:
            self.check_refs_in(body.items["name"], where)
        if res.type in EXTENSION_TYPES:
            scope = body.items.get("scope")
            if scope is not None and not (isinstance(scope, Expr) and scope.text in self.b.resources):
                self.add(res.line, where, "scope must be a resource symbol")
        elif "scope" in body.items:
            self.add(res.line, where, "only extension resources (role assignments) take a scope here")
        depends = body.items.get("dependsOn")
        if depends is not None:
            if not isinstance(depends, Arr):
                self.add(res.line, where, "dependsOn must be an array")
            else:
                for item in depends.items:
                    if not (isinstance(item, Expr) and item.text in self.b.resources):
                        self.add(item.line, where, f"dependsOn entry {getattr(item, 'text', item)!r} is not a resource")
        if "parent" in body.items:
            self.add(res.line, where, "'parent' is not supported by this checker")
        if res.condition is not None:
            self.check_refs_text(res.condition, res.line, where)
        rest = Obj({k: v for k, v in body.items.items() if k not in META_KEYS}, body.line,
                   {k: v for k, v in body.key_lines.items() if k not in META_KEYS})
        self.check_value(rest, schema, where, top=True)

    def check_value(self, node: Node, t: Any, where: str, top: bool = False) -> None:
        if isinstance(node, Expr):
            self.check_expr_against(node, t, where)
            return
        if isinstance(t, Prim) and t.name == "any":
            self.check_refs_in(node, where)
            return
        if isinstance(node, Obj):
            if isinstance(t, MapOf):
                for key, value in node.items.items():
                    if "${" in key:
                        self.check_refs_in(Lit(key, node.key_lines.get(key, node.line), True), where)
                    self.check_value(value, t.value, f"{where}['{key}']")
                return
            if not isinstance(t, ObjType):
                self.add(node.line, where, f"an object is not allowed here (expected {self.describe(t)})")
                return
            for key, value in node.items.items():
                line = node.key_lines.get(key, node.line)
                prop = t.props.get(key)
                if prop is None:
                    close = difflib.get_close_matches(key, list(t.props), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.add(line, f"{where}.{key}", f"{t.name} has no property {key!r}{hint}")
                    continue
                if prop.readonly:
                    self.add(line, f"{where}.{key}", f"{t.name}.{key} is read-only")
                    continue
                self.check_value(value, prop.type, f"{where}.{key}")
                self.check_range(value, prop, f"{where}.{key}")
            for key, prop in t.props.items():
                if prop.required and key not in node.items:
                    self.add(node.line, where, f"{t.name} requires {key!r}")
            return
        if isinstance(node, Arr):
            if not isinstance(t, ListOf):
                self.add(node.line, where, f"an array is not allowed here (expected {self.describe(t)})")
                return
            for n, item in enumerate(node.items):
                self.check_value(item, t.item, f"{where}[{n}]")
            return
        self.check_literal(node, t, where, None)

    def check_literal(self, node: Lit, t: Any, where: str, origin: str | None) -> None:
        value = node.value
        suffix = f" (via {origin})" if origin else ""
        if node.interpolated:
            self.check_refs_in(node, where)
            if not (isinstance(t, Prim) and t.name in ("string", "any")):
                self.add(node.line, where, f"an interpolated string cannot be checked against {self.describe(t)}")
            return
        if isinstance(t, Enum):
            if value not in t.values:
                self.add(node.line, where, f"{value!r}{suffix} is not one of {sorted(t.values)} ({t.source})")
            return
        if isinstance(t, Prim):
            ok = {
                "string": isinstance(value, str),
                "int": isinstance(value, int) and not isinstance(value, bool),
                "number": isinstance(value, int | float) and not isinstance(value, bool),
                "bool": isinstance(value, bool),
                "any": True,
            }[t.name]
            if not ok and value is not None:
                self.add(node.line, where, f"{value!r}{suffix} is not {_article(t.name)}")
            return
        if value is not None:
            self.add(node.line, where, f"{value!r}{suffix} where {self.describe(t)} is expected")

    def check_range(self, node: Node, prop: Prop, where: str) -> None:
        if prop.range is None:
            return
        lo, hi = prop.range
        if isinstance(node, Lit) and isinstance(node.value, int) and not lo <= node.value <= hi:
            self.add(node.line, where, f"{node.value} is outside the documented range [{lo}, {hi}]")
        param = self.param_ref(node)
        if param is not None:
            plo, phi = param.number("minValue"), param.number("maxValue")
            if plo is None or phi is None or plo < lo or phi > hi:
                self.add(node.line, where, f"param {param.name} must be bounded by @minValue({lo})/@maxValue({hi})")
        var = self.var_literal(node)
        if var is not None and isinstance(var.value, int) and not lo <= var.value <= hi:
            self.add(node.line, where, f"{var.value} is outside the documented range [{lo}, {hi}]")

    def param_ref(self, node: Node) -> Param | None:
        return self.b.params.get(node.text) if isinstance(node, Expr) else None

    def var_literal(self, node: Node) -> Lit | None:
        if isinstance(node, Expr) and node.text in self.b.vars:
            value = self.b.vars[node.text]
            return value if isinstance(value, Lit) else None
        return None

    def check_expr_against(self, node: Expr, t: Any, where: str) -> None:
        self.check_refs_in(node, where)
        param = self.param_ref(node)
        if param is not None:
            want = {"string": (STR, Enum), "int": (INT, Prim("number")), "bool": (BOOL,), "object": (), "array": ()}
            if isinstance(t, Enum):
                if param.type != "string":
                    self.add(node.line, where, f"param {param.name} is a {param.type}; an enum string is expected")
                elif param.allowed is None:
                    self.add(node.line, where, f"param {param.name} feeds an enum ({t.source}): give it @allowed")
                else:
                    for value in param.allowed:
                        self.check_literal(Lit(value, param.line), t, where, f"@allowed of param {param.name}")
            elif isinstance(t, Prim) and t.name != "any":
                allowed = want[param.type]
                if not any(t == a or (isinstance(a, type) and isinstance(t, a)) for a in allowed):
                    self.add(node.line, where, f"param {param.name} is a {param.type}; {t.name} is expected")
            elif isinstance(t, ObjType | MapOf) and param.type != "object":
                self.add(node.line, where, f"param {param.name} is a {param.type}; an object is expected")
            elif isinstance(t, ListOf) and param.type != "array":
                self.add(node.line, where, f"param {param.name} is a {param.type}; an array is expected")
            return
        var = self.var_literal(node)
        if var is not None:
            self.check_literal(var, t, where, f"var {node.text}")

    # -- references in expressions
    def check_refs_in(self, node: Node, where: str) -> None:
        if isinstance(node, Expr):
            self.check_refs_text(node.text, node.line, where)
        elif isinstance(node, Lit) and node.interpolated:
            for inner in _interpolations(node.value):
                self.check_refs_text(inner, node.line, where)
        elif isinstance(node, Obj):
            for key, value in node.items.items():
                if "${" in key:
                    self.check_refs_in(Lit(key, node.line, True), where)
                self.check_refs_in(value, where)
        elif isinstance(node, Arr):
            for item in node.items:
                self.check_refs_in(item, where)

    def check_refs_text(self, text: str, line: int, where: str) -> None:
        try:
            toks = [t for t in tokenize(text) if t.kind not in ("newline", "eof")]
        except BicepSyntaxError as exc:
            self.add(line, where, f"cannot read expression {text!r}: {exc}")
            return
        for n, tok in enumerate(toks):
            if tok.kind == "string" and tok.interpolated:
                for inner in _interpolations(tok.value):
                    self.check_refs_text(inner, line, where)
            if tok.kind != "ident" or tok.text in KEYWORDS:
                continue
            prev = toks[n - 1] if n else None
            if prev is not None and prev.text in (".", "?."):
                continue
            nxt = toks[n + 1] if n + 1 < len(toks) else None
            if nxt is not None and nxt.text == "(":
                if tok.text not in FUNCTIONS:
                    self.add(line, where, f"unknown function {tok.text}()")
                continue
            if nxt is not None and nxt.text == ":":  # key inside an object literal in an expression
                continue
            if tok.text not in self.b.symbols():
                close = difflib.get_close_matches(tok.text, sorted(self.b.symbols()), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(line, where, f"{tok.text!r} is not a param, var or resource{hint}")
                continue
            if tok.text in self.b.resources:
                self.check_member_chain(tok.text, _member_chain(toks, n + 1), line, where)

    def check_member_chain(self, sym: str, chain: list[tuple[str, bool]], line: int, where: str) -> None:
        if not chain:
            return
        res = self.b.resources[sym]
        first, is_call = chain[0]
        if is_call:
            if not first.startswith("list"):
                self.add(line, where, f"{sym}.{first}() is not a resource function")
            return
        if first not in TOP_LEVEL_RESOURCE_PROPS:
            self.add(line, where, f"{sym}.{first}: resources have {sorted(TOP_LEVEL_RESOURCE_PROPS)}")
            return
        schema = schema_for(res.type, res.api_version)
        if schema is None or first in ("id", "name", "type", "apiVersion"):
            return
        t: Any = schema
        path = sym
        for name, call in chain:
            path += f".{name}"
            if call:
                self.add(line, where, f"{path}() is not callable")
                return
            if isinstance(t, MapOf):
                t = t.value
                continue
            if not isinstance(t, ObjType):
                return
            prop = t.props.get(name)
            if prop is None:
                close = difflib.get_close_matches(name, list(t.props), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(line, where, f"{path}: {t.name} has no property {name!r}{hint}")
                return
            t = prop.type

    @staticmethod
    def describe(t: Any) -> str:
        if isinstance(t, ObjType):
            return f"object {t.name}"
        if isinstance(t, Enum):
            return f"one of {sorted(t.values)}"
        if isinstance(t, ListOf):
            return "an array"
        if isinstance(t, MapOf):
            return "an object map"
        return t.name


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _interpolations(template: str) -> Iterator[str]:
    i = 0
    while True:
        start = template.find("${", i)
        if start < 0:
            return
        depth, j = 1, start + 2
        while depth and j < len(template):
            depth += {"{": 1, "}": -1}.get(template[j], 0)
            j += 1
        yield template[start + 2 : j - 1]
        i = j


def _member_chain(toks: list[Token], n: int) -> list[tuple[str, bool]]:
    """``.a.b.c()`` after a symbol -> [(a, False), (b, False), (c, True)]; stops at anything else."""
    chain: list[tuple[str, bool]] = []
    while n + 1 < len(toks) and toks[n].text in (".", "?.") and toks[n + 1].kind == "ident":
        is_call = n + 2 < len(toks) and toks[n + 2].text == "("
        chain.append((toks[n + 1].text, is_call))
        if is_call:
            break
        n += 2
    return chain


def check(bicep: BicepFile) -> list[Problem]:
    return Checker(bicep).run()


def check_source(src: str) -> list[str]:
    """Parse and check; a syntax error is reported as the only problem."""
    try:
        bicep = parse(src)
    except BicepSyntaxError as exc:
        return [f"syntax: {exc}"]
    return [str(p) for p in check(bicep)]


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("main.bicep")
    problems = check_source(path.read_text(encoding="utf-8"))
    for problem in problems:
        print(f"{path}: {problem}")
    print(f"{path}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
