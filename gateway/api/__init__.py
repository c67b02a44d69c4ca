"""Thin HTTP surfaces: parse the request, call the pipeline, render the answer."""
