"""Faust wiring: the app, topics, tables, agents and web views. Thin adapters over ``stream``."""
