"""Walk the recorded graph behind a tensor: each node's op name and input/output shapes."""


def walk(tensor):
    """List the Functions that produced `tensor`, outputs first (decreasing generation).

    Each entry is a dict: ``op``, ``generation``, ``inputs`` (shapes),
    ``outputs`` (shapes of live outputs; None where already freed).
    """
    if tensor.creator is None:
        return []
    nodes, seen, stack = [], {id(tensor.creator)}, [tensor.creator]
    while stack:
        f = stack.pop()
        inputs = f.inputs or []
        nodes.append({
            "op": f.name,
            "generation": f.generation,
            "inputs": [tuple(x.shape) for x in inputs],
            "outputs": [tuple(shape) for shape, _ in f.output_meta],
        })
        for x in inputs:
            c = x.creator
            if c is not None and id(c) not in seen:
                seen.add(id(c))
                stack.append(c)
    nodes.sort(key=lambda n: -n["generation"])
    return nodes


def format_graph(tensor):
    """The graph as text, one node per line: 'op  in_shapes -> out_shapes'."""
    lines = []
    for n in walk(tensor):
        ins = ", ".join(str(s) for s in n["inputs"])
        outs = ", ".join(str(s) for s in n["outputs"])
        lines.append(f"{n['op']:<14} {ins} -> {outs}")
    return "\n".join(lines)
