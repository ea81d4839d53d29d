"""gpupipe Cloud Function entry points (functions-framework)."""
