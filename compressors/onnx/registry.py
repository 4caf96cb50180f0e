"""The one registry of ONNX exporters, keyed by layer class; each compressor registers its own layers'.

An exporter is fn(graph, module, x) -> output value name: it adds the module's nodes to `graph`
(a compressors.onnx.graph.GraphBuilder) for the input value named `x`. Register one with the
``register_exporter(LayerClass)`` decorator from the module that defines the layer (importing this
file needs no onnx) or from a file in compressors/onnx/exporters/, which are all imported on first
use, so a new compressor adds its exporter without editing any list here.
"""
import importlib
import pkgutil

_EXPORTERS = {}
_loaded = False


def register_exporter(layer_class):
    """Decorator: fn(graph, module, x) -> y becomes the exporter of `layer_class` (and its subclasses)."""
    def decorate(fn):
        _EXPORTERS[layer_class] = fn
        return fn
    return decorate


def _load_builtin_exporters():
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import exporters
    for info in pkgutil.iter_modules(exporters.__path__):
        importlib.import_module(f"{exporters.__name__}.{info.name}")


def exporter_for(module):
    """The exporter registered for type(module) or its nearest registered base class."""
    _load_builtin_exporters()
    for cls in type(module).__mro__:
        if cls in _EXPORTERS:
            return _EXPORTERS[cls]
    raise ValueError(f"to_onnx: no ONNX exporter for layer type {type(module).__name__}; register one "
                     "with compressors.onnx.register_exporter")


def registered_types():
    """The layer classes that have an exporter (after loading the built-in ones)."""
    _load_builtin_exporters()
    return list(_EXPORTERS)
