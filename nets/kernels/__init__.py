"""numba kernels, one function per op direction (llm.c style): outputs first, dims last.

Every kernel is dtype-generic (float32 for training, float64 for gradient checks) and cached on
disk (`cache=True`), so a warm process loads compiled code instead of compiling it.
"""
