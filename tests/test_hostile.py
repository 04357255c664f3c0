"""Hostile input against every function: a corpus of hand-written attacks plus Hypothesis.

Every request goes through the real entry points of main.py (functions-framework apps, as
deployed) with `READ_ACCESS=admin`, against the emulators. Tokens are checked on firebase-admin's
real signature path: `requests-mock` serves a throwaway key's certificate at Google's
certificate URL (unreachable from here) and lets every other request through to the emulators.
Expected: no 5xx; every 4xx is a JSON error without a stack trace; the collections and the
snapshots are byte-identical afterwards. The outcome table is printed at the end of the run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from tests.app_fixtures import HOSTILE_OUTCOMES
from tests.helpers import publish, seed_users

CERT_URL = ("https://www.googleapis.com/robot/v1/metadata/x509/"
            "securetoken@system.gserviceaccount.com")
KID = "hostile-suite-key"
FUNCTIONS = {"users": "http", "jobs": "http", "migrate": "http",
             "publish_snapshot": "cloudevent"}

INJECTIONS = [
    "' OR '1'='1", "\"; DROP TABLE users; --", "<script>alert(1)</script>", "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd", "${jndi:ldap://x/a}", "{{7*7}}", "$where", '{"$gt": ""}',
    "__name__", "users/__name__", "\u202egnp.exe", "\u0000", "\x1b[31m", "ﷺ" * 50,
    "\U0001d566\U0001d55f\U0001d55a", "a" * 3000, "9" * 400, "-1", "1e309", "NaN",
    "-Infinity", "true", "null",
    "%00", "\r\nSet-Cookie: a=b", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
]


def _key_and_cert() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


KEY, CERT = _key_and_cert()
OTHER_KEY, _ = _key_and_cert()


def token(project: str, *, key=KEY, kid: str | None = KID, alg: str = "RS256",
          **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project}", "aud": project,
              "sub": "hostile-admin", "iat": now - 10, "exp": now + 3600,
              "auth_time": now - 10, "admin": True, **overrides}
    headers = {"kid": kid} if kid else {}
    if alg == "none":
        part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


@pytest.fixture
def hostile(emulator_env, project_id, firestore_client, storage_client, bucket, monkeypatch,
            requests_mock, fresh_instance):
    """The four functions on one WSGI host, real token checks, published sample data."""
    from dev.app import create_stack_app

    requests_mock.real_http = True
    requests_mock.get(CERT_URL, json={KID: CERT}, headers={"Cache-Control": "max-age=3600"})
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("READ_ACCESS", "admin")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://dash.example.org")
    monkeypatch.setenv("MAX_BODY_BYTES", "65536")
    seed_users(firestore_client, 12)
    firestore_client.collection("jobs").document("job-1").set({"title": "Shoot",
                                                                "status": "open"})
    publish(firestore_client, storage_client, bucket.name, "users")
    publish(firestore_client, storage_client, bucket.name, "jobs")
    client = Client(create_stack_app(FUNCTIONS, static_dir=None))
    return client, {"Authorization": f"Bearer {token(project_id)}"}, project_id


def fingerprint(firestore_client, storage_client, bucket) -> str:
    """A hash of every configured collection (ids, data, update times) and every object."""
    digest = hashlib.sha256()
    for collection in ("users", "jobs"):
        for doc in sorted(firestore_client.collection(collection).stream(), key=lambda d: d.id):
            digest.update(f"{collection}/{doc.id}@{doc.update_time}".encode())
            digest.update(repr(sorted(doc.to_dict().items())).encode())
    for blob in sorted(storage_client.list_blobs(bucket.name), key=lambda b: b.name):
        if blob.name.startswith("snapshots/"):
            digest.update(blob.name.encode() + blob.download_as_bytes())
    return digest.hexdigest()


def corpus(project: str, admin: dict[str, str]) -> list[tuple[str, str, str, dict, Any, str]]:
    """(label, method, path, headers, body, expectation) with expectation `4xx` or `ok`."""
    cases: list[tuple[str, str, str, dict, Any, str]] = []
    add = cases.append
    json_headers = {**admin, "Content-Type": "application/json"}
    for fn in ("users", "jobs"):
        for param in ("limit", "pageToken", "orderBy", "fields", "updatedSince"):
            for value in INJECTIONS:
                add((f"{fn} ?{param}=hostile", "GET", f"/{fn}",
                     {**admin, "_query": {param: value}}, None, "4xx"))
        numeric = "hourlyRate" if fn == "users" else "budget"
        for value in INJECTIONS[:12]:
            add((f"{fn} typed filter", "GET", f"/{fn}",
                 {**admin, "_query": {numeric: f"gte.{value}"}}, None, "4xx"))
            add((f"{fn} filter name", "GET", f"/{fn}",
                 {**admin, "_query": {value[:200] or "x": "1"}}, None, "4xx"))
            # A string field compared to an odd string is a valid query: 200, no match.
            add((f"{fn} string filter value", "GET", f"/{fn}",
                 {**admin, "_query": {"status": value}}, None, "ok"))
        for path in ("/a/b", "/..", "/__x__", "/" + "a" * 1600, "/%2F", "/.%2E", "/0%0A"):
            add((f"{fn} path", "GET", f"/{fn}{path}", admin, None, "4xx"))
        for method in ("TRACE", "PROPFIND", "CONNECT"):
            add((f"{fn} method", method, f"/{fn}", admin, None, "4xx"))
        add((f"{fn} POST to a document", "POST", f"/{fn}/x", json_headers, b"{}", "4xx"))
        for auth_value in ("", "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer a.b.c",
                           "Bearer " + "x" * 9000, "Bearer ..", "Bearer \u00e9\u00e9",
                           "Bearer " + token(project, alg="none"),
                           "Bearer " + token(project, key=OTHER_KEY),
                           "Bearer " + token(project, kid="unknown"),
                           "Bearer " + token(project, exp=int(time.time()) - 60),
                           "Bearer " + token(project, aud="other-project"),
                           "Bearer " + token(project, iss="https://evil.example"),
                           "Bearer " + token(project, admin=False),
                           "Bearer " + token(project, admin="true")):
            add((f"{fn} forged token", "GET", f"/{fn}", {"Authorization": auth_value}, None,
                 "4xx"))
            add((f"{fn} forged token write", "POST", f"/{fn}",
                 {"Authorization": auth_value, "Content-Type": "application/json"},
                 b'{"name": "x"}', "4xx"))
        for body in (b"{", b"[]", b'"str"', b"null", b"1e400", b'{"name": 1e400}',
                     b'{"a":' * 64 + b"1" + b"}" * 64, b"\xff\xfe", b'{"name": "\x00"}',
                     json.dumps({"name": "x" * 70000}).encode(),
                     json.dumps({"email": ["a"], "name": {"$gt": ""}}).encode(),
                     json.dumps({"id": "../x", "name": "x"}).encode(),
                     json.dumps({"id": "__x__", "name": "x"}).encode(),
                     json.dumps({"hourlyRate": 10**400, "name": "x"}).encode()):
            add((f"{fn} hostile body", "POST", f"/{fn}", json_headers, body, "4xx"))
        for content_type in ("text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "application/json-patch+json"):
            add((f"{fn} content type", "POST", f"/{fn}",
                 {**admin, "Content-Type": content_type}, b'{"name": "x"}', "4xx"))
        add((f"{fn} If-Match forged", "PATCH", f"/{fn}/u_0001",
             {**json_headers, "If-Match": 'W/"forged"'}, b'{"name": "x"}', "4xx"))
        for header, value in (("Origin", "https://evil.example"), ("Origin", "null"),
                              ("X-Cloud-Trace-Context", "\x00" * 50),
                              ("traceparent", "00-" + "z" * 200),
                              ("If-None-Match", "*" * 5000),
                              ("Accept-Encoding", "gzip;q=abc")):
            add((f"{fn} header {header}", "GET", f"/{fn}", {**admin, header: value}, None, "ok"))
    migrate_json = {**admin, "Content-Type": "application/json"}
    # A well-formed file whose records are bad is no bad request: the (dry) run answers 200
    # and accounts for each record as failed. A malformed file is a 400.
    for body, expectation in ((b"{", "4xx"), (b"", "4xx"), (b"\xff", "4xx"),
                              (b"[" * 5000, "4xx"), (b"12", "4xx"), (b'"users"', "4xx"),
                              (json.dumps([{"id": "x"}] * 10).encode() + b"garbage", "4xx"),
                              (b'{"users": 5}', "ok"), (b'[1, null, "x", {"id": "../x"}]', "ok"),
                              (json.dumps([{"id": "u", "name": "x" * 60000}]).encode(), "ok")):
        add(("migrate hostile body", "POST", "/migrate", {**migrate_json,
             "_query": {"collection": "users", "dryRun": "true"}}, body, expectation))
    for params in ({}, {"collection": "../users"}, {"collection": "nope"},
                   {"collection": "users", "mode": "drop"}, {"collection": "users",
                   "dryRun": "maybe"}, {"collection": "users", "runId": "../../x"},
                   {"collection": "users", "source": "http://evil.example/x.json"},
                   {"collection": "users", "source": "gs://"}, {"collection": "users",
                   "x": "1"}):
        add(("migrate hostile params", "POST", "/migrate", {**migrate_json, "_query": params},
             b"[]" if "source" not in params else b"", "4xx"))
    for auth_value in ("", "Bearer " + token(project, admin=False),
                       "Bearer " + token(project, alg="none")):
        add(("migrate forged token", "POST", "/migrate",
             {"Authorization": auth_value, "Content-Type": "application/json",
              "_query": {"collection": "users"}}, b"[]", "4xx"))
    for path in ("/migrate/..", "/migrate/%00", "/migrate/" + "r" * 2000, "/migrate/a/b/c"):
        add(("migrate hostile run id", "GET", path, admin, None, "4xx"))
    add(("migrate method", "DELETE", "/migrate", admin, None, "4xx"))
    event_headers = {"ce-specversion": "1.0", "ce-id": "hostile", "ce-source":
                     f"//firestore.googleapis.com/projects/{project}/databases/(default)",
                     "ce-type": "google.cloud.firestore.document.v1.written",
                     "ce-time": "2026-01-01T00:00:00Z"}
    for subject, body, content_type in (
            ("documents/users/u_0001", b"\x00\xff garbage", "application/protobuf"),
            ("documents/users/u_0001", b"{", "application/json"),
            ("documents/users/u_0001", b'{"value": {"name": 5}}', "application/json"),
            ("documents/../../x", b"", "application/protobuf"),
            ("documents/__x__/y", b"", "application/protobuf"),
            ("documents/users/" + "a" * 2000, b"", "application/protobuf"),
            ("", b"", "application/protobuf"),
            ("documents/secrets/x", b"", "application/protobuf")):
        add(("publish_snapshot hostile event", "POST", "/publish_snapshot",
             {**event_headers, "ce-subject": subject, "ce-document": subject[10:],
              "Content-Type": content_type}, body, "no5xx"))
    for headers in ({"Content-Type": "application/json"},
                    {**event_headers, "ce-specversion": "9.9"},
                    {"ce-id": "x", "Content-Type": "application/cloudevents+json"}):
        add(("publish_snapshot malformed CloudEvent", "POST", "/publish_snapshot", headers,
             b'{"specversion": 5}', "no5xx"))
    return cases


REPO_ROOT = Path(__file__).resolve().parents[1]
# What a leaked stack trace or server path would show. An error may quote what its request sent
# (a field name, a query value), so a marker the request itself carried is not a leak.
LEAK_MARKERS = ("Traceback", 'File "', str(REPO_ROOT), "/work/", "site-packages", ".py")


def check(response, expectation: str, label: str, sent: str = "") -> str:
    status = response.status_code
    text = response.get_data(as_text=True)
    assert status < 500, f"{label}: {status} {text[:300]}"
    leaked = [marker for marker in LEAK_MARKERS if marker in text and marker not in sent]
    assert not leaked, f"{label}: {leaked} in {text[:300]}"
    if expectation == "4xx":
        assert 400 <= status < 500, f"{label}: expected a 4xx, got {status}: {text[:300]}"
    if 400 <= status < 500 and not label.startswith("publish_snapshot"):
        error = response.json["error"]
        assert error["code"] and error["message"], label
    return f"{status // 100}xx"


def send(client, method, path, headers, body):
    headers = dict(headers)
    query = headers.pop("_query", None)
    return client.open(path, method=method, headers=headers, data=body, query_string=query)


def test_hostile_corpus_gets_4xx_and_changes_nothing(hostile, firestore_client, storage_client,
                                                      bucket):
    client, admin, project = hostile
    cases = corpus(project, admin)
    assert len(cases) >= 300, len(cases)
    before = fingerprint(firestore_client, storage_client, bucket)
    for label, method, path, headers, body, expectation in cases:
        # The admin token is left out: a marker inside its signature would waive every case.
        sent = " ".join([path, repr(body), *(str(value) for name, value in headers.items()
                                             if name != "Authorization")])
        outcome = check(send(client, method, path, headers, body), expectation, label, sent)
        HOSTILE_OUTCOMES[(label.split(" ")[0], outcome)] += 1
    assert fingerprint(firestore_client, storage_client, bucket) == before


QUERY_KEYS = st.sampled_from(["limit", "pageToken", "orderBy", "fields", "updatedSince",
                              "name", "status", "hourlyRate", "createdAt", "skills", "social",
                              "__name__", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=st.lists(st.tuples(QUERY_KEYS, st.text(max_size=40)), max_size=5),
       path=st.text(max_size=30))
def test_any_query_string_or_path_gets_no_5xx(hostile, params, path):
    client, admin, _ = hostile
    response = client.get("/users/" + quote(path, safe=""), headers=admin, query_string=params)
    outcome = check(response, "any", "hypothesis read", f"{path} {params}")
    HOSTILE_OUTCOMES[("hypothesis-read", outcome)] += 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(["id", "name", "email", "role", "status",
                                             "hourlyRate", "skills", "createdAt", "social",
                                             "bio", "zzz"]), JSON_VALUES, max_size=8),
       method=st.sampled_from(["POST", "PATCH", "PUT"]))
@example(body={"id": None, "name": {".py": None}}, method="POST")  # CI found: a value's repr echoed
def test_any_json_body_gets_no_5xx(hostile, body, method):
    client, admin, _ = hostile
    path = "/users" if method == "POST" else "/users/u_0003"
    response = client.open(path, method=method, headers=admin, json=body)
    outcome = check(response, "any", "hypothesis write", json.dumps(body))
    HOSTILE_OUTCOMES[("hypothesis-write", outcome)] += 1
