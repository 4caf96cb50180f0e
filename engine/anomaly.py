"""detect_anomaly's check: a NaN or Inf in a Function's outputs or gradients, named with its op."""
from . import backend


def check_finite(function, arrays, phase, inputs=None):
    """Raise FloatingPointError naming `function` when any float array holds NaN/Inf."""
    for i, a in enumerate(arrays):
        if a is None or a.dtype.kind not in "fc":
            continue
        xp = backend.xp_of(a)
        if not bool(xp.isfinite(a).all()):
            what = "NaN" if bool(xp.isnan(a).any()) else "Inf"
            where = f"output {i}" if phase == "forward" else f"gradient for input {i}"
            note = ""
            if inputs is not None:
                bad_in = [j for j, x in enumerate(inputs)
                          if x is not None and x.dtype.kind in "fc"
                          and not bool(backend.xp_of(x).isfinite(x).all())]
                note = (f"; inputs {bad_in} were already non-finite" if bad_in
                        else "; all its inputs were finite")
            raise FloatingPointError(
                f"detect_anomaly: {function.name} produced {what} in {phase} ({where}, "
                f"shape {tuple(a.shape)}){note}")
