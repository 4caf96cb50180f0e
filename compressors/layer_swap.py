"""Finding layers in a model by type or name, and putting a new module in a layer's place."""


def replace_module(model, dotted_name, new_module):
    """Put new_module where model.<dotted_name> was."""
    parent = model
    *path, last = dotted_name.split(".")
    for part in path:
        parent = parent._modules[part]
    setattr(parent, last, new_module)    # Module.__setattr__ keeps an existing key's place (Sequential order)


def find_layers(model, layer_type, names=None, where="compress", exclude=()):
    """[(dotted name, module)] of every `layer_type` (but no `exclude` type) in model, or of the
    named subset (checked)."""
    found = [(n, m) for n, m in model.named_modules()
             if n and isinstance(m, layer_type) and not isinstance(m, exclude)]
    if names is not None:
        if isinstance(names, str):
            names = [s for s in names.split(",") if s]
        available = [n for n, _ in found]
        missing = [n for n in names if n not in available]
        if missing:
            types = layer_type if isinstance(layer_type, tuple) else (layer_type,)
            kind = "/".join(t.__name__ for t in types)
            raise ValueError(f"{where}: no {kind} layer named {missing}; available: {available}")
        found = [(n, m) for n, m in found if n in names]
    return found


def module_at(model, dotted_name, where):
    """model.<dotted_name>; ValueError naming `where` and some of the model's modules when it has none."""
    modules = dict(model.named_modules())
    if dotted_name not in modules:
        raise ValueError(f"{where}: the model has no module {dotted_name!r}; it has "
                         f"{[n for n in modules if n][:20]}")
    return modules[dotted_name]
