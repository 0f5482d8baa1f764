"""The shared core: errors, the config schema, safe readers, safe writes, limits and the lens; what every stage and dfd_models may import."""
