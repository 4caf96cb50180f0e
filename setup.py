"""Packaging for compactnet: numpy is the only hard dependency."""
from setuptools import setup, find_packages

setup(
    name="compactnet",
    version="0.1.0",
    description="A from-scratch NumPy/CuPy deep-learning engine for neural-network compression",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["engine", "engine.*", "layers", "layers.*",
                                    "compressors", "compressors.*", "tasks", "tasks.*",
                                    "training", "training.*"]),
    py_modules=["train"],
    install_requires=["numpy>=1.22"],
    extras_require={
        "jit": ["numba>=0.57"],
        "gpu": ["cupy-cuda12x"],
        "plot": ["matplotlib"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "test": ["pytest>=7", "hypothesis>=6", "pywavelets>=1.4", "tensorly>=0.8", "matplotlib"],
        "mpi": ["mpi4py>=4", "mpich"],
        "threads": ["threadpoolctl>=3"],
    },
    entry_points={"console_scripts": ["compactnet-train=train:main"]},
)
