"""Local stand-ins for external services used by the tests (fake LLM servers, stub classifiers)."""
