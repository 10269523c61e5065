"""Training objectives: embeddings or logits in, scalar loss out."""
