"""The HTTP routes, one module per resource; HTTP only, the logic lives in the engine and the store."""
