"""Training runs: validated configs, batch building, the loop, checkpoints and lineage."""
