"""The gateway's HTTP fuzzing: requests generated from its OpenAPI document, and what an answer must be.

``endpoints`` reads every operation of the OpenAPI document (method, path, path and query
parameters, JSON body schema with its ``$ref``\\s inlined), so a new route is fuzzed as soon as it
exists. ``cases`` draws one request for an endpoint with Hypothesis: values that fit the schema
(with the ids the running stack really has mixed in, so requests get past validation and reach the
services) or hand-picked garbage — wrong types, NaN and Infinity in JSON, huge numbers, empty and
huge strings, unknown fields, missing required fields, malformed JSON, garbage page tokens, unknown
ids, path segments with odd characters, a wrong method, an odd ``X-Request-Id``.

An answer is acceptable (``problems`` returns nothing) when it is not a 5xx and, when it is an
error, its body is exactly the documented ``{"error": {"code", "message", "request_id"}}`` with a
gRPC status name as the code and the response's ``X-Request-Id`` as the request id.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

SHORT = "gateway-fuzz-short"
LONG = "gateway-fuzz-long"
#: Examples per endpoint.
SHORT_EXAMPLES = 40
LONG_EXAMPLES = 400

settings.register_profile(
    SHORT,
    max_examples=SHORT_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
settings.register_profile(
    LONG,
    max_examples=LONG_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

#: The error codes a body may carry: gRPC status names.
GRPC_CODES = frozenset(code.name for code in grpc.StatusCode)
#: Longer than the gateway tests' body limit (64 KiB), so some bodies are refused with 413.
HUGE = 70_000
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")

# -- the OpenAPI document ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # "path" or "query"
    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    params: tuple[Param, ...]
    #: The JSON body's schema, ``$ref``s inlined; None when the operation takes no body.
    body: dict[str, Any] | None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def resolve(schema: Any, document: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` replaced by what it points to (the gateway's are not recursive)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target: Any = document
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target, document)
        return {key: resolve(value, document) for key, value in schema.items()}
    if isinstance(schema, list):
        return [resolve(item, document) for item in schema]
    return schema


def endpoints(document: dict[str, Any]) -> list[Endpoint]:
    """Every operation of the OpenAPI document."""
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            params = tuple(
                Param(p["name"], p["in"], resolve(p.get("schema", {}), document), bool(p.get("required")))
                for p in operation.get("parameters", [])
                if p["in"] in ("path", "query")
            )
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            found.append(
                Endpoint(method.upper(), path, params, None if body is None else resolve(body, document))
            )
    return found


# -- what the running stack holds -------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    """Ids that exist behind the gateway, so that some requests get past the services' checks."""

    sae_id: str
    corpus: str
    family_ids: tuple[str, ...]
    num_latents: int
    phrases: tuple[str, ...] = ("galaxy", "dark matter halos", "neural network")


# -- requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCase:
    method: str
    #: The path as sent: already percent-encoded where the case meant to.
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None
    request_id: bytes | None = None

    def request(self, client: httpx.Client) -> httpx.Request:
        headers: dict[str, Any] = {}
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        if self.request_id is not None:
            headers["x-request-id"] = self.request_id
        return client.build_request(
            self.method, self.path, params=list(self.query), content=self.body, headers=headers
        )

    def __repr__(self) -> str:
        return f"HttpCase({self.describe()})"

    def describe(self) -> str:
        body = "" if self.body is None else f" body={short(self.body)}"
        query = f" query={short(repr(self.query))}" if self.query else ""
        rid = "" if self.request_id is None else f" x-request-id={short(repr(self.request_id))}"
        return f"{self.method} {short(self.path)}{query}{body}{rid} ({self.content_type})"


def short(value: str | bytes, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


#: Strings that a parser or a service may trip on.
ODD_STRINGS = (
    "",
    " ",
    "nan",
    "NaN",
    "-inf",
    "Infinity",
    "1e400",
    "-1",
    "0x10",
    "99999999999999999999999999",
    "true",
    "null",
    "{}",
    "[]",
    "\x00",
    "../../etc/passwd",
    "a/b",
    "%FF",
    "é",
    "\u202e\u200b",
    "💥" * 3,
    "'; DROP TABLE features; --",
    "o-1",
    "o99999999999",
    "f12-p0",
)
#: Path segments with odd characters; the first ones are sent raw (not percent-encoded).
RAW_SEGMENTS = ("%FF", "%00", "%2e%2e", "a%2Fb", ".", "..", "%", "%zz")


def now_and_then(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in ``one_in`` draws (Hypothesis favours small integers: 0 is the usual case)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def texts(max_size: int = 60) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=max_size), st.sampled_from(ODD_STRINGS))


