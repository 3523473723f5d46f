"""The HTTP edge: public URLs by `Host` and share links at `/s/<token>/`, policy per request."""
