"""Raw array kernels without autograd: NumPy reference, Numba CPU and CuPy paths behind one entry."""
