"""dfdgen's Blender extension: a sidebar panel (3D viewport, tab "DFD") to build, preview and render scenes.

Thin by design: recipes, scenes, the Blender builder and the sample encoder
all come from the bundled :mod:`generator` package, the code ``dfdgen render``
runs, so the panel shows and writes what the CLI would. Build the installable
zip with ``dfdgen addon build``.

Imports of this package's own modules are relative, as Blender requires of
extensions; :mod:`generator` is a wheel the extension bundles.
"""

from . import operators, panel, props

#: Registered in this order (the panel uses the operators and settings), unregistered in reverse.
_MODULES = (props, operators, panel)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
