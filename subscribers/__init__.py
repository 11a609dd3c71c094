"""The subscriber store: subscribers, lists, subscriptions, signed tokens, CSV import and export."""
