"""Turning a block of rows on its side, (rows, n) -> (n, lanes), and back: the batch as the vector lanes
(wavelet_lanes_numba, recurrent_sideways_numba). A row at a time such a copy runs at about 0.9 ns an
element here (as NumPy's transposed copy); these take 16 or 8 rows at once, so that each index reads or
writes that many adjacent lanes."""
import numba


@numba.njit(cache=True)
def rows_on_side(x, r0, count, scale, dst):
    """dst[i, b] = x[r0 + b, i] scale[i]: `count` rows of x from r0 turned on their side. Sixteen rows at a time,
    so that each sample index writes 16 adjacent lanes: 8 against 25 us for 128 rows of 256 in tiles of
    16 columns, one row at a time (bench/results/microbench-session13.md)."""
    n = x.shape[1]
    full = count - count % 16
    for b0 in range(0, full, 16):
        r0_, r1, r2, r3, r4, r5, r6, r7 = (x[r0 + b0], x[r0 + b0 + 1], x[r0 + b0 + 2], x[r0 + b0 + 3],
                                           x[r0 + b0 + 4], x[r0 + b0 + 5], x[r0 + b0 + 6], x[r0 + b0 + 7])
        q0, q1, q2, q3, q4, q5, q6, q7 = (x[r0 + b0 + 8], x[r0 + b0 + 9], x[r0 + b0 + 10], x[r0 + b0 + 11],
                                          x[r0 + b0 + 12], x[r0 + b0 + 13], x[r0 + b0 + 14], x[r0 + b0 + 15])
        for i in range(n):
            s, d = scale[i], dst[i, b0:b0 + 16]
            d[0], d[1], d[2], d[3] = r0_[i] * s, r1[i] * s, r2[i] * s, r3[i] * s
            d[4], d[5], d[6], d[7] = r4[i] * s, r5[i] * s, r6[i] * s, r7[i] * s
            d[8], d[9], d[10], d[11] = q0[i] * s, q1[i] * s, q2[i] * s, q3[i] * s
            d[12], d[13], d[14], d[15] = q4[i] * s, q5[i] * s, q6[i] * s, q7[i] * s
    for b in range(full, count):
        row = x[r0 + b]
        for i in range(n):
            dst[i, b] = row[i] * scale[i]


@numba.njit(cache=True)
def rows_back(src, r0, count, bias, y):
    """y[r0 + b, i] = src[i, b] + bias[i]: `count` lanes of src turned back into rows of y from r0, eight rows at a time (each sample index
    reads 8 adjacent lanes: 13 against 33 us for 128 rows of 256, one row at a time)."""
    n = y.shape[1]
    full = count - count % 8
    for b0 in range(0, full, 8):
        w0, w1, w2, w3 = y[r0 + b0], y[r0 + b0 + 1], y[r0 + b0 + 2], y[r0 + b0 + 3]
        w4, w5, w6, w7 = y[r0 + b0 + 4], y[r0 + b0 + 5], y[r0 + b0 + 6], y[r0 + b0 + 7]
        for i in range(n):
            t, c = bias[i], src[i, b0:b0 + 8]
            w0[i], w1[i], w2[i], w3[i] = c[0] + t, c[1] + t, c[2] + t, c[3] + t
            w4[i], w5[i], w6[i], w7[i] = c[4] + t, c[5] + t, c[6] + t, c[7] + t
    for b in range(full, count):
        row = y[r0 + b]
        for i in range(n):
            row[i] = src[i, b] + bias[i]
