"""Loopback servers for tests, the benchmark and local experiments: a scriptable upstream and the gateway."""
