"""Company website crawler: polite async fetching, safety checks, a resumable SQLite store, site analysis and text extraction."""
