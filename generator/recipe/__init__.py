"""Stage 2, the recipe: YAML -> a validated, frozen Recipe in the scene's vocabulary; focus ramps."""
