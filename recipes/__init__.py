"""Built-in recipes (package data), found by name with ``generator.recipe.load_recipe``."""
