"""Turns a complete study into a result; the only runtime package that may import torch."""
