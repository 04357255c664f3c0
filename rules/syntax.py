"""An offline grammar and name check of Firebase security rules (`rules_version = '2'`).

Google's rules compiler runs only inside Google's emulators (Java) and behind the Firebase
Rules API, neither of which this machine or CI can reach, and the two rules parsers on npm
fail on valid rules (`firebase-rules-parser` 2.0.1 knows no `rules_version`, `is` or `let`;
`prettier-plugin-firestore-rules` 0.1.5 takes one function per block). So CI runs this small
recursive-descent parser instead. It follows the documented language (service / match /
allow / function / let / return, the expression operators with their precedence, `is` types,
path literals with `$(...)`), and resolves names: every variable must be a parameter, a
`let`, a path wildcard of an enclosing `match` or a rules global; every called function must be
declared (with the right number of arguments) or built in; every method called must be a
documented rules method. It catches typos and broken generation; it does not evaluate rules
or check types, and passing it is not proof that Google's compiler accepts the file: the
emulator tests are (`node rules/run.mjs`).

    python -m rules.syntax firestore.rules storage.rules
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

METHODS = {"read", "write", "get", "list", "create", "update", "delete"}
TYPES = {"bool", "bytes", "constraint", "duration", "float", "int", "latlng", "list", "map",
         "map_diff", "number", "path", "set", "string", "timestamp"}
GLOBAL_VARIABLES = {"request", "resource", "math", "timestamp", "duration", "hashing",
                    "latlng", "sets"}
GLOBAL_FUNCTIONS = {"get": 1, "exists": 1, "getAfter": 1, "existsAfter": 1, "debug": 1,
                    "int": 1, "float": 1, "string": 1, "bool": 1, "path": 1}
# The methods of the rules types (String, List, Map, Set, MapDiff, Timestamp, Duration, Bytes,
# LatLng, Path) and of the global namespaces (math, timestamp, duration, hashing, latlng).
RULE_METHODS = {
    "size", "matches", "lower", "upper", "trim", "split", "replace", "toUtf8",
    "concat", "hasAll", "hasAny", "hasOnly", "join", "removeAll", "toSet",
    "keys", "values", "diff", "get", "addedKeys", "removedKeys", "changedKeys",
    "affectedKeys", "unchangedKeys", "difference", "intersection", "union",
    "date", "day", "dayOfWeek", "dayOfYear", "hours", "minutes", "month", "nanos",
    "seconds", "time", "toMillis", "year", "value", "abs", "ceil", "floor", "isInfinite",
    "isNaN", "pow", "round", "sqrt", "crc32", "crc32c", "md5", "sha256", "toBase64",
    "toHexString", "distance", "latitude", "longitude", "bind", "range", "contains",
}

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<number>\d+\.\d+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\$\(|=\*\*|==|!=|<=|>=|&&|\|\||[-+*/%<>!=?:;,.(){}\[\]])
""", re.VERBOSE)


class RulesSyntaxError(ValueError):
    """A rules file that does not parse or names something undefined (with line:column)."""


@dataclass(frozen=True)
class Token:
    """One token with its position."""

    kind: str
    text: str
    line: int
    column: int


def tokenize(text: str) -> list[Token]:
    """The tokens of a rules file (comments and whitespace dropped)."""
    tokens, position, line, line_start = [], 0, 1, 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise RulesSyntaxError(f"{line}:{position - line_start + 1}: unexpected character "
                                   f"{text[position]!r}")
        kind = found.lastgroup or ""
        value = found.group()
        if kind != "space":
            tokens.append(Token(kind, value, line, position - line_start + 1))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = position + value.rindex("\n") + 1
        position = found.end()
    tokens.append(Token("end", "", line, position - line_start + 1))
    return tokens


