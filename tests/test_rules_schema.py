"""`firestore.rules` and `storage.rules` against the schemas, offline (runs in CI).

The rules' behaviour is tested under Google's emulator by `python -m rules.run` (`make test`
runs it); this checks the rest: the generated files are up to date with `schemas/*.schema.json`;
the rules text, read independently of the generator, names exactly the schema's fields,
requirements and bounds; the emulator tests' cases agree with a standard JSON Schema validator;
Google's compiler (in the Firestore emulator) accepts `firestore.rules` and refuses broken
rules with their line; the generator refuses schemas it cannot express.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from emulators import harness
from rules import generate
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "firestore.rules"
STORAGE_RULES = REPO / "storage.rules"
SCHEMAS = sorted((REPO / "schemas").glob("*.schema.json"))
NODE = shutil.which("node")


def schema_of(path: Path) -> dict[str, Any]:
    """A schema file's JSON."""
    return json.loads(path.read_text(encoding="utf-8"))


def collection_block(name: str) -> str:
    """The validation function and match block of one collection in firestore.rules."""
    text = RULES.read_text(encoding="utf-8")
    found = re.search(rf"// --- {re.escape(name)}: from .*?match /{re.escape(name)}/\{{docId\}} "
                      r"\{.*?\n    \}\n", text, re.S)
    assert found, f"no block for {name} in firestore.rules"
    return found.group()


def rules_list(block: str, method: str) -> list[str]:
    """The string list passed to `data.keys().<method>([...])` in a block."""
    found = re.search(rf"data\.keys\(\)\.{method}\(\[(.*?)\]\)", block)
    assert found, method
    return re.findall(r"'([^']*)'", found.group(1))


# --- generated files are up to date -------------------------------------------------------------

def test_generated_files_are_up_to_date():
    for path, text in generate.outputs().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO)} is out of date with schemas/: run "
            "`.venv/bin/python -m rules.generate` and commit the result")


def test_generate_check_mode_agrees():
    assert generate.main(["--check"]) == 0


def test_firebase_json_names_the_rules_files():
    config = json.loads((REPO / "firebase.json").read_text(encoding="utf-8"))
    assert config["firestore"]["rules"] == "firestore.rules"
    assert config["storage"]["rules"] == "storage.rules"


def test_every_configured_collection_has_a_schema_and_rules():
    names = {path.name.removesuffix(".schema.json") for path in SCHEMAS}
    default = Settings.from_env({"GOOGLE_CLOUD_PROJECT": "demo-test",
                                 "SNAPSHOT_BUCKET": "demo-bucket"}).collections
    assert set(default) <= names
    matched = set(re.findall(r"match /([a-z][a-z0-9_-]*)/\{docId\}",
                             RULES.read_text(encoding="utf-8")))
    assert matched == names


# --- the rules text, read independently of the generator --------------------------------------

