"""The HTTP edge: routes, dependencies, error envelope, OpenAPI, docs, pagination, rate limiting."""
