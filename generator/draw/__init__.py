"""Stage 3, drawing: (recipe, scene index) -> SceneSpec, deterministically, from the scene's own seed."""
