"""Stage 4, the dataset: what a sample and a shard are, encoded and decoded; the output folder; inspect and export."""
