"""Thin adapters around real libraries, one per vendor, each with the port it implements."""
