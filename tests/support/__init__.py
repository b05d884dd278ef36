"""Test helpers: test videos (videogen, built on jobs.tools.samples), decode faults, a fault-injecting S3 proxy."""
