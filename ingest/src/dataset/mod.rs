//! Placeholder; dataset format follows.
