"""Stage 5, rendering: Blender (the only bpy user), worker tasks, the scheduler, Ray, and render_dataset."""
