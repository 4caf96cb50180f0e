"""The row operations of WaveletLinear's sideways pass, in the order that keeps each level's rows in cache.

On its side a block of examples is an (n, lanes) array: one row a sample. A wavelet map is then a list
of row operations: copy an input row in (scaled), form one output pair of an analysis level (six taps
over rows of its input), form one output row of a synthesis level. Taken level by level, every level's
rows go out to memory and come back for the next (a map at hidden 256 with 128 lanes touches 0.6 MB);
here the levels are cascaded instead: an analysis output is formed as soon as its last input row
exists, and its approximation row goes straight on to the next level, so each level holds only the
few rows its filters still read, in a small ring. The synthesis likewise, depth first from the
coarsest band. Only the coefficient store (the permuted bands the analysis writes and the synthesis
reads) is as long as the signal. The schedule depends on the shape alone (n, filter length, levels),
so it is built once, in Python, and the kernel (wavelet_lanes_numba.transform_scheduled) just runs it.

Rows of the work array: row 0 stays zero (every sample outside a band reads it: the transform's zero
padding), then a ring of rows for each analysis level's input, one for each synthesis level's output
but the last, then the store; without loads, last, the input block on its side (scaled already).
"""
import functools
from typing import NamedTuple

import numpy as np

from .wavelet import _packed_layout

LOAD, ANALYZE = 0, 1          # analysis-table kinds
TAPS_A_PASS = 6               # the kernel's analysis unrolls six taps a pass, its synthesis three a band


class Schedule(NamedTuple):
    """analysis (ops, 4 + A) int64: [kind, a, b, c, rows...]. A LOAD copies row b of the input, times the
    input scale, into work row a. An ANALYZE forms one output pair of a level from the A rows listed
    (tap t reads the t-th; taps past the filter weigh zero): its approximation goes to work row a, or,
    when a is -1 (the last level), to the place of packed coefficient b; its detail to the place of
    packed coefficient c. synthesis (ops, 3 + 2 S) int64: [target, to_output, parity, a rows..., d rows...]:
    the output row sums taps parity, parity + 2, ... of the reconstruction filters over the S a-rows and
    S d-rows listed, into work row `target`, or, when to_output is 1, into row `target` of the output,
    times the output scale. work_rows: rows of the work array; store_at: the store's first row; block_at:
    the input block's first row (without loads; else -1)."""
    analysis: np.ndarray
    synthesis: np.ndarray
    work_rows: int
    store_at: int
    block_at: int


def _power_of_two(k):
    p = 1
    while p < k:
        p *= 2
    return p


@functools.lru_cache(maxsize=64)
def sideways_schedule(n, filter_length, levels, loads=True):
    """The Schedule of a length-n map with `levels` levels of filters `filter_length` long, its arrays
    read-only. loads: the input comes from an array of its own, a LOAD op a row (a recurrent layer's
    state); else it lies in the work array already, scaled, from row block_at (a block turned on its
    side there)."""
    lengths, detail_at, _, _ = _packed_layout(n, filter_length, levels)
    m, L = [int(v) for v in lengths], int(filter_length)
    a_taps = TAPS_A_PASS * -(-L // TAPS_A_PASS)          # rows an analysis op lists
    s_taps = 3 * -(-((L + 1) // 2) // 3)                  # rows a synthesis op lists from each band
    a_ring, s_ring = _power_of_two(a_taps), _power_of_two(s_taps + 1)
    s_rings_at = 1 + levels * a_ring
    store_at = s_rings_at + max(levels - 1, 0) * s_ring
    n_coeffs = int(detail_at[1]) + m[1]
    block_at = -1 if loads else store_at + n_coeffs

    def analysis_row(level, r):
        """Where row r of level `level`'s input lies: in its ring (or the block), or the zero row outside
        the signal."""
        if r < 0 or r >= m[level]:
            return 0
        return block_at + r if level == 0 and not loads else 1 + level * a_ring + r % a_ring

    def synthesis_row(level, r):
        """Where row r of the approximation entering synthesis level `level` lies."""
        if r < 0 or r >= m[level]:
            return 0
        return store_at + r if level == levels else s_rings_at + (level - 1) * s_ring + r % s_ring

    def detail_row(level, r):
        return 0 if r < 0 or r >= m[level] else store_at + int(detail_at[level]) + r

    analysis = []

    def arrived(level, r):
        # row r of a level's input is in place: an odd row completes that level's output (r - 1) / 2,
        # whose approximation is in turn the next level's row (r - 1) / 2
        while level < levels and r % 2 == 1 and (r - 1) // 2 < m[level + 1]:
            o = (r - 1) // 2
            last = level + 1 == levels
            rows = [analysis_row(level, r - t) if t < L else 0 for t in range(a_taps)]
            target = -1 if last else analysis_row(level + 1, o)
            analysis.append([ANALYZE, target, o, int(detail_at[level + 1]) + o] + rows)
            level, r = level + 1, o

    for r in range(m[0]):
        if loads:
            analysis.append([LOAD, analysis_row(0, r), r, 0] + [0] * a_taps)
        arrived(0, r)
    for level in range(levels):             # the zero rows past each level's end complete its outputs
        for r in range(m[level], 2 * m[level + 1]):
            arrived(level, r)

    synthesis = []
    for r in range(m[levels]):
        pending = [(levels, r)]
        while pending:
            # row r of level j's approximation completes outputs 2r - L + 2 and 2r - L + 3 of level j
            level, r_top = pending.pop()
            below = []
            for i in (2 * r_top - L + 2, 2 * r_top - L + 3):
                if not 0 <= i < m[level - 1]:
                    continue
                parity = (i + L - 2) % 2
                used = [parity + 2 * k < L for k in range(s_taps)]
                rows = [synthesis_row(level, r_top - k) if use else 0 for k, use in enumerate(used)]
                rows += [detail_row(level, r_top - k) if use else 0 for k, use in enumerate(used)]
                if level == 1:
                    synthesis.append([i, 1, parity] + rows)
                else:
                    synthesis.append([synthesis_row(level - 1, i), 0, parity] + rows)
                    below.append((level - 1, i))
            pending.extend(reversed(below))         # depth first, in order
    tables = (np.array(analysis, dtype=np.int64).reshape(-1, 4 + a_taps),
              np.array(synthesis, dtype=np.int64).reshape(-1, 3 + 2 * s_taps))
    for table in tables:
        table.flags.writeable = False
    return Schedule(*tables, store_at + n_coeffs + (0 if loads else n), store_at, block_at)


def placement(perm, coeff_scale, store_at, dtype):
    """(placed_at, placed_scale): for each packed coefficient q, the work row where the permutation puts it
    and the scale it takes there (P . FWT puts coefficient perm[k] at place k, scaled by coeff_scale[k])."""
    perm = np.asarray(perm, dtype=np.int64)
    placed_at, placed_scale = np.empty(perm.shape[0], dtype=np.int64), np.empty(perm.shape[0], dtype)
    placed_at[perm] = store_at + np.arange(perm.shape[0])
    placed_scale[perm] = coeff_scale
    return placed_at, placed_scale
