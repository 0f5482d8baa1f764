"""Stage 1, the scene: what a scene is, as pure data (SceneSpec), its assets, calibration scenes and motion vectors."""
