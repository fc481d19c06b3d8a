"""PostgreSQL access: pool, migrations, typed queries, audit chain, embedded cluster."""