@pytest.mark.parametrize("path", SCHEMAS, ids=lambda path: path.name)
def test_rules_fields_match_the_schema(path):
    schema = schema_of(path)
    block = collection_block(path.name.removesuffix(".schema.json"))
    properties = set(schema["properties"]) | {"createdAt", "updatedAt"}
    assert set(rules_list(block, "hasOnly")) == properties
    assert set(rules_list(block, "hasAll")) == set(schema.get("required", [])) | {
        "createdAt", "updatedAt"}
    for name, prop in schema["properties"].items():
        if name in ("createdAt", "updatedAt"):
            continue
        value = f"data.{name}"
        assert f"{value} is " in block, f"{name}: no type check"
        if "maxLength" in prop:
            assert f"{value}.size() <= {prop['maxLength']}" in block, name
        if prop.get("minLength", 0) > 0:
            assert f"{value}.size() >= {prop['minLength']}" in block, name
        for bound in ("maxItems", "maxProperties"):
            if bound in prop:
                assert f"{value}.size() <= {prop[bound]}" in block, name
        if "minimum" in prop:
            assert f"{value} >= {prop['minimum']}" in block, name
        if "maximum" in prop:
            assert f"{value} <= {prop['maximum']}" in block, name
        if "enum" in prop:
            listed = ", ".join(f"'{item}'" for item in prop["enum"])
            assert f"{value} in [{listed}]" in block, name
        if "pattern" in prop:
            assert f"{value}.matches(" in block, name
        if prop.get("x-normalize") == "lowercase":
            assert f"{value} == {value}.lower()" in block, name
        optional = name not in schema.get("required", [])
        assert (f"!('{name}' in data)" in block) is optional, name


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda path: path.name)
def test_writes_are_admin_only_with_stamps(path):
    block = collection_block(path.name.removesuffix(".schema.json"))
    allows = re.findall(r"allow ([a-z, ]+):\s*if ([^;]+);", block)
    assert {methods for methods, _ in allows} == {"get, list", "create", "update", "delete"}
    for methods, condition in allows:
        assert condition.startswith("isAdmin()"), methods
    conditions = dict(allows)
    assert "stampedOnCreate(request.resource.data)" in conditions["create"]
    assert "stampedOnUpdate(request.resource.data, resource.data)" in conditions["update"]


def test_shared_rule_functions():
    text = RULES.read_text(encoding="utf-8")
    assert "request.auth != null && request.auth.token.admin == true" in text
    assert "data.createdAt == request.time && data.updatedAt == request.time" in text
    assert "!data.diff(before).affectedKeys().hasAny(['createdAt'])" in text
    assert re.search(r"match /\{document=\*\*\} \{\s*allow read, write: if false;\s*\}", text)
    allows = re.findall(r"allow [^;]*;", text)
    assert all("if false" in allow or "isAdmin()" in allow for allow in allows)


def test_storage_rules_deny_everything():
    text = STORAGE_RULES.read_text(encoding="utf-8")
    assert re.findall(r"allow [^;]*;", text) == ["allow read, write: if false;"]
    assert "match /{allPaths=**}" in text


# --- the emulator tests' cases against a standard JSON Schema validator ------------------------

def _plain(value: Any) -> Any:
    """cases.json markers as the JSON the migration would see (timestamps as strings)."""
    if isinstance(value, dict):
        if "$serverTime" in value or "$timestamp" in value:
            return value.get("$timestamp", "2024-05-01T12:00:00Z")
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


CASES = json.loads(generate.CASES_PATH.read_text(encoding="utf-8"))["collections"]
STANDARD_KEYWORDS = {"required", "additionalProperties", "type", "enum", "const", "minLength",
                     "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                     "exclusiveMaximum", "minItems", "maxItems", "minProperties",
                     "maxProperties"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_cases_satisfy_the_schema(name):
    schema = schema_of(REPO / CASES[name]["schema"])
    for key in ("valid", "minimal", "atBounds", "stored"):
        jsonschema.validate(_plain(CASES[name][key]), schema)


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_cases_break_the_schema(name):
    schema = schema_of(REPO / CASES[name]["schema"])
    validator = jsonschema.Draft202012Validator(schema)
    checked = 0
    for case in CASES[name]["invalidCreates"]:
        field = case["why"].removeprefix("required ").split(":")[0].split(" ")[0]
        # The stamps and timestamps are Firestore types the JSON schema does not describe.
        if case["keyword"] not in STANDARD_KEYWORDS or field in ("createdAt", "updatedAt") \
                or "x-firestore-type" in schema["properties"].get(field, {}):
            continue
        doc = _plain(case["data"])
        errors = list(validator.iter_errors(doc))
        assert errors, f"{name}: {case['why']} is accepted by the JSON schema"
        checked += 1
    assert checked >= len(schema["properties"])


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda path: path.name)
def test_every_enforced_constraint_has_a_deny_case(path):
    schema = schema_of(path)
    name = path.name.removesuffix(".schema.json")
    covered = {(case["why"].split(":")[0], case["keyword"])
               for case in CASES[name]["invalidCreates"]}
    for field, prop in schema["properties"].items():
        if field in ("createdAt", "updatedAt"):
            continue
        for keyword in set(prop) & (generate.ENFORCED - {"x-firestore-type"}):
            if keyword == "minLength" and prop[keyword] == 0:
                continue
            expected = "type" if keyword == "type" else keyword
            assert (field, expected) in covered, f"{name}.{field}: no deny case for {keyword}"
        assert (field, "type") in covered
    for field in schema.get("required", []):
        assert (f"required {field} missing", "required") in covered
    stamps = [case["why"] for case in CASES[name]["invalidUpdates"] if case["keyword"] == "stamps"]
    assert {"createdAt changed", "createdAt removed", "updatedAt left unchanged"} <= set(stamps)


