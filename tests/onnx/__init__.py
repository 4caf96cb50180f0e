"""Tests of the ONNX export (compressors.onnx)."""
