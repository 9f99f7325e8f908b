"""Projections: PostgreSQL schema, the exactly-once sink, queries and verification."""
