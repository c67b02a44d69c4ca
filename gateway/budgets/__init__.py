"""Budgets: prices, periods, and the reserve-then-settle ledger that cannot be overspent."""
