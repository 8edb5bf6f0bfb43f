"""Repositories: functions that take a Connection and run SQL. They never commit."""
