"""Operators: the snapshot (job creation) operator and the Docker step operator."""
