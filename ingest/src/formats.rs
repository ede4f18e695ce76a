//! Placeholder; format dispatch follows.
