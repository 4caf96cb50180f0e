"""Low-rank layers (compressors.lowrank): two MatMuls, or two convolutions, with the thin factors."""
from compressors.lowrank import LowRankConv2d, LowRankDense

from ..registry import register_exporter


@register_exporter(LowRankDense)
@register_exporter(LowRankConv2d)
def export_low_rank(g, layer, x):
    y = g.child(layer, "second", g.child(layer, "first", x))
    return y
