"""The event log: where it comes from, how it is parsed and cached, which events a trial draws."""
