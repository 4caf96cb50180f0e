"""Layers built from engine ops: Module, Sequential, Dense, Conv2d, pooling, recurrent cells..."""
from .module import Module, Parameter, Sequential
from .dense import Dense, Linear
