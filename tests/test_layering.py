"""The house's layering (DESIGN.md section 1), read from the source with ``ast``:

- only ``generator/render/blender/`` and ``blender_addon/`` import ``bpy``;
- ``generator`` never imports ``dfd_models`` (the trainer builds on the generator, not back);
- ``generator``'s stages import only themselves and the stages before them, in the order
  :data:`STAGES` (core, scene, recipe, draw, dataset, render); the CLI and the add-on builder at
  ``generator``'s top sit above every stage;
- ``dfd_models`` reads only ``generator``'s shared core and its dataset stage (the sample
  format's one owner, through which the loader decodes shards), and the package's version;
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
BPY_ALLOWED = ("generator.render.blender", "blender_addon")
#: ``generator``'s stages in the data's order of dependence: each may import only itself and those before it.
STAGES = ("core", "scene", "recipe", "draw", "dataset", "render")
#: What of ``generator`` ``dfd_models`` may import (the package itself: its version).
MODELS_MAY_IMPORT = ("generator.core", "generator.dataset")


def stage_of(module: str) -> str | None:
    """The stage of a ``generator`` module, or None (the package, its CLI and add-on builder)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "generator" and len(parts) > 2 and parts[1] in STAGES else None


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
        stage = stage_of(name)
        for m in sorted(found):
            other = stage_of(m)
            if stage and other and STAGES.index(other) > STAGES.index(stage):
                errors.append(f"{name} imports {m} (stage {stage} may not import the later stage {other})")
            if stage and m.split(".")[0] == "generator" and not other and m != "generator":
                errors.append(f"{name} imports {m} (a stage may not import the CLI or the add-on builder)")
            if (name.startswith("dfd_models") and m.split(".")[0] == "generator" and m != "generator"
                    and not m.startswith(MODELS_MAY_IMPORT)):
                errors.append(f"{name} imports {m} (dfd_models may import only {', '.join(MODELS_MAY_IMPORT)})")
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
    ("generator/core/lens.py", "import bpy\n", "generator.core.lens imports bpy"),
    ("generator/draw/scene.py", "def f():\n    from dfd_models.networks import MODELS\n", "generator.draw.scene imports dfd_models"),
    ("generator/scene/spec.py", "from generator.dataset.sample import encode_sample\n",
     "stage scene may not import the later stage dataset"),
    ("generator/core/lens.py", "from generator.scene.spec import SceneSpec\n", "stage core may not import the later stage scene"),
    ("dfd_models/losses.py", "from generator.draw.scene import draw_scene\n", "dfd_models may import only"),
    ("generator/core/errors.py", "from generator.core import files\n", "import cycle"),
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
