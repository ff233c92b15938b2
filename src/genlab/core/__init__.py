"""Tier 0: configuration, registry, errors, paths and seeding. Imports only torch and stdlib."""
