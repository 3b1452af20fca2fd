"""Kafka plumbing outside Faust: topic creation, publishing files, reading topics."""
