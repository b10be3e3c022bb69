"""Flight: real-time recommendation pipelines built from small operators."""