# --- Google's rules compiler (the Firestore emulator compiles rules when they are loaded) -------

def test_firestore_rules_compile_in_googles_emulator(emulators, project_id):
    harness.load_rules(emulators.firestore, project_id, RULES.read_text(encoding="utf-8"))


# Breakages Google's compiler refuses at load time, with the line it reports (a semantic slip
# such as an undefined function compiles, and fails at evaluation: the rules tests catch those).
BROKEN = {
    "unbalanced parenthesis": ("(!('client' in data) ||", "((!('client' in data) ||", 0),
    "unknown type": ("is timestamp", "is datetime", 0),
    "triple equals": ("request.auth != null", "request.auth !== null", 0),
    "unterminated string": ("hasAny(['createdAt'])", "hasAny(['createdAt])", 1),
    "allow outside match": ("service cloud.firestore {",
                            "service cloud.firestore {\n  allow read: if true;", 1),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_googles_compiler_refuses_broken_rules_with_their_line(emulators, project_id, case):
    old, new, line_offset = BROKEN[case]
    text = RULES.read_text(encoding="utf-8")
    assert old in text, case
    line = text[:text.index(old)].count("\n") + 1 + line_offset
    harness.load_rules(emulators.firestore, project_id, text)
    with pytest.raises(harness.RulesError) as refused:
        harness.load_rules(emulators.firestore, project_id, text.replace(old, new, 1))
    assert refused.value.issues[0]["line"] == line, refused.value.issues


# --- the generator refuses what rules cannot express ---------------------------------------------

def _write_schema(directory: Path, name: str, schema: dict[str, Any]) -> None:
    (directory / f"{name}.schema.json").write_text(json.dumps(schema), encoding="utf-8")


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


@pytest.mark.parametrize(("schema", "message"), [
    (_closed({"a": {"type": "string", "unknownKeyword": 1}}), "does not know"),
    (_closed({"a": {"type": "string"}}, oneOf=[]), "does not know"),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, "closed object"),
    (_closed({"a": {"type": "string", "pattern": "(?<=x)y"}}), "RE2"),
    (_closed({"a": {"type": "string", "pattern": r"(a)\1"}}), "RE2"),
    (_closed({"a": {"x-firestore-type": "geopoint"}}), "x-firestore-type"),
    (_closed({"a": {"x-firestore-type": "timestamp", "type": "null"}}), "x-firestore-type"),
    (_closed({"a": {"description": "no type"}}), "needs a type"),
    (_closed({"createdAt": {"type": "string"}}), "must be a timestamp"),
    (_closed({"a": {"type": "string"}}, required=["b"]), "without a property"),
])
def test_generator_refuses_schemas_it_cannot_enforce(tmp_path, schema, message):
    _write_schema(tmp_path, "things", schema)
    with pytest.raises(generate.GeneratorError, match=message):
        generate.load_collections(tmp_path)


