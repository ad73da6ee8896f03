"""Read-side queries shared by the API and the CLI."""
