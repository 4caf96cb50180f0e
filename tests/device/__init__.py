"""The device suite: the GPU path run on the strict CuPy stand-in, and on CuPy when a device exists."""
