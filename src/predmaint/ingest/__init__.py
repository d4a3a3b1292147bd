"""Resilient ingestion: sources → validate → dedupe → durable Hive-partitioned Parquet store.

At-least-once in, exactly-once stored: every batch is committed atomically with the position
of its source, so a restart after `kill -9` resumes where the last commit ended and the store's
key index drops anything delivered twice.
"""
