"""Metrics, operating points and evaluation reports."""
