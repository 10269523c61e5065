"""The registry database: typed tables, migrations check, and repositories."""
