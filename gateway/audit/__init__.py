"""The audit trail: who did what, when and why, in the store's hash-chained log."""
