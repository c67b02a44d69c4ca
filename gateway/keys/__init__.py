"""Virtual keys: issued through the admin API, stored hashed in the store, cached on the hot path."""