def huge_numbers() -> st.SearchStrategy[object]:
    return st.sampled_from([2**32, 2**63, 2**64 + 1, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324])


def garbage() -> st.SearchStrategy[object]:
    """A JSON value of the wrong kind for most fields."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        huge_numbers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf]),
        texts(),
        st.just("x" * HUGE),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )


def _string_for(name: str, known: Known) -> st.SearchStrategy[str]:
    """A string for a field or parameter, the stack's real ids mixed in by the field's name."""
    real: list[str] = []
    if name == "sae_id":
        real = [known.sae_id]
    elif name == "corpus":
        real = [known.corpus]
    elif name == "family_id":
        real = list(known.family_ids[:20]) or ["f0-p0"]
    elif name in ("q", "phrase", "text"):
        real = list(known.phrases)
    elif name in ("date_from", "date_to"):
        real = ["2020-01-01", "2024-12-31", "2021-02-30", "20-1-1"]
    elif name == "page_token":
        real = ["", "o0", "o5"]
    elif name == "categories":
        real = ["astro-ph.GA", "cs.LG"]
    unknown = st.sampled_from(["no-such-" + name, "sae-00000000", "f999999-p9"])
    if real:
        # The real ids three times out of five, so that most requests reach a service's own checks.
        existing = st.sampled_from(real)
        return st.one_of(existing, existing, existing, texts(), unknown)
    return texts()


def _integer_for(name: str, schema: dict[str, Any], known: Known) -> st.SearchStrategy[int]:
    low = int(schema["minimum"]) if "minimum" in schema else None
    high = int(schema["maximum"]) if "maximum" in schema else None
    inside = st.integers(min_value=low, max_value=high)
    # Small counts and real latent ids three times out of four, to get past the services' limits.
    if name in ("feature", "features_must_fire", "features_must_not_fire"):
        real = st.integers(0, known.num_latents + 2)
        return st.one_of(real, real, real, inside)
    if high is not None and high > 1000:
        small = st.integers(max(low or 0, 0), 50)
        return st.one_of(small, small, small, inside)
    return inside


def valid_value(
    schema: dict[str, Any], known: Known, name: str = "", depth: int = 0
) -> st.SearchStrategy[Any]:
    """A JSON value that fits ``schema`` (a resolved OpenAPI schema)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("title") == "Intervention":
        one = _one_target(schema, known)
        return st.one_of(one, one, one, _object(schema, known, depth))
    if "anyOf" in schema:
        return st.one_of([valid_value(option, known, name, depth) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return _integer_for(name, schema, known)
    if kind == "number":
        return st.one_of(
            st.floats(-10, 10),
            st.floats(
                min_value=schema.get("minimum"),
                max_value=schema.get("maximum"),
                allow_nan=False,
                allow_infinity=False,
            ),
        )
    if kind == "string":
        return _string_for(name, known)
    if kind == "array":
        return st.lists(valid_value(schema.get("items", {}), known, name, depth + 1), max_size=3)
    if kind == "object" and "properties" in schema and depth < 4:
        return _object(schema, known, depth)
    return garbage()


def _object(schema: dict[str, Any], known: Known, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    required = set(schema.get("required", []))
    properties = {key: valid_value(sub, known, key, depth + 1) for key, sub in schema["properties"].items()}
    return st.fixed_dictionaries(
        {key: value for key, value in properties.items() if key in required},
        optional={key: value for key, value in properties.items() if key not in required},
    )


def _one_target(schema: dict[str, Any], known: Known) -> st.SearchStrategy[dict[str, Any]]:
    """An intervention naming exactly one target (the gateway refuses any other), to reach steering."""
    properties = schema["properties"]
    target = st.sampled_from(["feature", "family_id", "phrase"])
    return target.flatmap(
        lambda name: st.fixed_dictionaries(
            {name: valid_value(properties[name], known, name), "weight": st.floats(-5, 5)},
            optional={key: valid_value(properties[key], known, key) for key in ("mode", "per_member")},
        )
    )


@st.composite
def json_body(draw: st.DrawFn, schema: dict[str, Any], known: Known) -> object:
    """A body that fits the schema, or one with a field made wrong, unknown, missing or huge."""
    value = draw(valid_value(schema, known))
    if not isinstance(value, dict) or draw(st.integers(0, 3)) == 0:
        return value
    properties = list(schema.get("properties", {}))
    change = draw(st.sampled_from(["garbage", "unknown", "drop", "huge", "nested"]))
    if change == "garbage" and properties:
        value[draw(st.sampled_from(properties))] = draw(garbage())
    elif change == "unknown":
        value[draw(st.sampled_from(["unknown_field", "", "Text", "__proto__", "topK"]))] = draw(garbage())
    elif change == "drop" and value:
        del value[draw(st.sampled_from(sorted(value)))]
    elif change == "huge" and properties:
        value[draw(st.sampled_from(properties))] = draw(huge_numbers())
    elif change == "nested":
        value = {"body": value} if draw(st.booleans()) else [value]
    return value


#: Bodies that are not JSON, or JSON that no schema takes.
RAW_BODIES = (
    b"",
    b"{",
    b"}",
    b"{'corpus': 'x'}",
    b'{"text": "a",}',
    b'{"text": NaN}',
    b'{"text": "a", "top_k": Infinity}',
    b'{"corpus": "x", "text": "y", "top_k": 1e999}',
    b'{"corpus": "x", "text": "y", "top_k": 100000000000000000000000000000000000000}',
    b"null",
    b"[]",
    b"0",
    b'"text"',
    b"\xff\xfe\x00garbage",
    b'{"text": "\\ud800"}',
    b'{"corpus": "\\u0000", "text": "\\udfff\\ud800"}',
    b'{"a": ' * 500 + b"1" + b"}" * 500,
    b"[" * 10_000,
)


@st.composite
def body_bytes(draw: st.DrawFn, endpoint: Endpoint, known: Known) -> tuple[bytes | None, str | None]:
    """The body and its content type."""
    if endpoint.body is None:
        if now_and_then(draw, 10):
            return draw(st.sampled_from(RAW_BODIES)), "application/json"
        return None, None
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return draw(st.sampled_from(RAW_BODIES)), "application/json"
    if kind == 8:
        return draw(st.binary(max_size=200)), draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", None])
        )
    value = draw(json_body(endpoint.body, known))
    # allow_nan: NaN and Infinity go out as the bare tokens Python's json module writes and reads.
    return json.dumps(value, allow_nan=True).encode(), "application/json"


#: Longest query value sent: httpx refuses a URL component over 64 KiB.
MAX_QUERY_VALUE = 8000


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)[:MAX_QUERY_VALUE]


@st.composite
def query(draw: st.DrawFn, endpoint: Endpoint, known: Known) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for param in endpoint.params:
        if param.location != "query":
            continue
        choice = draw(st.integers(0, 5))
        if choice == 1 and not param.required:
            continue
        if choice == 4:
            pairs.append((param.name, _query_text(draw(garbage()))))
        elif choice == 5:
            # The parameter twice: which one counts is the framework's business, not a crash.
            pairs.append((param.name, _query_text(draw(valid_value(param.schema, known, param.name)))))
            pairs.append((param.name, draw(texts())))
        elif choice != 1 or param.required:
            pairs.append((param.name, _query_text(draw(valid_value(param.schema, known, param.name)))))
    if now_and_then(draw, 8):
        pairs.append((draw(st.sampled_from(["unknown", "", "page_size[]", "q\x00"])), draw(texts())))
    return tuple(pairs)


@st.composite
def path_of(draw: st.DrawFn, endpoint: Endpoint, known: Known) -> str:
    path = endpoint.path
    for param in endpoint.params:
        if param.location != "path":
            continue
        kind = draw(st.integers(0, 4))
        if kind == 4:
            segment = draw(st.sampled_from(RAW_SEGMENTS))
        elif kind == 3:
            segment = quote(_query_text(draw(garbage()))[:2000], safe="")
        else:
            segment = quote(_query_text(draw(valid_value(param.schema, known, param.name))), safe="")
        path = path.replace("{" + param.name + "}", segment or "%20")
    return path


REQUEST_IDS = (b"", b"a b", b"x" * 129, b"caf\xc3\xa9", b"\xff\xfe", b"a\tb", b"fuzz-0123")


@st.composite
def cases(draw: st.DrawFn, endpoint: Endpoint, known: Known) -> HttpCase:
    """One request for ``endpoint``: mostly its own method, sometimes another."""
    method = draw(st.sampled_from(METHODS)) if now_and_then(draw, 12) else endpoint.method
    body, content_type = draw(body_bytes(endpoint, known))
    request_id = draw(st.sampled_from(REQUEST_IDS)) if now_and_then(draw, 10) else None
    return HttpCase(
        method=method,
        path=draw(path_of(endpoint, known)),
        query=draw(query(endpoint, known)),
        body=body,
        content_type=content_type,
        request_id=request_id,
    )


def hand_picked(known: Known) -> list[HttpCase]:
    """Requests sent on every run whatever Hypothesis draws: the garbage a reviewer would try first."""
    sae = quote(known.sae_id, safe="")
    family = quote(known.family_ids[0] if known.family_ids else "f0-p0", safe="")
    search = "/api/v1/search"
    json_type = "application/json"
    found = [HttpCase("POST", search, body=raw, content_type=json_type) for raw in RAW_BODIES]
    huge_text = json.dumps({"corpus": known.corpus, "text": "a" * HUGE}).encode()
    found += [
        HttpCase("POST", search, body=b"x" * HUGE, content_type=json_type),
        HttpCase("POST", search, body=huge_text, content_type=json_type),
    ]
    found += [
        HttpCase(
            "POST",
            search,
            body=json.dumps(
                {
                    "corpus": known.corpus,
                    "text": "galaxy",
                    "interventions": [{"feature": 0, "weight": weight}],
                    "with_rank_changes": True,
                    "explain": True,
                },
                allow_nan=True,
            ).encode(),
            content_type=json_type,
        )
        for weight in (math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324)
    ]
    found += [
        HttpCase(
            "POST",
            search,
            body=json.dumps(
                {
                    "corpus": known.corpus,
                    "text": "galaxy",
                    "sae_id": known.sae_id,
                    "mode": mode,
                    "top_k": top_k,
                    "offset": offset,
                }
            ).encode(),
            content_type=json_type,
        )
        for mode in ("dense", "sparse", "hybrid")
        for top_k, offset in ((0, 0), (4294967295, 0), (10, 4294967295), (4294967295, 4294967295))
    ]
    found += [
        HttpCase("POST", f"/api/v1/saes/{sae}/features/0/test", body=raw, content_type=json_type)
        for raw in (b'{"text": ""}', b'{"text": NaN}', b'{"text": "\\ud800"}', b'{"text": "a", "extra": 1}')
    ]
    for token in ("garbage", "o", "o-1", "o999999999", "%00", "\x00", "x" * 5000, "AAAA", "e30="):
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/labels", query=(("page_token", token),)))
        found.append(
            HttpCase(
                "GET", f"/api/v1/saes/{sae}/labels", query=(("page_token", token), ("order", "density_desc"))
            )
        )
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/families", query=(("page_token", token),)))
    for number in ("nan", "inf", "-inf", "1e400", "NaN", "-0"):
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/labels", query=(("min_pearson_r", number),)))
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/densities", query=(("bins", number),)))
    for feature in (
        "-1",
        "4294967296",
        "99999999999999999999999",
        "1.5",
        "0x1",
        "nan",
        str(known.num_latents),
    ):
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/features/{feature}"))
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/features/{feature}/activations"))
    for segment in (*RAW_SEGMENTS, "no-such-sae", quote("x" * 5000), quote("é💥", safe=""), "%20"):
        found.append(HttpCase("GET", f"/api/v1/saes/{segment}"))
        found.append(HttpCase("GET", f"/api/v1/saes/{sae}/families/{segment}"))
        found.append(HttpCase("GET", f"/api/v1/saes/{segment}/families/{family}"))
        found.append(HttpCase("GET", f"/api/v1/saes/{segment}/labels/search", query=(("q", "galaxy"),)))
    found += [
        HttpCase("GET", f"/api/v1/saes/{sae}/labels/search"),
        HttpCase("GET", f"/api/v1/saes/{sae}/labels/search", query=(("q", ""),)),
        HttpCase("GET", f"/api/v1/saes/{sae}/labels/search", query=(("q", "x" * 20_000),)),
        HttpCase(
            "GET", f"/api/v1/saes/{sae}/labels/search", query=(("q", "galaxy"), ("top_k", "4294967295"))
        ),
        HttpCase("GET", f"/api/v1/saes/{sae}/features/0", query=(("corpus", "no-such-corpus"),)),
        HttpCase("GET", f"/api/v1/saes/{sae}/features/0", query=(("corpus", ""),)),
        HttpCase(
            "GET",
            f"/api/v1/saes/{sae}/features/0",
            query=(("top_documents", "4294967295"), ("neighbours", "4294967295")),
        ),
        HttpCase("GET", f"/api/v1/saes/{sae}/features/0/activations", query=(("corpus", "no-such-corpus"),)),
        HttpCase("GET", "/api/v1/no-such-endpoint"),
        HttpCase("GET", "/api/v1/"),
        HttpCase("GET", "/api/"),
        HttpCase("DELETE", "/api/v1/saes"),
        HttpCase("PUT", search, body=b"{}", content_type=json_type),
        HttpCase("GET", search),
        HttpCase("POST", "/api/v1/health", body=b"{}", content_type=json_type),
        HttpCase("GET", "/api/v1/health", request_id=b"x" * 129),
        HttpCase("GET", "/api/v1/health", request_id=b"\xff\xfe"),
        HttpCase("POST", "/index.html", body=b"{}", content_type=json_type),
    ]
    return found


def route_of(case: HttpCase, routes: list[Endpoint]) -> str:
    """The endpoint a hand-picked case aims at, to count it under (the method as sent)."""
    for endpoint in routes:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(endpoint.path))
        if re.fullmatch(pattern, case.path):
            return f"{case.method} {endpoint.path}"
    return f"{case.method} (no route)"


