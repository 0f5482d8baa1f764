"""Every decoder's size limit, declared once: what dfdgen reads from a file it was given
(a shard member, a manifest, a mesh) is refused before it is decoded when it claims more.

Pure constants (no imports beyond the standard library), so the Blender add-on, the
loader's workers and the CLI share them. A limit is generous for real data and small
enough that a hostile file cannot drive a process to gigabytes or minutes.
"""

from __future__ import annotations

# JSON (metadata members, manifest.json, progress.json)
#: Bytes of one JSON text: a sample's metadata is a few KB per frame (1024 frames at most);
#: a manifest lists every shard of up to 10^7 scenes.
MAX_JSON_BYTES = 256 * 2**20
#: Levels of nested lists and objects (dfdgen's own JSON has fewer than 8).
MAX_JSON_DEPTH = 64

# images (PNG 8/16-bit, EXR)
#: Pixels of one image (a PNG's IHDR, an EXR's data window), read from its header before any
#: pixel is decompressed: 8192 x 8192, the largest frame a recipe renders.
MAX_IMAGE_PIXELS = 2**26
#: Bytes of one image's decoded pixels over all its channels: a float32 RGB EXR at
#: :data:`MAX_IMAGE_PIXELS` (768 MiB). A 16-bit PNG is inflated to at most the bytes its IHDR
#: declares (6 per pixel and a filter byte per row), an 8-bit one by Pillow into its image.
MAX_IMAGE_BYTES = 3 * 4 * MAX_IMAGE_PIXELS

# meshes (OBJ, PLY, STL, glTF/GLB)
#: Bytes of one mesh file; a mesh is a prop of a scene, not a city.
MAX_MESH_BYTES = 256_000_000
#: Vertices and faces (polygons) of one mesh as its file lists them (an STL lists three vertices
#: per triangle), checked from the header's counts (PLY element counts, STL triangle count, glTF
#: accessor counts; OBJ: its ``v`` and ``f`` lines, counted) before the geometry is parsed. At
#: these counts the mesh's arrays hold about 150 MB and an OBJ parses in about 10 s.
MAX_MESH_VERTICES = 2_000_000
MAX_MESH_FACES = 4_000_000
#: Deepest glTF node hierarchy, and most node instances a glTF scene may expand to (a node
#: graph shared by many parents multiplies: a chain of n nodes each listing the next twice is 2^n).
MAX_GLB_DEPTH = 64
MAX_GLB_INSTANCES = 10_000

# Scenes (a recipe's bounds, and what a sample's metadata may declare)
#: Frames per scene (ramps x frames per ramp).
MAX_FRAMES = 1024
#: Pixels per scene over all its frames: about 4 GiB of float32 RGB (a scene's frames
#: are held in memory together while it is encoded).
MAX_SCENE_PIXELS = 2**28
