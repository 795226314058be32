//! Rekey messages (being written).
