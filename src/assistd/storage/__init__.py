"""Tables and the blob store. Every SQLModel table lives in this package, one module per table."""
