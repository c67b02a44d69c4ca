"""Routing: choose deployments for a request, run attempts, fall back, and say what happened."""
