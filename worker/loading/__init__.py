"""Model loading: which models a worker serves, read from their files once per
process, placed on their devices, each behind its batch runner."""
