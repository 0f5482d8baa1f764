"""Built-in recipes (package data), found by name with ``generator.recipe.recipe.load_recipe``."""
