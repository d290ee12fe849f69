"""SQLite storage over aiosqlite, for the comparison recorded in docs/architecture.md."""
