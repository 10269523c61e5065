"""notespace service: clinical-note embeddings over ONNX Runtime, inside the trust network."""
