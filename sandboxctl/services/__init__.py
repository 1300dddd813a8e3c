"""The rules: policies, the state machine's use, retries, orphans. No printing, no exiting."""
