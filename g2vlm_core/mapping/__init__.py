"""Mapping: the persistent object map (association, merging, pruning, stable ids) that every recognizer feeds."""
