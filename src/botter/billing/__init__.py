"""Plans, orders and the payments ledger."""