class _Scope:
    def __init__(self, parent: _Scope | None = None):
        self.parent = parent
        self.variables: set[str] = set()
        self.functions: dict[str, int] = {}

    def has_variable(self, name: str) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.variables:
                return True
            scope = scope.parent
        return name in GLOBAL_VARIABLES

    def arity(self, name: str) -> int | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.functions:
                return scope.functions[name]
            scope = scope.parent
        return GLOBAL_FUNCTIONS.get(name)


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.index = 0
        self.calls: list[tuple[Token, int, _Scope]] = []

    # --- helpers ---
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def fail(self, message: str, token: Token | None = None) -> RulesSyntaxError:
        token = token or self.token
        return RulesSyntaxError(f"{token.line}:{token.column}: {message} "
                                f"(at {token.text or 'end of file'!r})")

    def at(self, *texts: str) -> bool:
        return self.token.text in texts and self.token.kind in ("op", "name")

    def take(self, text: str) -> Token:
        if not self.at(text):
            raise self.fail(f"expected {text!r}")
        token = self.token
        self.index += 1
        return token

    def take_name(self) -> Token:
        if self.token.kind != "name":
            raise self.fail("expected a name")
        token = self.token
        self.index += 1
        return token

    # --- file structure ---
    def parse_file(self) -> None:
        self.take("rules_version")
        self.take("=")
        if self.token.kind != "string" or self.token.text[1:-1] != "2":
            raise self.fail("rules_version must be '2'")
        self.index += 1
        self.take(";")
        self.take("service")
        service = [self.take_name().text]
        while self.at("."):
            self.index += 1
            service.append(self.take_name().text)
        if ".".join(service) not in ("cloud.firestore", "firebase.storage"):
            raise self.fail(f"unknown service {'.'.join(service)!r}")
        root = _Scope()
        self.take("{")
        self.block(root, allow_rules=False)
        self.take("}")
        if self.token.kind != "end":
            raise self.fail("unexpected text after the service block")
        for token, count, scope in self.calls:
            arity = scope.arity(token.text)
            if arity is None:
                raise self.fail(f"call of an undefined function {token.text!r}", token)
            if arity != count:
                raise self.fail(f"{token.text}() takes {arity} argument(s), given {count}",
                                token)

    def block(self, scope: _Scope, *, allow_rules: bool) -> None:
        start = self.index
        while not self.at("}") and self.token.kind != "end":
            if self.at("function"):
                self.skip_function_header(scope)
            else:
                self.skip_statement()
        self.index = start
        while not self.at("}"):
            if self.at("function"):
                self.function(scope)
            elif self.at("match"):
                self.match(scope)
            elif self.at("allow"):
                if not allow_rules:
                    raise self.fail("allow outside a match block")
                self.allow(scope)
            else:
                raise self.fail("expected function, match or allow")

    def skip_function_header(self, scope: _Scope) -> None:
        """Declare a function before the block is parsed (functions may be used before)."""
        self.take("function")
        name = self.take_name()
        self.take("(")
        count = 0
        while not self.at(")"):
            self.take_name()
            count += 1
            if not self.at(")"):
                self.take(",")
        self.index += 1
        if name.text in scope.functions:
            raise self.fail(f"function {name.text!r} declared twice", name)
        scope.functions[name.text] = count
        self.skip_braces()

    def skip_statement(self) -> None:
        while not self.at("{", ";", "}") and self.token.kind != "end":
            self.index += 1
        if self.at("{"):
            self.skip_braces()
        elif self.at(";"):
            self.index += 1

    def skip_braces(self) -> None:
        self.take("{")
        depth = 1
        while depth:
            if self.token.kind == "end":
                raise self.fail("unbalanced braces")
            if self.at("{"):
                depth += 1
            elif self.at("}"):
                depth -= 1
            self.index += 1

    def function(self, scope: _Scope) -> None:
        self.take("function")
        self.take_name()
        inner = _Scope(scope)
        self.take("(")
        while not self.at(")"):
            param = self.take_name()
            if param.text in inner.variables:
                raise self.fail(f"parameter {param.text!r} twice", param)
            inner.variables.add(param.text)
            if not self.at(")"):
                self.take(",")
        self.take(")")
        self.take("{")
        while self.at("let"):
            self.index += 1
            name = self.take_name()
            self.take("=")
            self.expression(inner)
            self.take(";")
            inner.variables.add(name.text)
        self.take("return")
        self.expression(inner)
        self.take(";")
        self.take("}")

    def match(self, scope: _Scope) -> None:
        self.take("match")
        inner = _Scope(scope)
        if not self.at("/"):
            raise self.fail("a match path starts with /")
        while self.at("/"):
            self.index += 1
            if self.at("{"):
                self.index += 1
                inner.variables.add(self.take_name().text)
                if self.at("=**"):
                    self.index += 1
                self.take("}")
            elif self.token.kind in ("name", "number"):
                while self.token.kind in ("name", "number") or self.at("-"):
                    self.index += 1
            else:
                raise self.fail("expected a path segment or {wildcard}")
        self.take("{")
        self.block(inner, allow_rules=True)
        self.take("}")

    def allow(self, scope: _Scope) -> None:
        self.take("allow")
        while True:
            method = self.take_name()
            if method.text not in METHODS:
                raise self.fail(f"unknown method {method.text!r}", method)
            if not self.at(","):
                break
            self.index += 1
        if self.at(":"):
            self.index += 1
            self.take("if")
            self.expression(scope)
        self.take(";")

    # --- expressions (lowest precedence first) ---
    def expression(self, scope: _Scope) -> None:
        self.binary(scope, 0)
        if self.at("?"):
            self.index += 1
            self.expression(scope)
            self.take(":")
            self.expression(scope)

    LEVELS = (("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in", "is"),
              ("+", "-"), ("*", "/", "%"))

    def binary(self, scope: _Scope, level: int) -> None:
        if level == len(self.LEVELS):
            self.unary(scope)
            return
        self.binary(scope, level + 1)
        while self.at(*self.LEVELS[level]):
            operator = self.token.text
            self.index += 1
            if operator == "is":
                kind = self.take_name()
                if kind.text not in TYPES:
                    raise self.fail(f"unknown type {kind.text!r}", kind)
            else:
                self.binary(scope, level + 1)

    def unary(self, scope: _Scope) -> None:
        if self.at("!", "-"):
            self.index += 1
            self.unary(scope)
            return
        self.primary(scope)
        while True:
            if self.at("."):
                self.index += 1
                name = self.take_name()
                if self.at("("):
                    if name.text not in RULE_METHODS:
                        raise self.fail(f"unknown method {name.text!r}", name)
                    self.arguments(scope)
            elif self.at("["):
                self.index += 1
                self.expression(scope)
                if self.at(":"):
                    self.index += 1
                    self.expression(scope)
                self.take("]")
            else:
                return

    def arguments(self, scope: _Scope) -> int:
        self.take("(")
        count = 0
        while not self.at(")"):
            self.expression(scope)
            count += 1
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return count

    def primary(self, scope: _Scope) -> None:
        token = self.token
        if token.kind in ("string", "number"):
            self.index += 1
        elif token.kind == "name" and token.text in ("true", "false", "null"):
            self.index += 1
        elif token.kind == "name":
            self.index += 1
            if self.at("("):
                self.calls.append((token, self.arguments(scope), scope))
            elif not scope.has_variable(token.text):
                raise self.fail(f"undefined name {token.text!r}", token)
        elif self.at("("):
            self.index += 1
            self.expression(scope)
            self.take(")")
        elif self.at("["):
            self.index += 1
            while not self.at("]"):
                self.expression(scope)
                if not self.at("]"):
                    self.take(",")
            self.take("]")
        elif self.at("{"):
            self.index += 1
            while not self.at("}"):
                if self.token.kind != "string":
                    raise self.fail("map keys are strings")
                self.index += 1
                self.take(":")
                self.expression(scope)
                if not self.at("}"):
                    self.take(",")
            self.take("}")
        elif self.at("/"):
            self.path_literal(scope)
        else:
            raise self.fail("expected an expression")

    def path_literal(self, scope: _Scope) -> None:
        while self.at("/"):
            self.index += 1
            if self.at("$("):
                self.index += 1
                self.expression(scope)
                self.take(")")
            elif self.token.kind in ("name", "number"):
                self.index += 1
            else:
                raise self.fail("expected a path segment")


def check(text: str) -> None:
    """Raise `RulesSyntaxError` when `text` is not a valid rules file (by this checker)."""
    _Parser(text).parse_file()


def check_files(paths: Iterable[Path]) -> list[str]:
    """The problems of each file, as `path:line:column: message` lines."""
    problems = []
    for path in paths:
        try:
            check(path.read_text(encoding="utf-8"))
        except RulesSyntaxError as exc:
            problems.append(f"{path}:{exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check the named rules files; exit 1 on the first problem of each."""
    paths = [Path(arg) for arg in (argv if argv is not None else sys.argv[1:])]
    problems = check_files(paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(paths)} rules file(s) parse")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
