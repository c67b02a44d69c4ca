"""Policies and human oversight: rules (CEL and built-in), PII, tool rules, loop detection, approvals."""
