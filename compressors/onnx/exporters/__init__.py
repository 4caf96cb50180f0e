"""Built-in ONNX exporters, one file per layer family; every file here is imported by the registry."""
