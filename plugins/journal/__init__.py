"""The SQLite journal: resumable runs, retries on record, dead letters, run history."""
