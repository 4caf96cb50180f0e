"""ONNX export that keeps each compressor's structure: to_onnx, ExportReport, register_exporter (onnx: lazy)."""
from .registry import register_exporter, exporter_for
from .export import ExportReport, to_onnx

__all__ = ["to_onnx", "ExportReport", "register_exporter", "exporter_for"]
