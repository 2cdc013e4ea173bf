//! Property tests: no input makes the core panic.
