"""HTTP layer: one router per resource, schemas, dependencies and the error handlers."""
