//! The key tree (being written).
