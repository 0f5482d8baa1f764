"""The house's layering (DESIGN.md section 1), read from the source with ``ast``:

- only ``generator/blender/`` and ``blender_addon/`` import ``bpy``;
- ``generator`` never imports ``dfd_models`` (the trainer builds on the generator, not back);
- the project's modules import each other without a cycle, counting imports inside
  functions too (a lazy import still ties two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("generator", "blender_addon", "dfd_models")
#: Where bpy may be imported.
BPY_ALLOWED = ("generator.blender", "blender_addon")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT, modules: set[str] = frozenset()) -> set[str]:
    """Every module ``path`` imports, at any depth of the code (absolute names). ``from pkg import
    name`` imports ``pkg.name`` when that is one of ``modules``, else ``pkg``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def project_files(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the project's packages."""
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def project_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    files = project_files(root)
    return {name: {m for m in imports(path, root, set(files)) if m in files and m != name}
            for name, path in files.items()}


def layering_errors(root: Path = ROOT) -> list[str]:
    """What breaks the rules of the module docstring, one line each."""
    errors = []
    files = project_files(root)
    for name, path in files.items():
        found = imports(path, root, set(files))
        if any(m == "bpy" or m.startswith("bpy.") for m in found) and not name.startswith(BPY_ALLOWED):
            errors.append(f"{name} imports bpy (only {', '.join(BPY_ALLOWED)} may)")
        if name.startswith("generator") and any(m.split(".")[0] == "dfd_models" for m in found):
            errors.append(f"{name} imports dfd_models (generator must not)")
    graph = project_graph(root)
    for cycle in _cycles(graph):
        errors.append("import cycle: " + " -> ".join(cycle))
    return errors


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_project_keeps_its_layers():
    assert layering_errors() == []


@pytest.mark.parametrize("module, source, expected", [
    ("generator/lens.py", "import bpy\n", "generator.lens imports bpy"),
    ("generator/draw.py", "def f():\n    from dfd_models.networks import MODELS\n", "generator.draw imports dfd_models"),
    ("generator/spec.py", "from generator.codec import encode_sample\n", "import cycle"),
])
def test_the_check_catches_a_broken_layer(tmp_path, module, source, expected):
    """Copy the project, add one offending import, and the check names it."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + source, encoding="utf-8")
    assert any(expected in line for line in layering_errors(tmp_path)), layering_errors(tmp_path)
