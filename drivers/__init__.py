"""Driver plugins: interfaces, registry and backends (mock and real) per hardware kind."""
