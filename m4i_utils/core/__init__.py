"""Core: configuration and profiles, the artifact cache, seeding and device, attack metrics with bootstrap
CIs, the run store (results rows and per-sample scores) and the batch runner."""
