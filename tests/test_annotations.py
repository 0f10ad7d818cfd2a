"""Every public function and method of the product packages annotates its parameters and its return.

Public: the name does not start with `_` (`__init__` counts, other dunders do not), and it is module-level
or a method of a public class. Nested functions are left out; `self`/`cls`, `*args` and `**kwargs` are not.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("videomaker", "pipelines", "metrics", "jobs")


def is_public(name: str) -> bool:
    return name == "__init__" or not name.startswith("_")


def unannotated(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> list[str]:
    """The parameters (`*args`, `**kwargs` with their stars) and `return` that carry no annotation."""
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list)
    if method and not static and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    missing = [a.arg for a in [*positional, *arguments.kwonlyargs] if a.annotation is None]
    if arguments.vararg is not None and arguments.vararg.annotation is None:
        missing.append(f"*{arguments.vararg.arg}")
    if arguments.kwarg is not None and arguments.kwarg.annotation is None:
        missing.append(f"**{arguments.kwarg.arg}")
    if function.returns is None:
        missing.append("return")
    return missing


def public_functions(body: list[ast.stmt], qualname: str = "", *, method: bool = False):
    """(qualified name, node, is method) of each public function of a module or public class body.

    Definitions under `if`/`try` at the same level (e.g. a fallback definition) count as that level's.
    """
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if is_public(node.name):
                yield f"{qualname}{node.name}", node, method
        elif isinstance(node, ast.ClassDef):
            if not node.name.startswith("_"):
                yield from public_functions(node.body, f"{qualname}{node.name}.", method=True)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                yield from public_functions(block, qualname, method=method)


def missing_annotations(source: str, path: str) -> list[str]:
    return [
        f"{path}:{name} ({', '.join(missing)})"
        for name, node, method in public_functions(ast.parse(source).body)
        if (missing := unannotated(node, method=method))
    ]


def test_the_check_finds_what_it_should():
    source = """
def typed(a: int, *rest: str, b: float = 1.0, **extra: object) -> None: ...
def no_return(a: int): ...
def bare(a, *rest, **extra) -> int: ...
def _private(a): ...
class Public:
    def __init__(self, value: int): ...
    def method(self, other) -> None: ...
    @classmethod
    def make(cls) -> "Public": ...
    @staticmethod
    def helper(self): ...
    def __repr__(self): ...
    def outer(self) -> None:
        def inner(x): ...
class _Private:
    def method(self, x): ...
if True:
    def conditional(x) -> None: ...
"""
    assert missing_annotations(source, "m.py") == [
        "m.py:no_return (return)",
        "m.py:bare (a, *rest, **extra)",
        "m.py:Public.__init__ (return)",
        "m.py:Public.method (other)",
        "m.py:Public.helper (self, return)",
        "m.py:conditional (x)",
    ]


def test_every_public_function_is_annotated():
    files = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    assert len(files) > 50  # the packages were found
    missing = [line for path in files for line in missing_annotations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not missing, "public functions missing annotations:\n" + "\n".join(missing)
