"""The Representation Center: versioned item_id -> content vector store."""
