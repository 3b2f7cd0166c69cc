"""Thin Litestar controllers, one per resource, plus auth, error mapping and SSE encoding."""
