"""Inference: tokenise → window → batch → ONNX Runtime → pool. The only code that runs the model."""
