"""Every decoder's size limit, declared once: what dfdgen reads from a file it was given
(a shard member, a manifest, a mesh) is refused before it is decoded when it claims more.

Pure constants (no imports beyond the standard library), so the Blender add-on, the
loader's workers and the CLI share them. A limit is generous for real data and small
enough that a hostile file cannot drive a process to gigabytes or minutes.
"""

from __future__ import annotations

# --- JSON (metadata members, manifest.json, progress.json) ---------------------------------
#: Bytes of one JSON text: a sample's metadata is a few KB per frame (1024 frames at most);
#: a manifest lists every shard of up to 10^7 scenes.
MAX_JSON_BYTES = 256 * 2**20
#: Levels of nested lists and objects (dfdgen's own JSON has fewer than 8).
MAX_JSON_DEPTH = 64

# --- images (PNG 8/16-bit, EXR) -------------------------------------------------------------

# --- meshes (OBJ, PLY, STL, glTF/GLB) ---------------------------------------------------------
