"""Test helpers that are packages of their own (a fault-injecting S3 proxy)."""
