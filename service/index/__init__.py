"""Vector index: the `VectorIndex` seam, its FAISS implementation, snapshots and replay."""
