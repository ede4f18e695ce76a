//! Placeholder; real class list code follows.
