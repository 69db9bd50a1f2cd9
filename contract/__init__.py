"""The data contract of PRODUCT.md: table schemas, loading, validation and quarantine."""
