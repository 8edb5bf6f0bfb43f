"""The database layer: tables, migrations, and every SQL statement the service runs."""
