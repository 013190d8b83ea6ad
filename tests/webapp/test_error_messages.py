"""Every error code the API can return has a sentence in each language, and the pages carry them."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from werkzeug.exceptions import default_exceptions

from webapp.error_messages import MESSAGES
from webapp.errors import CODES
from webapp.i18n import SOURCE

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "webapp").rglob("*.py")) + [ROOT / "training" / "preprocess.py"]
HEADERS = {"ja": "ja,en;q=0.5", "zh": "zh-CN,zh;q=0.9", "ru": "ru-RU,ru;q=0.9"}


def http_code(status: int) -> str:
    """The code webapp/errors.py gives an HTTP exception with this status."""
    return CODES.get(status, default_exceptions[status]().name.lower().replace(" ", "_"))


class CodeFinder(ast.NodeVisitor):
    """The codes one module raises: ServiceError(status, code, ...), error_response(status, code, ...),
    `code = ...` on error classes, and abort(status)."""

    def __init__(self, tree: ast.Module, calls: dict[str, list[ast.Call]]):
        self.tree, self.calls, self.codes, self.unresolved = tree, calls, set(), []
        self.parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def visit_Call(self, node: ast.Call):
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name in ("ServiceError", "error_response"):
            code = node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "code")
            self.codes |= self.resolve(code)
        elif name == "abort" and node.args and isinstance(node.args[0], ast.Constant):
            self.codes.add(http_code(node.args[0].value))
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef):
        if any(getattr(base, "id", "").endswith("Error") for base in node.bases):
            for statement in node.body:
                if isinstance(statement, ast.Assign):
                    for target in statement.targets:
                        names = target.elts if isinstance(target, ast.Tuple) else [target]
                        values = statement.value.elts if isinstance(target, ast.Tuple) else [statement.value]
                        for name, value in zip(names, values):
                            if getattr(name, "id", None) == "code":
                                self.codes |= self.resolve(value)
        self.generic_visit(node)

    def resolve(self, node: ast.expr) -> set[str]:
        """A constant code, or an f-string such as f"invalid_{name}" filled from every value `name` takes."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.JoinedStr):
            found = {""}
            for part in node.values:
                if isinstance(part, ast.Constant):
                    found = {prefix + part.value for prefix in found}
                elif isinstance(part.value, ast.Name):
                    found = {prefix + value for prefix in found for value in self.values_of(part.value)}
                else:
                    self.unresolved.append(ast.unparse(node))
            return found
        if isinstance(node, ast.Attribute) and node.attr == "code":
            return set()  # errors.py passing on an exception's own code, which its class sets
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "CODES.get":
            return set()  # errors.py's HTTP codes: CODES itself, and abort(status) elsewhere
        self.unresolved.append(ast.unparse(node))
        return set()

    def values_of(self, name: ast.Name) -> set[str]:
        node = name
        while node := self.parents.get(node):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Tuple):
                # for name, allowed in (("status", ...), ("source", ...)):
                index = [getattr(elt, "id", None) for elt in node.target.elts].index(name.id)
                return {row.elts[index].value for row in node.iter.elts}
            if isinstance(node, ast.FunctionDef) and name.id in [arg.arg for arg in node.args.args]:
                position = [arg.arg for arg in node.args.args].index(name.id)
                values = set()
                for call in self.calls.get(node.name, []):
                    given = call.args[position] if len(call.args) > position else next(
                        (k.value for k in call.keywords if k.arg == name.id), None)
                    if isinstance(given, ast.Constant) and isinstance(given.value, str):
                        values.add(given.value)
                    else:
                        self.unresolved.append(f"{node.name}({ast.unparse(call)})")
                return values
        self.unresolved.append(name.id)
        return set()


def raised_codes() -> tuple[set[str], list[str]]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in SOURCES}
    calls: dict[str, list[ast.Call]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                calls.setdefault(name, []).append(node)
    codes, unresolved = set(CODES.values()), []
    for tree in trees.values():
        finder = CodeFinder(tree, calls)
        finder.visit(tree)
        codes |= finder.codes
        unresolved += finder.unresolved
    return codes, unresolved


def test_the_scan_finds_the_codes_it_should():
    codes, unresolved = raised_codes()
    assert not unresolved, f"codes the scan cannot work out: {unresolved}"
    # One of each way a code is raised: a constant, a parameter's value, a for loop's, a class attribute, abort().
    assert {"already_rated", "invalid_username", "invalid_page", "invalid_source", "image_too_large",
            "empty_drawing", "rate_limited", "forbidden", "models_unavailable"} <= codes


def test_every_code_the_api_raises_has_a_sentence():
    codes, _ = raised_codes()
    missing = codes - MESSAGES.keys()
    assert not missing, f"add these to webapp/error_messages.py: {sorted(missing)}"
    assert not MESSAGES.keys() - codes, "a sentence for a code nothing raises"


@pytest.mark.parametrize("lang", HEADERS)
def test_each_sentence_is_translated(lang):
    with (SOURCE / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        catalog = read_po(source, locale=lang)
    for code, text in MESSAGES.items():
        message = catalog.get(text._args[0])
        assert message is not None, f"{lang}: {code} is not in the catalog"
        assert message.string.strip() and "fuzzy" not in message.flags, f"{lang}: {code}"


@pytest.mark.parametrize("lang", HEADERS)
def test_the_page_carries_the_sentences_in_its_language(client, lang):
    page = client.get("/contribute", headers={"Accept-Language": HEADERS[lang]}).get_data(as_text=True)
    block = json.loads(re.search(r'id="api-messages">(.*?)</script>', page, re.S).group(1))
    english = json.loads(re.search(r'id="api-messages">(.*?)</script>',
                                   client.get("/contribute", headers={"Accept-Language": "en"}).get_data(as_text=True),
                                   re.S).group(1))
    assert block["codes"].keys() == MESSAGES.keys() == english["codes"].keys()
    assert english["codes"]["too_large"] == "That is too large to send. Try a smaller image."
    assert all(block["codes"][code] != english["codes"][code] for code in MESSAGES)
