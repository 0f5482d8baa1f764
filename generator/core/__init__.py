"""The shared core: errors, the config schema, safe readers and writes, limits, the lens and display
colours; what every stage and dfd_models may import."""
