"""Scoring a register: the batch engine, run state and resume, --since, the fast path and Spark."""
