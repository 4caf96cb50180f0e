"""Layers built from engine ops: Module, Sequential, Dense, Conv2d, pooling, recurrent cells..."""
from .module import Module, Parameter, Sequential, ModuleList
from .dense import Dense, Linear
from .conv import Conv2d
from .pool import MaxPool2d, AvgPool2d
from .activation import ReLU, Tanh, Sigmoid, LeakyReLU, Flatten, Dropout
from .norm import BatchNorm1d, BatchNorm2d
from .embedding import Embedding
from .recurrent import GRUCell, LSTMCell, GRU, LSTM, detach_state
from .serialization import save_model, load_model

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Dense", "Linear", "Conv2d",
           "MaxPool2d", "AvgPool2d", "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "Flatten", "Dropout",
           "BatchNorm1d", "BatchNorm2d", "Embedding", "GRUCell", "LSTMCell", "GRU", "LSTM", "detach_state",
           "save_model", "load_model"]
