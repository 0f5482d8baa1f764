"""dfdgen generator: recipe -> scene spec -> Blender -> sample -> shard.

Only :mod:`generator.render.blender` imports ``bpy``; everything else here is pure
Python and imports without Blender.
"""

__version__ = "0.1.0"
