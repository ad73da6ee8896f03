"""HTTP and WebSocket routes of the adapter."""
