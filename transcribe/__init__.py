"""transcribe package."""
