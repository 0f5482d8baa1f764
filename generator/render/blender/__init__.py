"""The Blender backend: the only package in :mod:`generator` that imports ``bpy``.

- :mod:`.camera` maps lens values to Blender camera settings;
- :mod:`.build` turns a :class:`~generator.scene.spec.SceneSpec` into a bpy scene;
- :mod:`.render` renders depth, the all-in-focus image and focus frames.

Importing this package imports ``bpy``; the submodules are imported on use so
that ``import generator.render.blender`` alone stays cheap.
"""
