"""The rules: one module per domain. Transactions, authorization and event records live here."""
