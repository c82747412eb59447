"""Loading knowledge into the jinro DB: readers, chunking, embedding, and the `ingest` CLI."""
