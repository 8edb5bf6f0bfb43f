"""Demo data: realistic traffic for `pbx-cdr demo` and for tests."""
