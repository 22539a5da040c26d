"""The SQL result backend: table definitions, the store, result handles."""
