"""Session state and session events, as the SDK's session API uses them."""
