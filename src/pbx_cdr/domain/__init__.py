"""Pure domain logic: no I/O, no framework. Parsing, derivations, phone keys, paginator math."""