def test_a_new_collection_is_configuration_only(tmp_path, emulators, project_id):
    for path in SCHEMAS:
        shutil.copy(path, tmp_path / path.name)
    _write_schema(tmp_path, "client-accounts", _closed({
        "name": {"type": "string", "minLength": 2, "maxLength": 80},
        "code": {"type": "string", "pattern": "[A-Z]{3}", "examples": ["ABC"]},
        "active": {"type": "boolean"},
        "seats": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1000},
        "ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "kind": {"const": "client", "type": "string"},
        "owners": {"type": "array", "minItems": 1, "maxItems": 3,
                   "items": {"type": "string", "maxLength": 10}},
        "meta-data": {"type": "object", "minProperties": 1, "maxProperties": 2},
        "renewsAt": {"x-firestore-type": "timestamp"},
    }, required=["name", "code"]))
    collections = generate.load_collections(tmp_path)
    text = generate.render_rules(collections)
    harness.load_rules(emulators.firestore, project_id, text)  # Google's compiler accepts it
    assert "match /client-accounts/{docId}" in text and "function validClientAccountsDoc" in text
    assert "data.seats is int && data.seats > 0 && data.seats < 1000" in text
    assert "data.code.matches('(?s).*(?:[A-Z]{3}).*')" in text
    assert "(data.ratio is number && data.ratio >= 0 && data.ratio <= 1) || (data.ratio == null)" \
        in text
    assert "data['meta-data'] is map" in text and "data.kind == 'client'" in text
    cases = json.loads(generate.render_cases(collections))["collections"]["client-accounts"]
    schema = schema_of(tmp_path / "client-accounts.schema.json")
    for key in ("valid", "minimal", "atBounds"):
        doc = {k: v for k, v in _plain(cases[key]).items() if k not in ("createdAt", "updatedAt")}
        jsonschema.validate(doc, schema)
    whys = {case["why"] for case in cases["invalidCreates"]}
    assert {"seats: wrong type float", "seats: at exclusiveMaximum", "code: does not match the "
            "pattern", "owners: fewer than minItems", "kind: not the constant"} <= whys
    assert "ratio: null" not in whys


# --- the package pins and the runner -----------------------------------------------------------

def test_rules_test_packages_are_pinned():
    package = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    assert package["devDependencies"] == {"@firebase/rules-unit-testing": "5.0.2",
                                          "firebase-tools": "15.34.2"}
    assert package["dependencies"] == {"firebase": "12.19.0"}
    lock = json.loads((REPO / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/@firebase/rules-unit-testing"]["version"] == "5.0.2"
    assert lock["packages"]["node_modules/firebase"]["version"] == "12.19.0"


needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


@needs_node
def test_rules_test_scripts_parse():
    for path in sorted((REPO / "rules" / "test").glob("*.mjs")):
        subprocess.run([NODE, "--check", str(path)], check=True, timeout=60)


def _runner(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "rules.run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@needs_node
def test_runner_with_a_dead_emulator_address_fails_and_says_why():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"}
    env.pop("FIREBASE_STORAGE_EMULATOR_HOST", None)
    result = _runner(env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "RULES TESTS NOT RUN" in result.stderr and "no Firestore emulator" in result.stderr
    assert "STORAGE RULES TESTS NOT RUN" in result.stderr
    assert not re.search(r"\bpass \d+", result.stdout)


class _NoRulesEmulator(BaseHTTPRequestHandler):
    """An emulator without a rules engine: refuses rules uploads, serves every read."""

    def do_PUT(self):
        self.send_response(404)
        self.end_headers()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _RulesIgnoringEmulator(_NoRulesEmulator):
    """Accepts a rules upload, then ignores the rules."""

    def do_PUT(self):
        self.send_response(200)
        self.end_headers()


@needs_node
@pytest.mark.parametrize("handler", [_NoRulesEmulator, _RulesIgnoringEmulator])
def test_runner_refuses_an_emulator_without_rules(handler):
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{server.server_port}",
               "FIREBASE_STORAGE_EMULATOR_HOST": "127.0.0.1:1"}
        result = _runner(env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2, result.stderr
    assert "RULES TESTS NOT RUN" in result.stderr and "security rules" in result.stderr
