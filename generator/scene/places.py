"""Where a recipe's asset folders may lie (:class:`AssetPlaces`): inside the recipe file's folder,
or inside a folder the user grants on the command line (``dfdgen render --assets-root``).

So a recipe from a stranger reads no file of the machine beyond its own folder; every file read
from an asset folder is checked against the same places (:mod:`generator.scene.assets`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from generator.core.errors import RecipeError, printable


@dataclass(frozen=True)
class AssetPlaces:
    """Where a recipe's asset folders may be (module docstring): inside the folder of the recipe
    file, against which relative folders resolve, or inside a folder allowed on the command line.

    Attributes:
        recipe_folder: the recipe file's folder: absolute, links followed.
        roots: folders given with ``dfdgen render --assets-root``: absolute, links followed.
    """

    recipe_folder: str
    roots: tuple[str, ...] = ()

    @classmethod
    def of(cls, recipe_folder: str | os.PathLike[str], roots: tuple[str | os.PathLike[str], ...] = ()) -> "AssetPlaces":
        """The places of a recipe in ``recipe_folder`` with the command line's ``roots`` (relative to
        the current folder; links followed)."""
        return cls(str(Path(recipe_folder).resolve()), tuple(str(Path(root).resolve()) for root in roots))

    def holds(self, path: Path) -> bool:
        """Whether ``path`` (absolute, links followed) lies in the recipe's folder or a root."""
        return any(path.is_relative_to(place) for place in (self.recipe_folder, *self.roots))

    def folder(self, field: str, folder: str) -> Path:
        """The asset folder ``folder``, named by recipe field ``field``: absolute, links followed.

        Raises:
            RecipeError: it lies outside the recipe's folder and every root, or cannot be resolved.
        """
        try:
            real = Path(self.recipe_folder, folder).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL in the name, a loop of links
            raise RecipeError(field, folder, printable(f"a folder that can be found ({exc})")) from None
        if not self.holds(real):
            roots = f" or in an --assets-root ({', '.join(self.roots)})" if self.roots else ""
            raise RecipeError(field, folder, printable(
                f"a folder in the recipe's folder {self.recipe_folder}{roots}, links followed (this is {real}); "
                f"allow another with --assets-root", 1000))
        return real
