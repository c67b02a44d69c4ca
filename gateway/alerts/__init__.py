"""Budget alerts: thresholds crossed, fired once per scope, window and threshold, to webhooks."""