# -- answers ----------------------------------------------------------------------------------------


def problems(response: httpx.Response) -> list[str]:
    """What is wrong with an answer: a 5xx, or an error whose body is not the documented shape."""
    found = []
    status = response.status_code
    if status >= 500:
        found.append(f"status {status}")
    if status < 400:
        return found
    try:
        body = response.json()
    except ValueError:
        return [*found, f"status {status} with a body that is not JSON: {short(response.content)}"]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return [
            *found,
            f"status {status} with a body not of the shape {{'error': ...}}: {short(response.text)}",
        ]
    if set(error) != {"code", "message", "request_id"}:
        found.append(f"error keys {sorted(error)} are not code, message and request_id")
    if not all(isinstance(error.get(key), str) for key in ("code", "message", "request_id")):
        found.append(f"an error field is not a string: {short(response.text)}")
        return found
    if error["code"] not in GRPC_CODES:
        found.append(f"error code {error['code']!r} is not a gRPC status name")
    if not error["message"].strip():
        found.append("the error message is empty")
    if not error["request_id"] or error["request_id"] != response.headers.get("x-request-id"):
        found.append(
            f"request_id {error['request_id']!r} is not the X-Request-Id header "
            f"{response.headers.get('x-request-id')!r}"
        )
    return found


# -- the count of what was sent ---------------------------------------------------------------------


@dataclass
class Tally:
    """Requests sent, by profile and endpoint, and their statuses."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def add(self, profile: str, endpoint: str, status: int) -> None:
        self.statuses.setdefault(f"{profile} {endpoint}", Counter())[status] += 1

    def lines(self) -> list[str]:
        totals: Counter[str] = Counter()
        for key, counts in self.statuses.items():
            totals[key.split(" ", 1)[0]] += sum(counts.values())
        found = [f"{profile}: {count:,} requests" for profile, count in sorted(totals.items())]
        for key in sorted(self.statuses):
            counts = ", ".join(f"{status} {n}" for status, n in sorted(self.statuses[key].items()))
            found.append(f"  {key}: {counts}")
        return found


TALLY = pytest.StashKey[Tally]()


def terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tally = config.stash.get(TALLY, None)
    if tally is None or not tally.statuses:
        return
    terminalreporter.write_sep("-", "gateway fuzzing: what was sent, by endpoint and HTTP status")
    for line in tally.lines():
        terminalreporter.write_line(line)
